"""Record flags: a comma list in records.flags (one definition of the helpers)."""

from __future__ import annotations

FLAG_ATTRIBUTION_ERROR = "attribution_error"
FLAG_UNPAIRED = "unpaired"
# A device time outside the [time] window: stored at its arrival time, credited to nobody.
FLAG_BAD_TIME = "bad_time"


def add_flag(flags: str, flag: str) -> str:
    parts = [f for f in flags.split(",") if f]
    if flag not in parts:
        parts.append(flag)
    return ",".join(parts)


def has_flag(flags: str | None, flag: str) -> bool:
    return flag in (flags or "").split(",")

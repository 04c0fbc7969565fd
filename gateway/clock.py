"""The one wall clock of the gateway (UTC epoch milliseconds), and how times are shown."""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def fmt_ms(ms: int | None, tz: zoneinfo.ZoneInfo | None = None) -> str:
    """A time with its zone, e.g. "2025-03-04 10:15:00+08:00" (empty for None); the
    machine's zone when tz is None."""
    if ms is None:
        return ""
    t = dt.datetime.fromtimestamp(ms / 1000, tz=tz) if tz is not None else \
        dt.datetime.fromtimestamp(ms / 1000).astimezone()
    return t.isoformat(sep=" ", timespec="seconds")

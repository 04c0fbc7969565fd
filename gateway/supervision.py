"""Supervision of data truthfulness (数据质量): findings per clerk and window for a period."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.config import Config


@dataclass(frozen=True)
class SupervisionSettings:
    """[supervision]: the thresholds of each finding."""

    min_invite_rate: float = 0.9       # invitations / cases below this is a finding
    min_cases: int = 10                # clerks with fewer cases in the period are not judged on rates
    fast_press_s: float = 3.0          # a rating this soon after the invitation appeared: the clerk?
    late_entry_minutes: int = 60       # invitation this long after the case was handled: 事后补录
    linkage_limit_s: int = 300         # rating to platform within this (some provinces check 5 min)
    silent_hours: int = 1              # a device silent this many opening hours in a day is a finding
    presence_every_s: int = 60         # how often the service notes which devices were heard
    evidence_rows: int = 20            # evidence rows shown per finding (JSON: all, or --evidence N)

    @classmethod
    def from_config(cls, cfg: Config) -> SupervisionSettings:
        sec = cfg.raw.get("supervision", {})
        vals: dict[str, Any] = {k: sec[k] for k in cls.__dataclass_fields__ if k in sec}
        for k in ("min_invite_rate", "fast_press_s"):
            if k in vals:
                vals[k] = float(vals[k])
        return cls(**vals)

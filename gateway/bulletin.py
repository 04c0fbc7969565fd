"""Bulletins (通报表): the district's figures for a period, grouped by department, hall, town,
window, clerk or service item, in the shape of the Zhangdian bulletin's attachments."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.config import Config, ConfigError
from protocol.grades import GRADES

DEFAULT_WEIGHTS = {"vs": 100.0, "s": 75.0, "bs": 50.0, "d": 25.0, "vd": 0.0}


@dataclass(frozen=True)
class BulletinSettings:
    """[bulletin]: the issuing office and every formula (printed in the bulletin's notes)."""

    issuer: str = ""
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    satisfied: tuple[str, ...] = ("vs", "s", "bs")
    rate_denominator: str = "cases"      # cases: 办件量 | invited: cases offered a rating
    ratings: str = "uploaded"            # uploaded: acked by the platform | stored: in the store
    rank_by: str = "score"               # score | satisfaction | rating_rate
    rate_without_base: str = "blank"     # a rate over 0 (e.g. 整改率 with no valid 差评): blank | full

    @classmethod
    def from_config(cls, cfg: Config) -> BulletinSettings:
        sec = cfg.raw.get("bulletin", {})
        w = sec.get("weights", DEFAULT_WEIGHTS)
        if set(w) != set(GRADES) or not all(type(v) in (int, float) and v >= 0 for v in w.values()):
            raise ConfigError("[bulletin] weights must give a number >= 0 for each of vs, s, bs, d, vd,"
                              " e.g. {vs = 100, s = 75, bs = 50, d = 25, vd = 0}")
        sat = sec.get("satisfied", ["vs", "s", "bs"])
        if not sat or not set(sat) <= set(GRADES) or len(set(sat)) != len(sat):
            raise ConfigError("[bulletin] satisfied must list grades among vs, s, bs, d, vd (each once)")
        return cls(issuer=sec.get("issuer", ""), weights={g: float(w[g]) for g in GRADES},
                   satisfied=tuple(g for g in GRADES if g in sat),
                   rate_denominator=sec.get("rate_denominator", "cases"),
                   ratings=sec.get("ratings", "uploaded"), rank_by=sec.get("rank_by", "score"),
                   rate_without_base=sec.get("rate_without_base", "blank"))

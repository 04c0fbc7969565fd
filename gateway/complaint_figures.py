"""What bulletins need from the 差评 work (issue 16, gateway complaints): the small query
interface the bulletin and supervision services read, and its implementation for today.

The bulletin counts 差评 itself (grades 不满意 + 非常不满意 of the period's ratings). From the
complaints work it needs, per rating, four facts, which it then groups like everything else
(the rating's hall, department, window, clerk and item at press time):

    valid_bad    有效差评: the 差评 was verified valid (by the 12345 hotline or the liaison)
    rectified    已整改: its rectification is done (the valid 差评's work order reached rectified)
    called_back  已回访: the citizen was called back about it
    excluded     the rating was excluded from statistics (found mistaken or malicious, upheld on
                 review); it is counted apart ("剔除") and left out of every other column

`ComplaintFigures.outcomes(tx, lo_ms, hi_ms)` returns the outcomes of the ratings *pressed* in
[lo_ms, hi_ms) that have any (ratings without a complaint or an exclusion need no row); it
runs inside the bulletin's read unit of work, so the figures and the ratings are one snapshot.
A rating is named by its record id (`records.record_id`); a rating of another channel (the QR
page of issue 19) that is stored as a record is named the same way.

`StoredComplaints` answers from the 差评 work orders (gateway/complaints.py, the complaints
repository): 有效差评 is a complaint verified valid, 已整改 one whose rectification is reported,
已回访 one whose citizen was called back, and an excluded rating one with an exclusion (overturned
on review, or excluded as mistaken or malicious). `complaint_figures()` below is the one place
the CLI, the API, `hcp-sim history` and the bench get it from. `NoComplaints` (no outcomes)
stays for a bulletin that must leave the work orders out; its notes say they are not connected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.config import Config
from gateway.store.api import Tx


@dataclass(frozen=True)
class RatingOutcome:
    record_id: str
    valid_bad: bool = False
    rectified: bool = False
    called_back: bool = False
    excluded: bool = False


class ComplaintFigures(Protocol):
    def outcomes(self, tx: Tx, lo_ms: int, hi_ms: int) -> list[RatingOutcome]:
        """Outcomes of the ratings pressed in [lo_ms, hi_ms) that have any (see the module)."""
        ...


class NoComplaints:
    """No rating has an outcome (the bulletin's notes say the work orders are not connected)."""

    def outcomes(self, tx: Tx, lo_ms: int, hi_ms: int) -> list[RatingOutcome]:
        return []


class StoredComplaints:
    """The outcomes from the complaints repository, in the bulletin's own unit of work."""

    def outcomes(self, tx: Tx, lo_ms: int, hi_ms: int) -> list[RatingOutcome]:
        return [RatingOutcome(rid, valid, rectified, called_back, excluded)
                for rid, valid, rectified, called_back, excluded in tx.complaints.outcomes(lo_ms, hi_ms)]


def complaint_figures(cfg: Config) -> ComplaintFigures:
    """The implementation bulletins use: the 差评 work orders in the store."""
    return StoredComplaints()

"""The bulletin's 差评 columns from the real 差评 work orders (gateway/complaints.py through
gateway/complaint_figures.py), on the store_url backend: a 差评 verified valid, one verified
valid, rectified and called back, one found not valid, and a rating excluded; by the service
and by the CLI (which gets its figures from complaint_figures(cfg) like the API does).

The district is district_support.py's (every case told there); its stand-in outcomes are not
used here: the work orders are opened and worked through the complaint service."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cmp_support import Clock, service
from district_support import District, build, t
from district_support import run_cli as run
from test_bulletin import GRADE_KEYS, by_name, write_config

from gateway.bulletin import make_bulletin
from gateway.complaint_figures import StoredComplaints, complaint_figures
from gateway.complaints import ComplaintService
from gateway.periods import parse_period
from gateway.store.api import Tx

H = 3_600_000


@pytest.fixture
async def worked(tmp_path: Path, store_url: str) -> AsyncIterator[District]:
    """The district with its four June 差评 worked as real work orders:
    C3 d (A01, centre): contacted, found not valid (not this department's matter);
    C8 vd (A02, centre): excluded as a mistaken press;
    C21 d (W01, west): contacted, valid, rectified, called back;
    C22 vd (W01, west): valid, contacted, rectification under way."""
    d = await build(tmp_path, store_url)
    try:
        clock = Clock(t(2026, 6, 20, 9))
        svc = service(d.s, clock)
        ids = {case: await _open(svc, d.records[case], clock.t) for case in ("C3", "C8", "C21", "C22")}
        at = clock.t + H
        await svc.contact(ids["C3"], "cli:li", "phoned: the matter is the tax office's", at_ms=at)
        await svc.verify(ids["C3"], "cli:li", False, reason="not_our_matter", note="the tax office's",
                         at_ms=at + 1)
        await svc.exclude(ids["C8"], "cli:wang", "mistaken_press", "the citizen meant 非常满意", at_ms=at)
        await svc.contact(ids["C21"], "cli:li", "phoned the citizen", at_ms=at)
        await svc.verify(ids["C21"], "cli:li", True, note="confirmed", at_ms=at + 1)
        await svc.rectify(ids["C21"], "cli:li", "queue numbers announced twice", at_ms=at + 2)
        await svc.callback(ids["C21"], "cli:li", "s", note="satisfied now", at_ms=at + 3)
        await svc.verify(ids["C22"], "cli:li", True, note="confirmed", at_ms=at)
        await svc.contact(ids["C22"], "cli:li", "phoned the citizen", at_ms=at + 1)
        yield d
    finally:
        await d.s.db.close()


async def _open(svc: ComplaintService, record_id: str, at_ms: int) -> int:
    got = await svc.open_for_record(record_id, at_ms=at_ms)
    assert got is not None and got.created
    return got.complaint.id


def columns(r: dict[str, Any]) -> tuple[Any, ...]:
    """ratings, grades, 差评, 有效差评, 已整改, 整改率, 回访率, 满意率, 剔除."""
    return (r["ratings"], tuple(r[g] for g in GRADE_KEYS), r["bad"], r["valid_bad"], r["rectified"],
            r["rectification_rate"], r["callback_rate"], r["satisfaction"], r["excluded"])


async def test_a_bulletin_counts_the_work_orders(worked: District) -> None:
    d = worked
    june = (t(2026, 6, 1, 0), t(2026, 7, 1, 0))
    outcomes = await d.s.db.read(lambda tx: StoredComplaints().outcomes(tx, *june))
    assert {(o.record_id, o.valid_bad, o.rectified, o.called_back, o.excluded) for o in outcomes} == {
        (d.records["C3"], False, False, False, False),
        (d.records["C8"], False, False, False, True),
        (d.records["C21"], True, True, True, False),
        (d.records["C22"], True, False, False, False)}
    # Pressed outside the bounds: no outcome (C21 was pressed 15 June, Urumqi).
    day = (t(2026, 6, 17, 0), t(2026, 6, 18, 0))
    assert await d.s.db.read(lambda tx: StoredComplaints().outcomes(tx, *day)) == []

    b = await make_bulletin(d.s.db, d.s.cfg, parse_period("2026-06"), "department", None,
                            complaint_figures(d.s.cfg))
    assert b.complaints_wired
    rows = by_name(b)
    # D1 (centre): C1 vs, C2 s, C3 d (not valid), C6 bs, C10 s; C8 excluded.
    assert columns(rows["区行政审批服务局"]) == (5, (1, 2, 1, 1, 0), 1, 0, 0, None, 0.0, 0.8, 1)
    # D2 (west): C20 vs, C21 d (valid, rectified, called back), C22 vd (valid), C30 s.
    assert columns(rows["区人力资源和社会保障局"]) == (4, (1, 1, 0, 1, 1), 2, 2, 1, 0.5, 0.5, 0.5, 0)
    tot = {**b.totals.cells(), **b.totals.extra()}
    assert columns(tot) == (9, (2, 3, 1, 2, 1), 3, 2, 1, 0.5, round(1 / 3, 6), round(6 / 9, 6), 1)
    assert tot["called_back"] == 1
    assert "尚未接入差评工单" not in "\n".join(b.notes)
    # By clerk: the work orders sit with the clerk of the press (wang), C8's exclusion with li.
    clerks = by_name(await make_bulletin(d.s.db, d.s.cfg, parse_period("2026-06"), "clerk", None,
                                         complaint_figures(d.s.cfg)))
    wang = clerks["王五"]
    assert (wang["valid_bad"], wang["rectified"], wang["called_back"]) == (2, 1, 1)
    assert (clerks["李四"]["excluded"], clerks["李四"]["bad"]) == (1, 0)
    assert (clerks["张三"]["bad"], clerks["张三"]["valid_bad"]) == (1, 0)

    # The work orders' snapshot is where the bulletin counts them (the press-time organisation).
    def snap(tx: Tx) -> set[tuple[str, str, str]]:
        rows, _ = tx.complaints.find()
        return {(c.case_no, c.hall_id, c.dept_code) for c in rows}
    got = await d.s.db.read(snap)
    assert ("C21", "west", rows["区人力资源和社会保障局"]["detail"]) in got
    assert ("C3", "centre", rows["区行政审批服务局"]["detail"]) in got


async def test_the_cli_bulletin_counts_the_work_orders(worked: District, tmp_path: Path, store_url: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, store_url)
    # The CLI runs its own event loop: in a thread, as from a shell while the fixture's store is open.
    code, out, err = await asyncio.to_thread(run, capsys, cfg, "--json", "bulletin", "--period", "2026-06")
    assert code == 0, err
    data = json.loads(out)
    assert data["complaints_wired"] is True
    tot = data["totals"]
    assert (tot["ratings"], tot["bad"], tot["valid_bad"], tot["rectified"], tot["excluded"]) == \
        (9, 3, 2, 1, 1)
    assert tot["callback_rate"] == round(1 / 3, 6)

"""A small district with hand-countable figures for the bulletin and supervision tests.

Halls: `centre` (the config's default hall, Asia/Shanghai), `west` (a town, Asia/Urumqi,
UTC+6) and `west-v1` (a village point under it). Departments D1 (centre) and D2 (west).
Windows and clerks: A01 zhang, A02 li (centre, D1); W01 wang (west, D2); V01 zhao (west-v1, D2).
Devices dev-1..dev-4 bound to them from 2026-05-01.

June 2026 (each hall's own dates), case by case (feed = reported by the window system):
  A01 zhang  C1 vs, C2 s, C3 d (no complaint outcome), all uploaded; C4 invited, never rated:
             its default rating uploaded; C5 in the feed, never invited; C6 invited and rated bs,
             uploaded, never reported by the feed; C7 reported withdrawn; one walk-up press.
  A02 li     C8 vd uploaded then EXCLUDED on review; C9 vs not uploaded (still pending);
             C10 accepted 2026-06-30 23:00 Shanghai, rated s at 23:30, uploaded (June);
             C11 accepted 2026-07-01 00:30 Shanghai (still 30 June in UTC), rated vs: JULY.
             li is unpaired and retired after July (kept in the bulletins).
  W01 wang   C20 accepted 2026-06-30 23:30 Urumqi (= 1 July 01:30 Shanghai: JUNE for this hall),
             rated vs at 23:40; C21 d: valid, rectified, called back; C22 vd: valid, called back.
  V01 zhao   C30 s uploaded; C31 in the feed, never invited.
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from adm_support import Store, open_store

from gateway import bindings, casefeed, invitations, org, uscc
from gateway.complaint_figures import RatingOutcome
from gateway.devices import add_device
from gateway.invitations import InvitationRequest, InvitationRules
from gateway.store.api import Tx

SH = ZoneInfo("Asia/Shanghai")
UR = ZoneInfo("Asia/Urumqi")
D1 = "11370303MB2858350L"
D2 = uscc.complete("11370303004253591")
ACTOR = "test:district"
HALL = {"id": "centre", "name": "区政务服务中心", "timezone": "Asia/Shanghai",
        "opening_hours": ["08:30-17:30"],
        "opening_days": [1, 2, 3, 4, 5]}
_batch = itertools.count(1)


def t(y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0, tz: ZoneInfo = SH) -> int:
    return int(dt.datetime(y, mo, d, h, mi, s, tzinfo=tz).timestamp() * 1000)


class Outcomes:
    """A stand-in for the complaints work's figures (gateway.complaint_figures.ComplaintFigures)."""

    def __init__(self) -> None:
        self.by_record: dict[str, RatingOutcome] = {}

    def outcomes(self, tx: Tx, lo_ms: int, hi_ms: int) -> list[RatingOutcome]:
        out = []
        for rid, o in self.by_record.items():
            r = tx.records.get(rid)
            if r is not None and lo_ms <= int(r["pressed_at_ms"]) < hi_ms:
                out.append(o)
        return out


class District:
    def __init__(self, store: Store) -> None:
        self.s = store
        self.outcomes = Outcomes()
        self.records: dict[str, str] = {}        # case -> record id of its rating
        self.invitations: dict[str, str] = {}    # case -> invitation id

    async def ack(self, upload_id: str, default: int = 0, inv: str | None = None,
                  at: int | None = None) -> None:
        bid = "b%d" % next(_batch)
        when = at or t(2026, 7, 10, 1)

        def unit(tx: Tx) -> None:
            # The item carries its case and which rating of it (complaints' 0201), as the push records.
            i = tx.invitations.get(inv) if inv else None
            if i is None:
                r = tx.records.get(upload_id)
                i = tx.invitations.get(r["invitation_id"]) if r is not None and r["invitation_id"] else None
            tx.uplink.mark_sent(bid, "x", [(upload_id, default, inv, i.case_no if i else None,
                                            i.assess_number if i else 1)], when)
            tx.uplink.apply_results(bid, [(when, "accepted", upload_id)], [], (1, 0, 0), when, None)
        await self.s.db.write(unit)

    async def feed(self, case: str, accepted: int, window: str, clerk: str, task: str = "T1",
                   status: str = "finished", finished: int | None = None) -> None:
        rep = casefeed.CaseReport(case_no=case, accepted_at=accepted, finished_at=finished, status=status,
                                  window=window, staff_account=clerk, task_code=task, task_name="事项" + task)
        await casefeed.report_cases(self.s.db, self.s.cfg.hall, [rep], "api:window", at_ms=accepted)

    async def invite(self, case: str, window: str, at: int, task: str = "T1") -> str:
        req = InvitationRequest(case_no=case, window_id=window, task_code=task, task_name="事项" + task,
                                applicant_type=1)
        out = await invitations.create(self.s.db, req, "api:window", InvitationRules(), at_ms=at)
        self.invitations[case] = out.invitation.id
        return out.invitation.id

    async def rate(self, device: str, window: str, case: str, grade: str, pressed: int, upload: bool = True,
                   task: str = "T1", invited: int | None = None) -> str:
        inv = await self.invite(case, window, invited if invited is not None else pressed - 10_000, task)
        rec = await self.s.rec(device, "rated", pressed, grade, inv)
        self.records[case] = rec["record_id"]
        if upload:
            await self.ack(rec["record_id"])
        return str(rec["record_id"])


async def build(tmp: Path, store_url: str) -> District:
    s = await open_store(tmp, store_url, hall=dict(HALL), uplink={"enabled": False})
    d = District(s)
    cfg = s.cfg.hall
    await s.db.write(lambda tx: add_device(tx, "dev-4", "cd" * 32, "t", ACTOR, t(2026, 5, 1, 0)))
    await org.add_hall(s.db, cfg, "west", org.HallSpec(name="西城镇便民服务中心", kind="town",
                                                       timezone="Asia/Urumqi",
                                                       opening_hours=("00:00-24:00",),
                                                       opening_days=(1, 2, 3, 4, 5, 6, 7)), ACTOR)
    await org.add_hall(s.db, cfg, "west-v1", org.HallSpec(name="西城村便民服务站", kind="village",
                                                          parent_id="west"),
                       ACTOR)
    await org.add_department(s.db, cfg, D1, "区行政审批服务局", None, ACTOR)
    await org.add_department(s.db, cfg, D2, "区人力资源和社会保障局", "west", ACTOR)
    may = t(2026, 5, 1, 0)
    for w in ("A01", "A02"):
        await org.move_window(s.db, cfg, w, ACTOR, dept_code=D1, at_ms=may - 1000)
    await org.add_window(s.db, cfg, "W01", D2, "西城综合窗口", "west", ACTOR, at_ms=may - 1000)
    await org.add_window(s.db, cfg, "V01", D2, "西城村代办窗口", "west-v1", ACTOR, at_ms=may - 1000)
    await org.add_staff(s.db, "zhao", "赵六", D2, ACTOR, at_ms=may - 1000)
    for dev, win, clerk in (("dev-1", "A01", "zhang"), ("dev-2", "A02", "li"), ("dev-3", "W01", "wang"),
                            ("dev-4", "V01", "zhao")):
        await bindings.pair(s.db, dev, win, clerk, ACTOR, at_ms=may)

    # A01 zhang
    for i, g in enumerate(("vs", "s", "d"), 1):
        day = t(2026, 6, 2 + i, 10)
        await d.feed("C%d" % i, day - 600_000, "A01", "zhang")
        await d.rate("dev-1", "A01", "C%d" % i, g, day)
    await d.feed("C4", t(2026, 6, 8, 9), "A01", "zhang")
    inv4 = await d.invite("C4", "A01", t(2026, 6, 8, 9, 5))
    await invitations.expire_due(s.db, t(2026, 6, 8, 9, 10))
    await d.ack("inv:" + inv4, 1, inv4)
    await d.feed("C5", t(2026, 6, 9, 9), "A01", "zhang")
    await d.rate("dev-1", "A01", "C6", "bs", t(2026, 6, 10, 10))
    await d.feed("C7", t(2026, 6, 11, 9), "A01", "zhang", status="withdrawn")
    await s.rec("dev-1", "walkup", t(2026, 6, 12, 10), "vd")
    # A02 li
    await d.feed("C8", t(2026, 6, 15, 9), "A02", "li", task="T2")
    r8 = await d.rate("dev-2", "A02", "C8", "vd", t(2026, 6, 15, 9, 30), task="T2")
    d.outcomes.by_record[r8] = RatingOutcome(r8, excluded=True)
    await d.feed("C9", t(2026, 6, 16, 9), "A02", "li", task="T2")
    await d.rate("dev-2", "A02", "C9", "vs", t(2026, 6, 16, 9, 30), upload=False, task="T2")
    await d.feed("C10", t(2026, 6, 30, 23), "A02", "li", task="T2")
    await d.rate("dev-2", "A02", "C10", "s", t(2026, 6, 30, 23, 30), task="T2")
    await d.feed("C11", t(2026, 7, 1, 0, 30), "A02", "li", task="T2")
    await d.rate("dev-2", "A02", "C11", "vs", t(2026, 7, 1, 0, 40), task="T2")
    # W01 wang (Urumqi)
    await d.feed("C20", t(2026, 6, 30, 23, 30, tz=UR), "W01", "wang", task="T3")
    await d.rate("dev-3", "W01", "C20", "vs", t(2026, 6, 30, 23, 40, tz=UR), task="T3")
    await d.feed("C21", t(2026, 6, 15, 10, tz=UR), "W01", "wang", task="T3")
    r21 = await d.rate("dev-3", "W01", "C21", "d", t(2026, 6, 15, 10, 5, tz=UR), task="T3")
    d.outcomes.by_record[r21] = RatingOutcome(r21, valid_bad=True, rectified=True, called_back=True)
    await d.feed("C22", t(2026, 6, 16, 10, tz=UR), "W01", "wang", task="T3")
    r22 = await d.rate("dev-3", "W01", "C22", "vd", t(2026, 6, 16, 10, 5, tz=UR), task="T3")
    d.outcomes.by_record[r22] = RatingOutcome(r22, valid_bad=True, called_back=True)
    # V01 zhao
    await d.feed("C30", t(2026, 6, 10, 10, tz=UR), "V01", "zhao", task="T3")
    await d.rate("dev-4", "V01", "C30", "s", t(2026, 6, 10, 10, 5, tz=UR), task="T3")
    await d.feed("C31", t(2026, 6, 11, 10, tz=UR), "V01", "zhao", task="T3")
    # li leaves after July.
    await bindings.unpair(s.db, "dev-2", ACTOR, at_ms=t(2026, 8, 1, 0))
    await org.retire_staff(s.db, "li", ACTOR, at_ms=t(2026, 8, 1, 1))
    return d


def run_cli(capsys: pytest.CaptureFixture[str], cfg: Path, *args: str) -> tuple[int, str, str]:
    """`hcp-gateway --config cfg ARGS` as the console script runs it: (exit code, stdout, stderr)."""
    from gateway.cli import main
    code = 0
    try:
        main(["--config", str(cfg), *args])
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err

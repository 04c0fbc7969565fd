"""Helpers for the complaint tests: a 差评 rating made the way the hall makes one (binding,
invitation, the device's record through attribution), a test clock, the example tag set."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from adm_support import Store

from gateway import bindings, invitations
from gateway.complaints import ComplaintService, ComplaintSettings
from gateway.invitations import InvitationRequest, InvitationRules
from gateway.workdays import WorkCalendar, WorkdaySettings

SH = ZoneInfo("Asia/Shanghai")
S = 1000
DEPT = "11370300MB0000000H"

# An example tag set (the shape of a province's; these codes are ours, for tests and the demo).
TAG_SETS = {
    "2026.1": {
        "source": "示例：某省政务服务好差评差评标签（测试用）",
        "d": [
            {"code": "D01", "name": "服务态度不好"},
            {"code": "D02", "name": "办事效率低"},
            {"code": "D03", "name": "一次性告知不到位"},
        ],
        "vd": [
            {"code": "V01", "name": "推诿扯皮"},
            {"code": "V02", "name": "吃拿卡要"},
            {"code": "V03", "name": "服务态度恶劣"},
        ],
    }
}
COMPLAINTS = {"tag_version": "2026.1", "tag_sets": TAG_SETS}


def local(y: int, mo: int, d: int, h: int = 10, mi: int = 0) -> int:
    return int(dt.datetime(y, mo, d, h, mi, tzinfo=SH).timestamp() * 1000)


@dataclass
class Clock:
    t: int

    def __call__(self) -> int:
        return self.t


@dataclass
class Hall:
    """A store, a complaint service on a test clock, and a counter of cases."""

    store: Store
    clock: Clock
    svc: ComplaintService
    n: int = 0
    paired: set[str] = field(default_factory=set)

    async def bad_rating(
        self,
        at_ms: int,
        grade: str = "vd",
        window: str = "A01",
        device: str = "dev-1",
        staff: str = "zhang",
        case_no: str | None = None,
    ) -> str:
        """An invitation at `window` just before at_ms and the device's rated record at at_ms;
        returns the record id (its complaint is not opened here: the caller decides how)."""
        if device not in self.paired:
            await bindings.pair(self.store.db, device, window, staff, "test", at_ms=at_ms - 3600 * S)
            self.paired.add(device)
        self.n += 1
        out = await invitations.create(
            self.store.db,
            InvitationRequest(
                case_no=case_no or "370303-2026-%06d" % self.n,
                window_id=window,
                task_code="T%03d" % self.n,
                task_name="城乡居民养老保险参保登记",
                applicant_type=1,
            ),
            "test",
            InvitationRules(),
            at_ms=at_ms - 20 * S,
        )
        rec = await self.store.rec(device, "rated", at_ms, grade, out.invitation.id)
        return str(rec["record_id"])

    async def complaint(self, at_ms: int, grade: str = "vd", **kw: Any) -> int:
        """bad_rating + its complaint opened at at_ms (as the ingest hook would, same instant)."""
        rid = await self.bad_rating(at_ms, grade, **kw)
        self.clock.t = at_ms
        got = await self.svc.open_for_record(rid, at_ms=at_ms)
        assert got is not None and got.created
        return got.complaint.id


def service(
    store: Store,
    clock: Clock,
    calendar: dict[str, Any] | None = None,
    corrections: str | None = None,
    **settings: Any,
) -> ComplaintService:
    cal = WorkCalendar(WorkdaySettings.from_mapping(calendar or {}))
    s = ComplaintSettings.from_mapping({**COMPLAINTS, **settings})
    return ComplaintService(store.db, s, cal, store.cfg.hall, corrections=corrections, clock=clock)

"""Helpers for the QR channel's tests: a store with [qr], the QR service on a test clock, and
the page's forms as a phone would send them (the token from the URL, the form from the page)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adm_support import Recorder, Store, make_config
from cmp_support import COMPLAINTS, Clock, local, service

from gateway import bindings, invitations
from gateway.config import Config
from gateway.invitations import InvitationRequest, InvitationRules
from gateway.qr.service import Page, QrService, Submitted

PUBLIC = "https://pj.example.gov.cn"
QR: dict[str, Any] = {"public_url": PUBLIC, "key_file": "qr.key", "hall_name": "测试区政务服务中心"}
T0 = local(2026, 9, 21, 10)  # a Monday, 10:00 +08:00
S = 1000


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


@dataclass
class QrHall:
    store: Store
    cfg: Config
    svc: QrService
    clock: Clock
    send: Recorder
    n: int = 0

    @property
    def db(self) -> Any:
        return self.store.db

    async def invite(
        self,
        window: str = "A01",
        receipt: bool = False,
        case_no: str | None = None,
        follow_up: bool = False,
        countdown_s: int = 60,
    ) -> invitations.Outcome:
        self.n += 1
        return await invitations.create(
            self.db,
            InvitationRequest(
                case_no=case_no or "370303-2026-%06d" % self.n,
                window_id=window,
                task_code="T%03d" % self.n,
                task_name="城乡居民养老保险参保登记",
                applicant_type=1,
                receipt=receipt,
                follow_up=follow_up,
                countdown_s=countdown_s,
            ),
            "api:window",
            InvitationRules.from_config(self.cfg),
            at_ms=self.clock.t,
            calendar=self.svc.calendar,
        )

    async def plate_token(self, window: str = "A01") -> str:
        plate, _ = await self.svc.issue_plate(window, "test")
        return token_of(self.svc.plate_url(plate.id))

    def case_token(self, inv_id: str) -> str:
        return token_of(self.svc.case_url(inv_id))

    async def rate_plate(
        self, token: str, grade: str, tags: list[str] | None = None, text: str = "", form: str | None = None
    ) -> Submitted:
        if form is None:
            form = (await self.svc.view_plate(token)).form
        return await self.svc.submit_plate(token, form, grade, tags or [], text)

    async def rate_case(
        self,
        token: str,
        grade: str,
        tags: list[str] | None = None,
        text: str = "",
        form: str | None = None,
        purpose: str | None = None,
    ) -> Submitted:
        page: Page | None = None
        if form is None or purpose is None:
            page = await self.svc.view_case(token)
        return await self.svc.submit_case(
            token,
            form or (page.form if page else ""),
            purpose or (page.purpose if page else "first"),
            grade,
            tags or [],
            text,
        )

    async def record(self, rid: str) -> dict[str, Any]:
        return await self.store.record(rid)


async def qr_hall(store: Store, tmp: Path, **qr: Any) -> QrHall:
    clock = Clock(T0)
    cfg = make_config(tmp, store.url, qr={**QR, **qr}, complaints=COMPLAINTS)
    send = Recorder()
    comp = service(store, clock)
    svc = QrService.from_config(store.db, cfg, complaints=comp, send_command=send, clock=clock)
    assert svc is not None
    return QrHall(store, cfg, svc, clock, send)


async def bind_qr_only(h: QrHall, window: str = "A02", staff: str = "li") -> None:
    """A window with no evaluator: its QR code bound to a clerk."""
    await h.svc.bind(window, staff, "test")


async def pair_device(h: QrHall, device: str = "dev-1", window: str = "A01", staff: str = "zhang") -> None:
    await bindings.pair(h.db, device, window, staff, "test", at_ms=h.clock.t - 3600 * S)

"""QR ratings at the platform: the same uplink as a device's, the channel per record (pf 3 二维码
from [uplink] qr_pf, 5 for the evaluator's), the 差评's reasons as evalDetail / writingEvaluation,
the follow-up as assessNumber 2; walk-ups and extras given on the page are no ratings.
Real store (both backends), the QR service, the real stand-in."""

from __future__ import annotations

from pathlib import Path

from up_support import Database, Seeder, fast_settings, local_ms

from gateway.attribution import AttributionRules
from gateway.complaints import ComplaintService, ComplaintSettings
from gateway.config import HallConfig, OpeningRange
from gateway.invitations import InvitationRequest, InvitationRules, create
from gateway.qr import tokens
from gateway.qr.service import QrService
from gateway.qr.settings import QrSettings
from gateway.uplink.push import push_once
from gateway.workdays import WorkCalendar
from simulator.platform import PlatformStandIn

DAY = "2025-03-03"  # a Monday
T0 = local_ms(DAY, 10)
TAGS = {
    "tag_version": "2025.1",
    "tag_sets": {
        "2025.1": {
            "source": "test tags",
            "d": [{"code": "D01", "name": "态度不好"}, {"code": "D02", "name": "效率低"}],
            "vd": [{"code": "V01", "name": "推诿"}],
        }
    },
}
RULES = InvitationRules(default_countdown_s=60, grace_s=30, qr=True, receipt_valid_s=3600)
ALWAYS = HallConfig(opening_hours=(OpeningRange(0, 24 * 60),), opening_days=(1, 2, 3, 4, 5, 6, 7))


def qr_service(db: Database, tmp: Path, clock: list[int]) -> QrService:
    settings = QrSettings(public_url="https://pj.example.gov.cn", key_file=tmp / "qr.key")
    comp = ComplaintService(
        db.store,
        ComplaintSettings.from_mapping(TAGS),
        WorkCalendar(),
        ALWAYS,
        corrections="send",
        clock=lambda: clock[0],
    )
    return QrService(
        db.store,
        settings,
        tokens.KeyRing.open(settings.key_file),
        comp,
        RULES,
        AttributionRules(),
        WorkCalendar(),
        ALWAYS,
        None,
        lambda: clock[0],
    )


def tok(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def test_qr_ratings_reach_the_platform_as_channel_3(
    gwdb: Database, seeder: Seeder, platform: PlatformStandIn, tmp_path: Path
) -> None:
    clock = [T0]
    svc = qr_service(gwdb, tmp_path, clock)
    # A receipt (the Lhasa way): the citizen rates at home, a 差评 with reasons.
    inv = (
        await create(
            gwdb,
            InvitationRequest(
                case_no="R-1",
                window_id="W01",
                task_code="T9",
                task_name="不动产登记",
                applicant_type=1,
                receipt=True,
            ),
            "test",
            RULES,
            T0,
        )
    ).invitation
    link = tok(svc.case_url(inv.id))
    clock[0] = T0 + 1800_000
    page = await svc.view_case(link)
    first = await svc.submit_case(link, page.form, "first", "d", ["D02", "D01"], "材料退回三次")
    # The evaluator's own case at the window: a press, channel 5.
    dev = (
        await create(
            gwdb,
            InvitationRequest(
                case_no="D-1", window_id="W01", task_code="T1", task_name="居民身份证换领", applicant_type=1
            ),
            "test",
            RULES,
            T0 + 1900_000,
        )
    ).invitation
    from up_support import CaseFlow

    press = await CaseFlow(gwdb, seeder).device_record("hcp-dev1", "rated", dev.id, T0 + 1905_000, grade="vs")
    # A plate with nothing waiting at the window: a walk-up, no rating at the platform.
    plate, _ = await svc.issue_plate("W01", "test")
    ptoken = tok(svc.plate_url(plate.id))
    clock[0] = T0 + 2000_000
    walk = await svc.submit_plate(ptoken, (await svc.view_plate(ptoken)).form, "s")
    rep = await push_once(gwdb, fast_settings(platform.url))
    assert rep.ok and rep.accepted == 2 and rep.local_rejected == 0
    by_id = {r["recordId"]: r for r in platform.accepted_records()}
    assert set(by_id) == {first.submission.record_id, press}
    q = by_id[first.submission.record_id]
    assert (q["pf"], q["satisfaction"], q["evalDetail"], q["writingEvaluation"], q["tagVersion"]) == (
        3,
        2,
        "D02,D01",
        "材料退回三次",
        "2025.1",
    )
    assert (q["projectNo"], q["assessNumber"], q["defaultFlag"], q["clerkAccount"]) == (
        "R-1",
        1,
        0,
        "clerk01",
    )
    assert q["assessTime"] == "2025-03-03 10:30:00"
    assert by_id[press]["pf"] == 5
    assert walk.submission.record_id not in by_id
    # The follow-up through the same link, four working days later: assessNumber 2, channel 3.
    clock[0] = local_ms("2025-03-07", 9)
    page = await svc.view_case(link)
    assert page.state == "follow_up"
    fu = await svc.submit_case(link, page.form, "follow_up", "s")
    rep = await push_once(gwdb, fast_settings(platform.url))
    assert rep.ok and rep.accepted == 1
    f = {r["recordId"]: r for r in platform.accepted_records()}[fu.submission.record_id]
    assert (f["assessNumber"], f["pf"], f["projectNo"], f["satisfaction"]) == (2, 3, "R-1", 4)
    # The province's channel code for QR ratings is configuration.
    assert fast_settings(platform.url, qr_pf=2).qr_pf == 2

"""What the platform learns of 差评 work: follow-up ratings (assessNumber 2, never a second first
rating), the reasons (evalDetail / writingEvaluation) before or after the upload, and the
exclusion after an overturned appeal -- sent where the adapter can, listed where it cannot.
Real store, the gateway's own invitation and attribution functions, the real stand-in."""

from __future__ import annotations

import pytest
from up_support import CaseFlow, Database, Seeder, fast_settings, local_ms

from gateway.complaints import ComplaintService, ComplaintSettings
from gateway.config import HallConfig
from gateway.errors import Conflict
from gateway.invitations import InvitationRequest, InvitationRules, create
from gateway.uplink.adapters import corrections_mode
from gateway.uplink.push import push_once
from gateway.uplink.reconcile import reconcile
from gateway.workdays import WorkCalendar
from simulator.platform import PlatformStandIn

DAY = "2025-03-03"  # a Monday
T0 = local_ms(DAY, 10)
TAGS = {
    "tag_version": "2025.1",
    "tag_sets": {
        "2025.1": {
            "source": "test tags",
            "d": [{"code": "D01", "name": "态度不好"}],
            "vd": [{"code": "V01", "name": "推诿"}],
        }
    },
}
RULES = InvitationRules(default_countdown_s=60, grace_s=30)


async def follow_up(db: Database, case_no: str, at_ms: int, window: str = "W01") -> str:
    out = await create(
        db,
        InvitationRequest(case_no=case_no, window_id=window, follow_up=True),
        "test",
        RULES,
        at_ms,
        calendar=WorkCalendar(),
    )
    assert out.invitation.assess_number == 2
    return out.invitation.id


def svc(db: Database, platform: PlatformStandIn, clock: list[int], **uplink: object) -> ComplaintService:
    return ComplaintService(
        db.store,
        ComplaintSettings.from_mapping(TAGS),
        WorkCalendar(),
        HallConfig(),
        corrections=corrections_mode(fast_settings(platform.url, **uplink)),  # type: ignore[arg-type]
        clock=lambda: clock[0],
    )


async def test_a_follow_up_rating_reaches_the_platform_with_assess_number_2(
    gwdb: Database, seeder: Seeder, platform: PlatformStandIn
) -> None:
    flow = CaseFlow(gwdb, seeder)
    a = await flow.invite("W01", T0, case_no="F-1")
    first = await flow.device_record("hcp-dev1", "rated", a, T0 + 10_000, grade="s")
    assert (await push_once(gwdb, fast_settings(platform.url))).accepted == 1
    # Four working days later (Friday): the citizen comes back and rates again.
    f = await follow_up(gwdb, "F-1", local_ms("2025-03-07", 15))
    second = await flow.device_record("hcp-dev1", "rated", f, local_ms("2025-03-07", 15) + 8_000, grade="d")
    rep = await push_once(gwdb, fast_settings(platform.url))
    assert rep.ok and rep.accepted == 1
    by_id = {r["recordId"]: r for r in platform.accepted_records()}
    assert (by_id[first]["assessNumber"], by_id[second]["assessNumber"]) == (1, 2)
    assert by_id[second]["projectNo"] == "F-1" and by_id[second]["taskName"] == "居民身份证换领"
    assert by_id[second]["satisfaction"] == 2 and by_id[second]["defaultFlag"] == 0
    # Only one follow-up; never a second first rating (an ordinary invitation is refused).
    with pytest.raises(Conflict) as e:
        await follow_up(gwdb, "F-1", local_ms("2025-03-07", 16))
    assert e.value.code == "case_already_followed_up"
    with pytest.raises(Conflict) as e:
        await flow.invite("W01", local_ms("2025-03-07", 16), case_no="F-1")
    assert e.value.code == "case_already_rated"
    # The follow-up 差评 opens its complaint too, marked as a follow-up.
    clock = [local_ms("2025-03-07", 16)]
    opened = await svc(gwdb, platform, clock).sweep()
    assert [(c.record_id, c.assess_number, c.grade) for c in opened] == [(second, 2, "d")]


async def test_follow_up_rules(gwdb: Database, seeder: Seeder, platform: PlatformStandIn) -> None:
    flow = CaseFlow(gwdb, seeder)
    with pytest.raises(Conflict) as e:
        await follow_up(gwdb, "NONE-1", T0)
    assert e.value.code == "no_first_rating"
    a = await flow.invite("W01", T0, case_no="F-2")
    await flow.device_record("hcp-dev1", "rated", a, T0 + 10_000, grade="vs")
    # 5 working days after Monday 3 March end with Monday 10 March, 24:00.
    with pytest.raises(Conflict) as e:
        await follow_up(gwdb, "F-2", local_ms("2025-03-11", 0, 0, 1))
    assert e.value.code == "follow_up_too_late" and "2025-03-10 24:00" in str(e.value)
    f = await follow_up(gwdb, "F-2", local_ms("2025-03-10", 23, 59))
    # The citizen does not press: an unrated follow-up is no rating and gets no default.
    unrated = await flow.device_record("hcp-dev1", "unrated", f, local_ms("2025-03-10", 23, 59) + 61_000)
    await flow.expire(local_ms("2025-03-12", 0))
    rep = await push_once(gwdb, fast_settings(platform.url))
    assert rep.ok and rep.accepted == 1 and rep.invitation_defaults == 0
    assert unrated not in platform.accepted_ids() and len(platform.accepted_ids()) == 1
    res = await reconcile(
        gwdb, fast_settings(platform.url), "2025-03-11", []
    )  # the platform holds none that day
    assert res.ok and res.uplink["held"] == 1, res.mismatches


async def test_reasons_go_up_with_the_rating_or_as_a_correction_after_it(
    gwdb: Database, seeder: Seeder, platform: PlatformStandIn
) -> None:
    flow = CaseFlow(gwdb, seeder)
    clock = [T0]
    complaints = svc(gwdb, platform, clock)
    a = await flow.invite("W01", T0, case_no="R-1")
    early = await flow.device_record("hcp-dev1", "rated", a, T0 + 10_000, grade="vd")
    b = await flow.invite("W01", T0 + 60_000, case_no="R-2")
    late = await flow.device_record("hcp-dev1", "rated", b, T0 + 70_000, grade="d")
    opened = {c.record_id: c.id for c in await complaints.sweep()}
    await complaints.attach_reasons(opened[early], "cli:li", ["V01"], "窗口推诿")
    assert (await push_once(gwdb, fast_settings(platform.url))).accepted == 2
    by_id = {r["recordId"]: r for r in platform.accepted_records()}
    assert (by_id[early]["evalDetail"], by_id[early]["writingEvaluation"], by_id[early]["tagVersion"]) == (
        "V01",
        "窗口推诿",
        "2025.1",
    )
    assert "evalDetail" not in by_id[late]
    # Reasons for the other one come after its upload: a correction, sent by the next push.
    await complaints.attach_reasons(opened[late], "cli:li", ["D01"], "排队太久", source="callback")
    pending, _ = await complaints.corrections(["pending"])
    assert [(k["record_id"], k["action"]) for k in pending] == [(late, "reasons")]
    rep = await push_once(gwdb, fast_settings(platform.url))
    assert rep.ok and rep.corrections_applied == 1 and rep.batches == 0
    rec = {r["recordId"]: r for r in platform.accepted_records()}[late]
    assert (rec["evalDetail"], rec["writingEvaluation"]) == ("D01", "排队太久")
    assert (await complaints.corrections(["acked"]))[1] == 1
    assert (await push_once(gwdb, fast_settings(platform.url))).corrections_applied == 0


async def test_reasons_given_while_the_push_is_sending_become_a_correction(
        gwdb: Database, seeder: Seeder, platform: PlatformStandIn) -> None:
    """The push maps a 差评 without reasons; the liaison attaches them before the push marks the
    batch sent: the same unit that marks it sent notes the correction (nothing slips through)."""
    from gateway.uplink import state
    flow = CaseFlow(gwdb, seeder)
    clock = [T0]
    complaints = svc(gwdb, platform, clock)
    a = await flow.invite("W01", T0, case_no="RACE-1")
    rid = await flow.device_record("hcp-dev1", "rated", a, T0 + 10_000, grade="vd")
    (c,) = await complaints.sweep()
    mapped = state.SendItem(rid, 0, None, "RACE-1", 1, ("", ""))      # what the push read
    await complaints.attach_reasons(c.id, "cli:li", ["V01"])           # meanwhile
    await state.mark_sent(gwdb.store, "batch-1", "x", [mapped], T0 + 20_000, "pending")
    rows, total = await complaints.corrections()
    assert total == 1 and (rows[0]["action"], rows[0]["status"], rows[0]["payload"]["tags"]) == \
        ("reasons", "pending", "V01")


async def test_an_overturned_appeal_is_sent_to_the_platform_as_an_exclusion(
    gwdb: Database, seeder: Seeder, platform: PlatformStandIn
) -> None:
    flow = CaseFlow(gwdb, seeder)
    clock = [T0]
    complaints = svc(gwdb, platform, clock)
    a = await flow.invite("W01", T0, case_no="X-9")
    rid = await flow.device_record("hcp-dev1", "rated", a, T0 + 10_000, grade="vd")
    (c,) = await complaints.sweep()
    clock[0] = T0 + 3_600_000
    await complaints.appeal(c.id, "cli:clerk01", "pressed by mistake, says the citizen")
    await complaints.review_start(c.id, "cli:supervisor")
    await complaints.review_decide(c.id, "cli:supervisor", True, "mistaken_press", "confirmed by phone")
    # Not at the platform yet: the rating goes up first, then its correction, in one push.
    rep = await push_once(gwdb, fast_settings(platform.url))
    assert rep.ok and rep.accepted == 1 and rep.corrections_applied == 1
    assert platform.excluded_ids() == [rid]
    assert platform.corrections()[0]["reason"] == "mistaken_press"


async def test_an_adapter_without_the_capability_lists_corrections_for_manual_action(
    gwdb: Database, seeder: Seeder, platform: PlatformStandIn
) -> None:
    flow = CaseFlow(gwdb, seeder)
    clock = [T0]
    complaints = svc(gwdb, platform, clock, corrections_path="")  # the province offers none
    a = await flow.invite("W01", T0, case_no="M-1")
    await flow.device_record("hcp-dev1", "rated", a, T0 + 10_000, grade="vd")
    (c,) = await complaints.sweep()
    await complaints.exclude(c.id, "cli:supervisor", "malicious", "the same person, ten 差评 in a minute")
    rows, total = await complaints.corrections(["manual"])
    assert total == 1 and rows[0]["action"] == "exclude"
    rep = await push_once(gwdb, fast_settings(platform.url, corrections_path=""))
    assert rep.ok and rep.corrections_applied == 0 and platform.excluded_ids() == []

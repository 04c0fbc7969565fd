"""The QR channel's service on a real store (SQLite, or PostgreSQL with HCP_STORE=postgresql):
plates bound to the binding, case links, one rating per case across channels, 差评 reasons into
the complaint, follow-ups, and every refusal (revoked, ended binding, reused, expired, forged)."""

from __future__ import annotations

from pathlib import Path

import pytest
from adm_support import Store, flags, make_config
from cmp_support import COMPLAINTS, service
from qr_support import T0, QrHall, S, bind_qr_only, pair_device, qr_hall, token_of

from gateway import bindings
from gateway.qr.service import QrRefusal, QrService
from gateway.qr.tokens import BadToken, verify


@pytest.fixture
async def h(store: Store, tmp_path: Path) -> QrHall:
    return await qr_hall(store, tmp_path)


async def refused(code: str, coro: object) -> QrRefusal:
    with pytest.raises(QrRefusal) as e:
        await coro  # type: ignore[misc]
    assert e.value.code == code, (e.value.code, str(e.value))
    return e.value


# ---- a QR-only window: plates alone ------------------------------------------------------------


async def test_a_plate_at_a_qr_only_window_rates_the_case_waiting_there(h: QrHall) -> None:
    await bind_qr_only(h, "A02", "li")
    token = await h.plate_token("A02")
    page = await h.svc.view_plate(token)
    assert (page.state, page.window_id, page.clerk_name, page.case) == ("rate", "A02", "李四", None)

    # Nothing waiting: a walk-up, stored and flagged, credited to the bound clerk.
    walk = await h.rate_plate(token, "s")
    rec = await h.record(walk.submission.record_id)
    assert (rec["kind"], rec["channel"], rec["staff_account"], rec["window_id"]) == (
        "walkup",
        "qr",
        "li",
        "A02",
    )
    assert flags(rec) == {"no_invitation"}

    # The window system invites the case; no device is told (the window has none).
    out = await h.invite("A02")
    assert out.commands == [] and out.invitation.device_id.startswith("qr-") and not out.invitation.receipt
    page = await h.svc.view_plate(token)
    assert page.case is not None and page.case.case_no_tail == "…0001"
    h.clock.t += 5 * S
    done = await h.rate_plate(token, "vs")
    rec = await h.record(done.submission.record_id)
    assert (rec["kind"], rec["invitation_id"], rec["grade"], rec["flags"]) == (
        "rated",
        out.invitation.id,
        "vs",
        "",
    )
    assert await h.store.invitation_status(out.invitation.id) == ("rated", rec["record_id"], "vs")
    assert done.submission.outcome == "rated" and h.send.sent == []
    # A second scan for the same case is kept, flagged, never a second rating.
    page = await h.svc.view_plate(token)
    assert page.case is None


async def test_a_plate_credits_only_while_its_clerk_is_bound_there(h: QrHall) -> None:
    await pair_device(h, "dev-1", "A01", "zhang")
    token = await h.plate_token("A01")
    await h.rate_plate(token, "s")
    # The evaluator is swapped, the clerk stays: the plate follows the binding's history.
    h.clock.t += 60 * S
    await bindings.unpair(h.db, "dev-1", "test", at_ms=h.clock.t)
    await refused("inactive", h.svc.view_plate(token))
    await refused("inactive", h.rate_plate(token, "s", form=(await _form_of_live(h, token))))
    await bindings.pair(h.db, "dev-2", "A01", "zhang", "test", at_ms=h.clock.t + 1)
    h.clock.t += 2 * S
    sub = await h.rate_plate(token, "vs")
    rec = await h.record(sub.submission.record_id)
    b = await h.db.read(lambda tx: tx.bindings.active_for_window("A01"))
    assert (rec["binding_id"], rec["staff_account"]) == (b.id, "zhang")
    # Another clerk takes the window: the plate (with zhang's name on it) stops crediting anyone.
    h.clock.t += 60 * S
    await bindings.pair(h.db, "dev-2", "A01", "li", "test", force=True, at_ms=h.clock.t)
    await refused("inactive", h.svc.view_plate(token))
    plates = await h.svc.plates()
    assert [p["state"] for p in plates] == ["inactive"]
    # The new clerk's plate is another code.
    other = await h.plate_token("A01")
    assert other != token and (await h.svc.view_plate(other)).clerk_account == "li"


async def _form_of_live(h: QrHall, token: str) -> str:
    """A form made while the plate was live (the refusal must come from the binding, not the form)."""
    from gateway.qr import tokens

    return tokens.form_token(h.svc.ring, "p", h.svc.check_subject("p", token), h.clock.t // 1000)


async def test_a_revoked_plate_is_refused_and_a_reprint_is_the_same_code(h: QrHall) -> None:
    await bind_qr_only(h, "A02", "li")
    token = await h.plate_token("A02")
    assert await h.plate_token("A02") == token  # a reprint: the same code
    form = (await h.svc.view_plate(token)).form
    plate_id = h.svc.check_subject("p", token)
    await h.svc.revoke(plate_id, "cli:admin", "photographed and posted online")
    await refused("revoked", h.svc.view_plate(token))
    await refused("revoked", h.svc.submit_plate(token, form, "vs"))
    with pytest.raises(Exception) as e:
        await h.svc.revoke(plate_id, "cli:admin", "again")
    assert getattr(e.value, "code", "") == "already_revoked"
    new = await h.plate_token("A02")
    assert new != token
    await h.rate_plate(new, "s")
    listed = await h.svc.plates(include_revoked=True)
    assert sorted((p["state"], p["ratings"]) for p in listed) == [("active", 1), ("revoked", 0)]
    audit = await h.store.fetchall("SELECT action FROM audit_log WHERE action LIKE 'qr.%' ORDER BY id")
    assert [a for (a,) in audit] == ["qr.point.add", "qr.plate.issue", "qr.plate.revoke", "qr.plate.issue"]


async def test_new_plate_revokes_the_old_one(h: QrHall) -> None:
    await bind_qr_only(h, "A02", "li")
    old = await h.plate_token("A02")
    plate, _ = await h.svc.issue_plate("A02", "test", new=True)
    await refused("revoked", h.svc.view_plate(old))
    assert (await h.svc.view_plate(token_of(h.svc.plate_url(plate.id)))).state == "rate"


async def test_no_plate_without_a_clerk_at_the_window(h: QrHall) -> None:
    with pytest.raises(Exception) as e:
        await h.svc.issue_plate("A03", "test")
    assert getattr(e.value, "code", "") == "no_clerk_bound"


# ---- forged tokens -------------------------------------------------------------------------------


async def test_forged_and_foreign_tokens_are_refused_before_the_store(h: QrHall) -> None:
    await bind_qr_only(h, "A02", "li")
    token = await h.plate_token("A02")
    subject, sig = token.split(".")
    flipped = sig[:8] + ("A" if sig[8] != "A" else "B") + sig[9:]  # a bit of the MAC
    await refused("forged", h.svc.view_plate(subject + "." + flipped))
    await refused("malformed", h.svc.view_plate(subject))
    await refused("malformed", h.svc.view_plate("../../etc/passwd"))
    await refused("malformed", h.svc.view_plate("x" * 5000))
    # A plate's signature is worthless as a case link's, and the other way round.
    await refused("forged", h.svc.view_case(token))
    out = await h.invite("A02", receipt=True)
    ctoken = h.case_token(out.invitation.id)
    await refused("forged", h.svc.view_plate(ctoken))
    # Another gateway's key signs nothing here.
    from gateway.qr import tokens

    other = tokens.KeyRing.open(h.cfg.sections["qr"].key_file.with_name("other.key"))
    with pytest.raises(BadToken):
        verify(h.svc.ring, "p", tokens.sign(other, "p", subject))
    # A genuine token of something that does not exist.
    await refused("unknown", h.svc.view_plate(tokens.sign(h.svc.ring, "p", "nosuchplate1")))
    n = await h.store.fetchone("SELECT count(*) FROM records")
    assert n == (0,)


# ---- receipts: the dynamic link per case ---------------------------------------------------------


async def test_a_receipt_link_rates_once_then_offers_the_follow_up(h: QrHall) -> None:
    await pair_device(h, "dev-1", "A01", "zhang")
    out = await h.invite("A01", receipt=True)
    inv = out.invitation
    assert inv.receipt and inv.device_id.startswith("qr-") and out.commands == []
    assert inv.expires_ms == T0 + 1440 * 60 * S
    # The evaluator still takes the next case at the window; the receipt is not superseded.
    nxt = await h.invite("A01")
    assert [c[1][0] for c in nxt.commands] == ["invite"] and not nxt.superseded
    token = h.case_token(inv.id)
    page = await h.svc.view_case(token)
    assert (page.state, page.purpose, page.case.task_name if page.case else "") == (
        "rate",
        "first",
        "城乡居民养老保险参保登记",
    )
    h.clock.t += 3600 * S  # an hour later, at home
    form = (await h.svc.view_case(token)).form
    first = await h.svc.submit_case(token, form, "first", "d", ["D02"], "等了两个小时")
    rec = await h.record(first.submission.record_id)
    assert (rec["kind"], rec["channel"], rec["staff_account"], rec["pressed_at_ms"]) == (
        "rated",
        "qr",
        "zhang",
        h.clock.t,
    )
    assert await h.store.invitation_status(inv.id) == ("rated", rec["record_id"], "d")
    # The complaint opened with the citizen's reasons, in the same unit of work.
    c = await h.db.read(lambda tx: tx.complaints.by_record(rec["record_id"]))
    assert (c.channel, c.grade, c.tags, c.comment, c.reasons_source, c.tag_version) == (
        "qr",
        "d",
        "D02",
        "等了两个小时",
        "qr",
        "2026.1",
    )
    # The same form again (a double tap, a retry): the same answer, nothing new.
    again = await h.svc.submit_case(token, form, "first", "d", ["D02"], "等了两个小时")
    assert again.repeat and again.submission.record_id == rec["record_id"]
    # The link is single use: a fresh page offers the follow-up, a first rating is refused.
    page = await h.svc.view_case(token)
    assert page.state == "follow_up" and page.follow_up_due == "2026-09-29 24:00+08:00"
    assert "您已于" in page.note_zh
    await refused("used", h.svc.submit_case(token, page.form, "first", "vs"))
    # The follow-up (追加评价, assessNumber 2), through the same link, once.
    h.clock.t += 86400 * S
    fu = await h.rate_case(token, "s")
    assert fu.submission.outcome == "follow_up"
    frec = await h.record(fu.submission.record_id)
    finv = await h.db.read(lambda tx: tx.invitations.get(frec["invitation_id"]))
    assert (finv.assess_number, finv.status, finv.case_no, finv.staff_account, finv.receipt) == (
        2,
        "rated",
        inv.case_no,
        "zhang",
        True,
    )
    await refused("followed_up", h.svc.view_case(token))
    page_form = await _fresh_form(h, "c", inv.id)
    await refused("followed_up", h.svc.submit_case(token, page_form, "follow_up", "vs"))
    assert await h.store.fetchone("SELECT count(*) FROM records WHERE channel = 'qr'") == (2,)


async def _fresh_form(h: QrHall, kind: str, subject: str) -> str:
    from gateway.qr import tokens

    return tokens.form_token(h.svc.ring, kind, subject, h.clock.t // 1000)


async def test_the_follow_up_period_is_five_working_days(h: QrHall) -> None:
    await bind_qr_only(h, "A02", "li")
    inv = (await h.invite("A02", receipt=True)).invitation
    token = h.case_token(inv.id)
    await h.rate_case(token, "vs")
    assert (await h.svc.view_case(token)).follow_up_due == "2026-09-29 24:00+08:00"
    h.clock.t = T0 + 9 * 86400 * S  # Wednesday next week: 5 working days (中秋 25 Sep off) are over
    await refused("follow_up_closed", h.svc.view_case(token))
    form = await _fresh_form(h, "c", inv.id)
    await refused("follow_up_closed", h.svc.submit_case(token, form, "follow_up", "vs"))


async def test_an_expired_receipt_link_takes_nothing(h: QrHall) -> None:
    await bind_qr_only(h, "A02", "li")
    inv = (await h.invite("A02", receipt=True)).invitation
    token = h.case_token(inv.id)
    assert (await h.svc.view_case(token)).state == "rate"
    h.clock.t = inv.expires_ms
    await refused("expired", h.svc.view_case(token))
    await refused("expired", h.svc.submit_case(token, await _fresh_form(h, "c", inv.id), "first", "vs"))
    # A form older than [qr] form_valid_min is refused too, whatever the link.
    inv2 = (await h.invite("A02", receipt=True)).invitation
    t2 = h.case_token(inv2.id)
    old = (await h.svc.view_case(t2)).form
    h.clock.t += 31 * 60 * S
    await refused("form_expired", h.svc.submit_case(t2, old, "first", "vs"))
    # A form of another page is refused (it names another subject).
    other = (await h.svc.view_case(h.case_token(inv2.id))).form
    inv3 = (await h.invite("A02", receipt=True)).invitation
    await refused("form_expired", h.svc.submit_case(h.case_token(inv3.id), other, "first", "vs"))
    assert await h.store.fetchone("SELECT count(*) FROM records") == (0,)


# ---- one rating per case across channels -----------------------------------------------------------


async def test_the_phone_first_stops_the_evaluator_and_its_press_is_an_extra(h: QrHall) -> None:
    await pair_device(h, "dev-1", "A01", "zhang")
    out = await h.invite("A01", countdown_s=120)
    inv = out.invitation
    assert inv.device_id == "dev-1" and not inv.receipt
    token = h.case_token(inv.id)  # a display device could show this link
    h.clock.t += 10 * S
    sub = await h.rate_case(token, "vs")
    assert sub.submission.outcome == "rated"
    assert h.send.of("dev-1") == [("cancel", {"i": inv.id})]  # the evaluator stops asking
    press = await h.store.rec("dev-1", "rated", h.clock.t + 2 * S, "s", inv.id)
    assert "extra" in flags(press)
    assert (await h.store.invitation_status(inv.id))[1] == sub.submission.record_id


async def test_the_evaluator_first_then_the_phone_is_a_flagged_extra(h: QrHall) -> None:
    await pair_device(h, "dev-1", "A01", "zhang")
    inv = (await h.invite("A01", countdown_s=120)).invitation
    token = h.case_token(inv.id)
    page = await h.svc.view_case(token)  # opened while the case was open
    press = await h.store.rec("dev-1", "rated", h.clock.t + 3 * S, "s", inv.id)
    h.clock.t += 5 * S
    sub = await h.svc.submit_case(token, page.form, "first", "vd", ["V01"])
    rec = await h.record(sub.submission.record_id)
    assert (sub.submission.outcome, rec["kind"], flags(rec)) == ("extra", "rated", {"extra"})
    assert (await h.store.invitation_status(inv.id))[1] == press["record_id"]
    # An extra opens no complaint, and is no rating at the platform.
    assert await h.store.fetchone("SELECT count(*) FROM complaints") == (0,)
    assert sub.submission.tags == "V01"  # the reasons given are kept with the submission


async def test_a_plate_rates_the_evaluators_waiting_case(h: QrHall) -> None:
    await pair_device(h, "dev-1", "A01", "zhang")
    token = await h.plate_token("A01")
    inv = (await h.invite("A01")).invitation
    sub = await h.rate_plate(token, "vd", ["V02", "V01"], "")
    assert sub.submission.outcome == "rated" and sub.submission.tags == "V02,V01"
    assert h.send.of("dev-1")[-1] == ("cancel", {"i": inv.id})
    c = await h.db.read(lambda tx: tx.complaints.by_record(sub.submission.record_id))
    assert c is not None and c.tags == "V02,V01" and c.case_no == inv.case_no
    # The citizen of a plate has no receipt: the confirmation carries the case's link.
    done = await h.svc.done_page(sub)
    assert done.follow_up_url == h.svc.case_url(inv.id) and done.follow_up_due is not None


# ---- answers ------------------------------------------------------------------------------------------


async def test_a_chaping_needs_a_reason_of_its_grade(h: QrHall) -> None:
    await bind_qr_only(h, "A02", "li")
    token = await h.plate_token("A02")
    await refused("need_tags", h.rate_plate(token, "d"))
    await refused("bad_tag", h.rate_plate(token, "d", ["V01"]))  # a 非常不满意 tag on 不满意
    await refused("bad_tag", h.rate_plate(token, "vd", ["NOPE"]))
    await refused("bad_grade", h.rate_plate(token, "excellent"))
    await refused("bad_text", h.rate_plate(token, "d", ["D01"], "x" * 501))
    await refused("bad_text", h.rate_plate(token, "d", ["D01"], "bell\x07"))
    ok = await h.rate_plate(token, "s", ["D01"], "words for a good grade are not asked")
    assert (ok.submission.tags, ok.submission.comment) == ("", "")
    assert await h.store.fetchone("SELECT count(*) FROM records") == (1,)


async def test_bursts_and_after_hours_are_flagged(store: Store, tmp_path: Path) -> None:
    h = await qr_hall(store, tmp_path)
    await bind_qr_only(h, "A02", "li")
    token = await h.plate_token("A02")
    rids = []
    for _ in range(6):  # [attribution] burst_presses = 5 within 10 s
        h.clock.t += 1 * S
        rids.append((await h.rate_plate(token, "vs")).submission.record_id)
    got = [flags(await h.record(r)) for r in rids]
    assert all("burst" in f for f in got), got
    # After hours (a hall open 08:30-17:30 on weekdays).
    cfg = make_config(
        tmp_path,
        store.url,
        qr={"public_url": "https://x.example", "key_file": "qr.key"},
        complaints=COMPLAINTS,
        hall={"timezone": "Asia/Shanghai", "opening_hours": ["08:30-17:30"]},
    )
    svc = QrService.from_config(store.db, cfg, complaints=service(store, h.clock), clock=h.clock)
    assert svc is not None
    h.clock.t = T0 + 12 * 3600 * S  # 22:00
    form = (await svc.view_plate(token)).form
    late = await svc.submit_plate(token, form, "s")
    assert "after_hours" in flags(await h.record(late.submission.record_id))


async def test_the_report_splits_ratings_by_channel(h: QrHall) -> None:
    from gateway import reports

    await pair_device(h, "dev-1", "A01", "zhang")
    a = (await h.invite("A01", countdown_s=120)).invitation
    await h.store.rec("dev-1", "rated", h.clock.t + 2 * S, "vs", a.id)
    h.clock.t += 10 * S
    b = (await h.invite("A01", receipt=True)).invitation
    await h.rate_case(h.case_token(b.id), "s")
    day = "2026-09-21"
    rep = await reports.day_report(h.db, h.store.cfg, day)
    row = next(r for r in rep.rows if r.window_id == "A01")
    assert (row.cases, row.ratings, row.ratings_qr) == (2, 2, 1)
    assert rep.total.ratings_qr == 1


async def test_a_year_the_calendar_does_not_know_is_said_not_guessed(h: QrHall) -> None:
    from cmp_support import local

    await bind_qr_only(h, "A02", "li")
    h.clock.t = local(2099, 6, 1, 10)  # the calendar library knows no such year
    inv = (await h.invite("A02", receipt=True)).invitation
    token = h.case_token(inv.id)
    done = await h.rate_case(token, "vs")  # the rating itself needs no calendar
    assert done.submission.outcome == "rated"
    assert (await h.svc.done_page(done)).follow_up_due is None
    e = await refused("calendar", h.svc.view_case(token))
    assert e.status == 503 and "稍后再试" in e.zh
    form = await _fresh_form(h, "c", inv.id)
    await refused("calendar", h.svc.submit_case(token, form, "follow_up", "s"))


# ---- the district's organisation: the window's hall and department --------------------------


async def test_a_qr_rating_is_the_halls_its_window_is_in_at_the_time(h: QrHall) -> None:
    """Like a device's record (gateway/attribution.py), a QR record carries its window's hall and
    department at its time (gateway/org.py); the page names that hall, and that hall's opening
    hours decide after_hours. Earlier ratings stay where they were given."""
    from gateway import org

    town_dept = "11370303MB0000009Q"  # a valid GB 32100 code
    default, db = h.cfg.hall, h.db
    await bind_qr_only(h, "A02", "li")
    token = await h.plate_token("A02")
    before = await h.rate_plate(token, "s")
    page = await h.svc.view_plate(token)
    assert page.hall_name == "测试区政务服务中心"  # the default hall: [qr] hall_name

    await org.add_hall(db, default, "town-1", org.HallSpec(name="某某镇便民服务中心", kind="town",
                                                           opening_hours=("08:00-09:00",)), "cli:admin",
                       at_ms=h.clock.t)
    await org.add_department(db, default, town_dept, "某某镇社会事务办", "town-1", "cli:admin",
                             at_ms=h.clock.t)
    h.clock.t += 60 * S
    await org.move_window(db, default, "A02", "cli:admin", hall_id="town-1", dept_code=town_dept,
                          at_ms=h.clock.t)
    h.clock.t += 60 * S
    page = await h.svc.view_plate(token)
    assert page.hall_name == "某某镇便民服务中心"
    after = await h.rate_plate(token, "vs")   # 10:02 on a Monday: the town hall closed at 09:00

    old = await h.record(before.submission.record_id)
    new = await h.record(after.submission.record_id)
    assert (new["hall_id"], new["dept_code"]) == ("town-1", town_dept)
    assert "after_hours" in flags(new) and "after_hours" not in flags(old)
    assert old["hall_id"] in (None, default.id)
    # The same attribution the bulletins, the console and the complaints use.
    for rec in (old, new):
        p = await db.read(lambda tx, rid=rec["record_id"]: org.org_at_press_time(tx, rid, default))
        assert (p.hall_id, p.dept_code) == (rec["hall_id"] or default.id, rec["dept_code"] or "")

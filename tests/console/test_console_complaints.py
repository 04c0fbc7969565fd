"""The console's 差评 work orders over HTTP, on both backends: the list and its filters, the
deadlines coloured by urgency, every action of the complaints service through the detail
page (audited as console:<account>), and the refusals: wrong role, other department,
forged or missing CSRF token, bad input (a clear Chinese error, nothing changed)."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

from console_support import DEPT_B, App, bad_rating, running_console

from gateway.clock import now_ms
from gateway.complaints import ComplaintService
from gateway.store.api import Tx


async def _state(app: App, cid: int) -> dict[str, object]:
    return await ComplaintService.from_config(app.store, app.cfg).show(cid)


def _ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'data-complaint="(\d+)"', html)]


async def test_list_filters_and_scope(app: App) -> None:
    a1 = await bad_rating(app.store, app.cfg, "dev-1", "vd")     # window A01, department A
    a2 = await bad_rating(app.store, app.cfg, "dev-2", "d")      # window A02, department A
    b1 = await bad_rating(app.store, app.cfg, "dev-3", "vd")     # window B01, department B
    admin = await app.client("admin")
    status, text, _ = await admin.get("/complaints")
    assert status == 200 and set(_ids(text)) == {a1, a2, b1}
    assert "联系期限" in text and "+08:00" in text and "dl-open" in text   # deadlines with their zone
    _, text, _ = await admin.get("/complaints?dept=" + DEPT_B)
    assert _ids(text) == [b1]
    _, text, _ = await admin.get("/complaints?state=open&hall=hall-1")
    assert set(_ids(text)) == {a1, a2, b1}
    _, text, _ = await admin.get("/complaints?state=closed")
    assert _ids(text) == []
    _, text, _ = await admin.get("/complaints?due=overdue")
    assert _ids(text) == []
    # The department liaison sees only its department's 差评, whatever the filter asks.
    liaison = await app.client("liaison")
    _, text, _ = await liaison.get("/complaints")
    assert set(_ids(text)) == {a1, a2}
    _, text, _ = await liaison.get("/complaints?dept=" + DEPT_B)
    assert _ids(text) == []
    status, text, _ = await liaison.get("/complaints/%d" % b1)
    assert status == 403 and "不在您的管理范围内" in text
    # The supervisor sees all halls.
    sup = await app.client("super")
    _, text, _ = await sup.get("/complaints")
    assert set(_ids(text)) == {a1, a2, b1}
    # An account of another hall sees none.
    h2 = await app.client("admin_h2")
    _, text, _ = await h2.get("/complaints")
    assert _ids(text) == []
    # Bad filters: a clear error.
    for q in ("state=nope", "due=later", "dept=" + "x" * 80, "hall=a%01b"):
        status, text, _ = await admin.get("/complaints?" + q)
        assert status == 400 and "不正确" in text, q


async def test_list_pages_newest_first(tmp_path: Path, store_url: str) -> None:
    async with running_console(tmp_path, store_url, page_size=10) as app:
        ids = [await bad_rating(app.store, app.cfg, "dev-1", "vd") for _ in range(12)]
        c = await app.client("admin")
        seen: list[int] = []
        pages = 0
        path: str | None = "/complaints?state=open"
        while path:
            status, text, _ = await c.get(path)
            assert status == 200 and "共 12 件" in text
            seen += _ids(text)
            pages += 1
            m = re.search(r'href="([^"]+)" id="older"', text)
            path = unescape(m.group(1)) if m else None
        assert seen == sorted(ids, reverse=True) and pages == 2
        for bad in ("x", "1~x", "1~", "99999999999999999999~1"):
            assert (await c.get("/complaints?before=" + bad))[0] == 400, bad


async def test_overdue_deadline_is_red(app: App) -> None:
    # A 差评 rated ten days ago: its contact deadline (1 working day) has passed.
    cid = await bad_rating(app.store, app.cfg, "dev-1", "vd", at_ms=now_ms() - 10 * 86_400_000)
    admin = await app.client("admin")
    _, text, _ = await admin.get("/complaints?due=overdue")
    assert _ids(text) == [cid]
    assert re.search(r'data-complaint="%d" class="bad"' % cid, text)
    assert "dl-overdue" in text and "已超期" in text
    _, text, _ = await admin.get("/complaints/%d" % cid)
    assert "dl-overdue" in text


async def test_whole_life_through_the_pages(app: App) -> None:
    cid = await bad_rating(app.store, app.cfg, "dev-1", "vd")
    c = await app.client("liaison")
    base = "/complaints/%d" % cid
    status, text, _ = await c.get(base)
    assert status == 200 and 'id="form-contact"' in text and 'id="form-verify"' in text
    assert 'id="form-review"' not in text and 'id="form-exclude"' not in text   # the supervisor's

    async def act(action: str, form: dict[str, object], client: object = c) -> str:
        status, _, r = await client.post(base + "/" + action, form)  # type: ignore[attr-defined]
        assert status == 303 and r.headers["Location"] == base, (action, status)
        _, text, _ = await client.get(base)  # type: ignore[attr-defined]
        assert 'id="flash"' in text
        return text

    await act("contact", {"note": "电话联系群众，了解到等候时间过长"})
    assert (await _state(app, cid))["state"] == "contacted"
    await act("reasons", {"tags": "V01", "text": "窗口推诿"})
    assert (await _state(app, cid))["tags"] == ["V01"]
    await act("verify", {"verdict": "valid", "complex": "1", "note": "属实"})
    s = await _state(app, cid)
    assert s["state"] == "rectifying" and s["verdict"] == "valid" and s["complex"]
    await act("appeal", {"note": "工作人员申诉：系统故障"})
    assert (await _state(app, cid))["appeal_state"] == "appealed"
    # The liaison cannot decide the review; the supervisor can.
    status, text, _ = await c.post(base + "/review", {"decision": "start"})
    assert status == 403 and "无权" in text
    sup = await app.client("super")
    await act("review", {"decision": "start", "note": ""}, sup)
    await act("review", {"decision": "uphold", "note": "经复核，差评成立"}, sup)
    assert (await _state(app, cid))["appeal_state"] == "upheld"
    await act("rectify", {"note": "已对窗口人员批评教育并优化流程"})
    text = await act("callback", {"grade": "s", "note": "群众表示满意"})
    assert "已回访" in text
    await act("close", {"note": ""})
    s = await _state(app, cid)
    assert s["state"] == "closed" and s["callback_grade"] == "s"
    # Every step is in the complaint's history and in the audit log under the console account.
    actors = [(e["action"], e["actor"]) for e in s["history"]]  # type: ignore[union-attr]
    assert ("contact", "console:liaison") in actors and ("review", "console:super") in actors
    assert ("close", "console:liaison") in actors
    rows = await app.store.read(lambda tx: tx.audit.page(None, 100, "console:liaison", None))
    assert {"complaint.contact", "complaint.verify", "complaint.rectify", "complaint.callback",
            "complaint.close", "complaint.appeal", "complaint.reasons"} <= {r["action"] for r in rows}
    admin = await app.client("admin")
    _, text, _ = await admin.get("/audit?actor=console:super")
    assert "差评：复核决定" in text


async def test_invalid_verdict_overturn_and_exclusion(app: App) -> None:
    c1 = await bad_rating(app.store, app.cfg, "dev-1", "d")
    c2 = await bad_rating(app.store, app.cfg, "dev-2", "vd")
    c3 = await bad_rating(app.store, app.cfg, "dev-1", "vd")
    admin = await app.client("admin")
    # Not valid needs a reason and a note.
    status, text, _ = await admin.post("/complaints/%d/verify" % c1, {"verdict": "invalid", "note": "误按"})
    assert status == 400 and "原因" in text
    assert (await _state(app, c1))["verdict"] == "pending"
    status, _, _ = await admin.post("/complaints/%d/verify" % c1,
                                    {"verdict": "invalid", "reason": "mistaken_press", "note": "确认误按"})
    assert status == 303
    s = await _state(app, c1)
    assert s["verdict"] == "invalid" and s["state"] == "closed"
    # Appeal then overturn by the supervisor: the rating is excluded (kept).
    assert (await admin.post("/complaints/%d/appeal" % c2, {"note": "申诉"}))[0] == 303
    sup = await app.client("super")
    assert (await sup.post("/complaints/%d/review" % c2, {"decision": "start"}))[0] == 303
    status, text, _ = await sup.post("/complaints/%d/review" % c2, {"decision": "overturn", "note": "恶意"})
    assert status == 400 and "原因" in text
    assert (await sup.post("/complaints/%d/review" % c2,
                           {"decision": "overturn", "reason": "malicious", "note": "恶意评价"}))[0] == 303
    s = await _state(app, c2)
    assert s["appeal_state"] == "overturned" and s["exclusion"] is not None and s["state"] == "closed"
    _, text, _ = await sup.get("/complaints/%d" % c2)
    assert 'id="c-excluded"' in text
    # Direct exclusion: the supervisor only.
    status, _, _ = await admin.post("/complaints/%d/exclude" % c3, {"reason": "malicious", "note": "x"})
    assert status == 403
    status, text, _ = await sup.post("/complaints/%d/exclude" % c3, {"reason": "bogus", "note": "x"})
    assert status == 400
    form = {"reason": "mistaken_press", "note": "误评"}
    assert (await sup.post("/complaints/%d/exclude" % c3, form))[0] == 303
    assert (await _state(app, c3))["exclusion"] is not None


async def test_refusals_change_nothing(app: App) -> None:
    cid = await bad_rating(app.store, app.cfg, "dev-1", "vd")
    base = "/complaints/%d" % cid
    before = await _state(app, cid)
    viewer = await app.client("viewer")
    status, text, _ = await viewer.get(base)
    assert status == 200 and 'id="form-contact"' not in text
    assert (await viewer.post(base + "/contact", {"note": "x"}))[0] == 403
    other = await app.client("admin_b")   # department B's admin
    assert (await other.post(base + "/contact", {"note": "x"}))[0] == 403
    c = await app.client("liaison")
    status, text, _ = await c.post(base + "/contact", {"note": "x"}, csrf="forged")
    assert status == 403 and "防伪校验失败" in text
    status, _, _ = await c.post(base + "/contact", {"note": "x"}, csrf="")
    assert status == 403
    status, text, _ = await c.post(base + "/contact", {"note": "   "})
    assert status == 400 and "请填写说明" in text
    status, text, _ = await c.post(base + "/contact", {"note": "x" * 1001})
    assert status == 400
    status, text, _ = await c.post(base + "/rectify", {"note": "太早"})    # not yet rectifying
    assert status == 409 and "状态不允许" in text
    status, text, _ = await c.post(base + "/reasons", {"tags": "NOPE"})
    assert status == 400 and "标签" in text, re.sub(r"(?s).*<main>|</main>.*", "", text)
    status, _, _ = await c.post(base + "/callback", {"grade": "zz"})
    assert status == 400
    status, _, _ = await c.post(base + "/nonsense", {"note": "x"})
    assert status == 404
    assert (await c.get("/complaints/999999"))[0] == 404
    after = await _state(app, cid)
    assert after["state"] == before["state"] == "opened" and after["history"] == before["history"]
    rows = await app.store.read(lambda tx: tx.audit.page(None, 50, None, "complaint.contact"))
    assert rows == []


async def test_follow_up_invitation(app: App) -> None:
    cid = await bad_rating(app.store, app.cfg, "dev-1", "vd")
    c = await app.client("liaison")
    status, _, r = await c.post("/complaints/%d/follow-up" % cid, {})
    assert status == 303
    _, text, _ = await c.get("/complaints/%d" % cid)
    assert "追加评价邀请" in text
    invs = await app.store.read(lambda tx: tx.invitations.page(None, 0, 2**62, None, None, 10))
    follow = [i for i in invs if i.assess_number == 2]
    assert len(follow) == 1 and follow[0].window_id == "A01" and follow[0].status == "pending"
    assert ("dev-1", "invite") in [(cmd[0], cmd[1]) for cmd in app.sent.commands]
    rows = await app.store.read(lambda tx: tx.audit.page(None, 50, "console:liaison", "invitation.create"))
    assert len(rows) == 1
    # The read-only account cannot invite.
    viewer = await app.client("viewer")
    assert (await viewer.post("/complaints/%d/follow-up" % cid, {}))[0] == 403


async def test_dashboard_shows_open_complaints_by_deadline(app: App) -> None:
    cid = await bad_rating(app.store, app.cfg, "dev-1", "vd")
    other = await bad_rating(app.store, app.cfg, "dev-3", "vd")
    liaison = await app.client("liaison")
    _, text, _ = await liaison.get("/dashboard/live")
    assert 'id="open-complaints"' in text and "/complaints/%d" % cid in text
    assert "/complaints/%d" % other not in text   # another department's


async def test_manual_correction_marked_done(app: App) -> None:
    """Where the platform's interface cannot take a correction, it is listed for someone to make
    in the platform's back office; the page records that it was made (audited)."""
    cid = await bad_rating(app.store, app.cfg, "dev-1", "vd")
    other = await bad_rating(app.store, app.cfg, "dev-1", "vd")
    c = await _state(app, cid)
    t = now_ms()

    def add(tx: Tx) -> None:   # what ComplaintService._correct lists in "manual" mode
        tx.complaints.add_correction(str(c["record_id"]), cid, "exclude", {"reason": "malicious"},
                                     "manual", t)
    await app.store.write(add)
    k = (await _state(app, cid))["corrections"][0]  # type: ignore[index]
    liaison = await app.client("liaison")
    _, text, _ = await liaison.get("/complaints/%d" % cid)
    assert "需在省平台后台处理" in text
    status, text, _ = await liaison.post("/complaints/%d/correction" % other, {"correction": str(k["id"])})
    assert status == 400 and "不属于此工单" in text
    assert (await (await app.client("viewer")).post("/complaints/%d/correction" % cid,
                                                    {"correction": str(k["id"])}))[0] == 403
    form = {"correction": str(k["id"]), "note": "已处理"}
    status, _, _ = await liaison.post("/complaints/%d/correction" % cid, form)
    assert status == 303
    assert (await _state(app, cid))["corrections"][0]["status"] == "manual_done"  # type: ignore[index]
    status, text, _ = await liaison.post("/complaints/%d/correction" % cid, {"correction": str(k["id"])})
    assert status == 409      # done already
    rows = await app.store.read(
        lambda tx: tx.audit.page(None, 50, "console:liaison", "complaint.correction_done"))
    assert len(rows) == 1

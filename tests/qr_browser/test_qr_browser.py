"""A citizen's phone (headless Chromium, 390x844) at a QR-only window: the plate's URL rates the
case waiting there, the receipt's URL takes a 差评 with its reasons and then the follow-up; the
store, the complaint, the report and the platform stand-in hold what was given (pf 3, evalDetail,
assessNumber 2). The screenshots of docs/qr.md come from here (HCP_QR_SCREENSHOTS=docs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness.browser import click_through, console_errors, wait_until
from qrb_support import LiveQrHall, full_page_png, screenshot_dir

pytestmark = pytest.mark.slow


def by_css(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def all_css(driver: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, css))


def open_page(driver: Any, url: str) -> None:
    driver.get(url)
    wait_until("the page loaded", lambda: driver.execute_script("return document.readyState") == "complete")


def text(driver: Any) -> str:
    return str(by_css(driver, "body").text)


def choose(driver: Any, grade: str) -> None:
    by_css(driver, 'label[for="g-%s"]' % grade).click()
    assert by_css(driver, "#g-" + grade).is_selected()


def tick(driver: Any, grade: str, code: str) -> None:
    box = by_css(driver, '.tags-%s input[value="%s"]' % (grade, code))
    box.find_element("xpath", "..").click()  # the label: the whole row is the target
    assert box.is_selected()


def test_a_phone_rates_through_the_plate_and_the_receipt(
    live: LiveQrHall, phone: Any, tmp_path: Path
) -> None:
    out = screenshot_dir(tmp_path)
    # The plate at window 3 (no evaluator there): printed from the admin API, its URL decoded.
    plate = live.plate_url("3")
    assert plate.startswith(live.base + "/q/p/")
    # The window system invites the case just handled; the clerk points at the plate.
    st, inv = live.api(
        "POST",
        "/api/v1/invitations",
        {
            "window": "3",
            "case_no": "370303-2026-0412-0007",
            "task_code": "11370300MB28503N1X4000117008000",
            "task_name": "城乡居民基本医疗保险参保登记",
            "dept_code": "11370303004253591T",
            "applicant_type": 1,
            "countdown_s": 300,
        },
    )
    assert st == 201 and inv["sent"] is True and inv["device_id"].startswith("qr-")
    open_page(phone, plate)
    page = text(phone)
    assert (
        "王晓燕" in page and "3号窗口" in page and "城乡居民基本医疗保险参保登记" in page and "…0007" in page
    )
    assert phone.execute_script("return window.innerWidth") == 390
    # Good grades ask no reasons: the reasons block stays hidden.
    assert not by_css(phone, ".bad").is_displayed()
    full_page_png(phone, out / "qr-plate.png")
    choose(phone, "s")
    click_through(phone, by_css(phone, "button[type=submit]"))
    done = text(phone)
    assert "感谢您的评价" in done and "满意" in done and "+08:00" in done
    full_page_png(phone, out / "qr-plate-done.png")
    st, status = live.api("GET", "/api/v1/invitations/" + inv["invitation_id"])
    assert status["status"] == "rated" and status["grade"] == "s"

    # A receipt (the Lhasa way): the case's link printed, rated later, a 差评 with its reasons.
    st, rec = live.api(
        "POST",
        "/api/v1/invitations",
        {
            "window": "3",
            "case_no": "370303-2026-0412-0008",
            "task_code": "11370300MB28503N1X4000117008001",
            "task_name": "职工医保异地就医备案",
            "dept_code": "11370303004253591T",
            "applicant_type": 1,
            "receipt": True,
        },
    )
    assert st == 201 and rec["receipt"] is True and rec["qr"]["png"].startswith("data:image/png;base64,")
    receipt = rec["qr"]["url"]
    assert receipt.startswith(live.base + "/q/c/" + rec["invitation_id"] + ".")
    open_page(phone, receipt)
    assert "职工医保异地就医备案" in text(phone)
    choose(phone, "d")
    # The 不满意 reasons appear (CSS only, no script on the page), the 非常不满意 ones do not.
    wait_until("the reasons shown", lambda: by_css(phone, ".tags-d").is_displayed())
    assert not by_css(phone, ".tags-vd").is_displayed()
    # Sent without a reason: the page says what is missing and keeps the choice.
    click_through(phone, by_css(phone, "button[type=submit]"))
    assert "请至少选择一项原因" in text(phone) and by_css(phone, "#g-d").is_selected()
    tick(phone, "d", "D02")
    tick(phone, "d", "D03")
    by_css(phone, "textarea[name=text]").send_keys("备案材料要求前后不一致，跑了两趟")
    full_page_png(phone, out / "qr-receipt-chaping.png")
    click_through(phone, by_css(phone, "button[type=submit]"))
    done = text(phone)
    assert "感谢您的评价" in done and "不满意" in done and "办事效率低" in done and "一次性告知不到位" in done
    assert "追加评价" in done
    full_page_png(phone, out / "qr-receipt-done.png")
    # Back: the browser's back button resends nothing; the link now offers the follow-up.
    open_page(phone, receipt)
    page = text(phone)
    assert "追加评价" in page and "您已于" in page and "不满意" in page
    choose(phone, "bs")
    full_page_png(phone, out / "qr-follow-up.png")
    click_through(phone, by_css(phone, "button[type=submit]"))
    assert "您的追加评价" in text(phone) and "基本满意" in text(phone)
    # Used up: the same link once more says so.
    open_page(phone, receipt)
    assert "本办件已追加评价" in text(phone)
    full_page_png(phone, out / "qr-used.png")
    assert console_errors(phone) == []

    # The store: three QR records, the complaint opened with the citizen's reasons.
    complaints = live.cli_json("complaints", "list")
    rows = complaints["complaints"] if isinstance(complaints, dict) else complaints
    assert len(rows) == 1
    c = rows[0]
    assert (
        c["channel"],
        c["grade"],
        c["tags"],
        c["comment"],
        c["case_no"],
        c["window_id"],
        c["staff_account"],
    ) == ("qr", "d", ["D02", "D03"], "备案材料要求前后不一致，跑了两趟", "370303-2026-0412-0008", "3", "3021")
    report = live.cli_json("report")
    row = next(r for r in report["rows"] if r["window_id"] == "3")
    assert (
        row["cases"],
        row["ratings"],
        row["ratings_qr"],
        row["follow_ups"],
        row["follow_ups_qr"],
        row["bad"],
    ) == (2, 2, 2, 1, 1, 1)
    # The platform: channel 3, the reasons, the follow-up as assessNumber 2.
    live.cli("push")
    got = {r["projectNo"] + ":" + str(r["assessNumber"]): r for r in live.platform_records()}
    assert set(got) == {"370303-2026-0412-0007:1", "370303-2026-0412-0008:1", "370303-2026-0412-0008:2"}
    assert {r["pf"] for r in got.values()} == {3}
    bad = got["370303-2026-0412-0008:1"]
    assert (bad["satisfaction"], bad["evalDetail"], bad["writingEvaluation"], bad["tagVersion"]) == (
        2,
        "D02,D03",
        "备案材料要求前后不一致，跑了两趟",
        "2026.1",
    )
    assert got["370303-2026-0412-0008:2"]["satisfaction"] == 3
    assert got["370303-2026-0412-0007:1"]["clerkAccount"] == "3021"


def test_a_revoked_plate_and_a_forged_link_are_refused_in_chinese(
    live: LiveQrHall, phone: Any, tmp_path: Path
) -> None:
    out = screenshot_dir(tmp_path)
    plate = live.plate_url("3")
    plates = live.cli_json("qr", "list")
    live.cli("qr", "revoke", plates[0]["id"], "--reason", "铭牌照片被发到网上")
    open_page(phone, plate)
    assert "此评价码已停用" in text(phone)
    full_page_png(phone, out / "qr-revoked.png")
    fresh = live.plate_url("3")  # the next print is a new code
    assert fresh != plate
    open_page(phone, fresh)
    assert "王晓燕" in text(phone)
    forged = fresh[:-3] + ("AAA" if not fresh.endswith("AAA") else "BBB")
    open_page(phone, forged)
    assert "无法识别此评价码" in text(phone)

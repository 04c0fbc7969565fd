"""The 差评 work orders and the bulletins in headless Chromium, against a real hall (mosquitto,
the gateway process, virtual evaluators running the firmware): a 非常不满意 press opens a work
order that the liaison's pages take from opened to closed; a bulletin is drawn (ECharts) and
its XLSX downloaded by the browser and read back with openpyxl, figure by figure.
"""

from __future__ import annotations

import datetime as dt
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from conftest import LiveHall, login, screenshot_dir, text_of
from harness.browser import DESKTOP, TABLET, click_through, console_errors, wait_until
from harness.store import query
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

pytestmark = pytest.mark.slow

# Bulletins count the ratings in the store here (the hall does not push to a platform stand-in).
BULLETIN_TOML = '\n[bulletin]\nratings = "stored"\nissuer = "测试区政务服务管理办公室"\n'


@pytest.fixture(scope="module")
def live_hall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHall]:
    h = LiveHall(tmp_path_factory.mktemp("hall"), devices=3, extra_config=BULLETIN_TOML)
    try:
        h.start()
        h.add_user("admin", "admin", "--name", "王主任")
        h.add_user("super", "supervisor", "--name", "区监督员")
        yield h
    finally:
        h.stop()


def rows(h: LiveHall, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return query(h.hall.store_path, sql, args)


def rated(h: LiveHall, i: int, grade: str) -> str:
    """The window system invites at window i, the citizen presses `grade`; the case number."""
    _, case_no = h.invite(i)
    r = h.press(i, grade)
    assert r is not None
    wait_until("device %d's journal acked" % i, lambda: h.journal_empty(i), timeout=20)
    return case_no


def no_sideways_scroll(driver: Any, what: str) -> None:
    w = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert w[0] <= w[1], "%s scrolls sideways: %s" % (what, w)


def submit(driver: Any, button_id: str) -> None:
    click_through(driver, driver.find_element(By.ID, button_id))
    wait_until("the result of %s" % button_id, lambda: driver.find_elements(By.ID, "flash")
               or driver.find_elements(By.ID, "error-text"), timeout=15)
    assert not driver.find_elements(By.ID, "error-text"), text_of(driver, "error-text")


def test_a_complaint_from_opened_to_closed(live_hall: LiveHall, browser: Any, tmp_path: Path) -> None:
    h = live_hall
    case_no = rated(h, 0, "vd")
    got = wait_until("the complaint opened by the press", lambda: rows(
        h, "SELECT id, state FROM complaints WHERE case_no = ?", case_no), timeout=20)
    cid = int(got[0][0])
    assert got[0][1] == "opened"
    login(browser, h.base, "admin")
    # The dashboard lists it among the open 差评, by deadline.
    wait_until("on the dashboard", lambda: browser.find_elements(
        By.CSS_SELECTOR, "tr[data-open-complaint='%d']" % cid), timeout=10)
    browser.get(h.base + "/complaints?state=open")
    row = browser.find_element(By.CSS_SELECTOR, "tr[data-complaint='%d']" % cid)
    assert "非常不满意" in row.text and "+08:00" in row.text and "待联系" in row.text
    out = screenshot_dir(tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    for size, suffix in ((DESKTOP, ""), (TABLET, "-tablet")):
        browser.set_window_size(*size)
        browser.get(h.base + "/complaints?state=open")
        no_sideways_scroll(browser, "/complaints at %s" % (size,))
        browser.save_screenshot(str(out / ("console-complaints%s.png" % suffix)))
    browser.set_window_size(*DESKTOP)
    click_through(browser, browser.find_element(By.ID, "c-link-%d" % cid))
    wait_until("the detail page", lambda: browser.find_elements(By.ID, "form-contact"))
    browser.save_screenshot(str(out / "console-complaint.png"))
    browser.set_window_size(*TABLET)
    no_sideways_scroll(browser, "/complaints/%d at the tablet's width" % cid)
    browser.set_window_size(*DESKTOP)

    browser.find_element(By.ID, "contact-note").send_keys("电话联系群众，反映窗口等候时间长")
    submit(browser, "contact-submit")
    assert text_of(browser, "c-state") == "已联系"
    browser.find_element(By.ID, "verify-valid").click()
    browser.find_element(By.ID, "verify-note").send_keys("经核实属实")
    submit(browser, "verify-submit")
    assert text_of(browser, "c-state") == "整改中" and "有效差评" in text_of(browser, "c-verdict")
    browser.find_element(By.ID, "rectify-note").send_keys("已调整窗口排班，增加高峰时段人员")
    submit(browser, "rectify-submit")
    assert text_of(browser, "c-state") == "已整改"
    Select(browser.find_element(By.ID, "callback-grade")).select_by_value("s")
    browser.find_element(By.ID, "callback-note").send_keys("回访群众，表示满意")
    submit(browser, "callback-submit")
    assert text_of(browser, "c-state") == "已回访"
    submit(browser, "close-submit")
    assert text_of(browser, "c-state") == "已办结"
    history = [e.get_attribute("data-action")
               for e in browser.find_elements(By.CSS_SELECTOR, "#c-history tr[data-action]")]
    assert history == ["open", "contact", "verify", "rectify", "callback", "close"]
    assert not console_errors(browser)

    state = rows(h, "SELECT state, verdict, callback_grade FROM complaints WHERE id = ?", cid)
    assert state == [("closed", "valid", "s")]
    actors = rows(h, "SELECT action, actor FROM complaint_events WHERE complaint_id = ? ORDER BY id", cid)
    assert [a for _, a in actors[1:]] == ["console:admin"] * 5
    audit = [r[0] for r in rows(h, "SELECT action FROM audit_log WHERE actor = 'console:admin'"
                                   " AND action LIKE 'complaint.%' ORDER BY id")]
    assert audit == ["complaint.contact", "complaint.verify", "complaint.rectify", "complaint.callback",
                     "complaint.close"]
    # The supervisor sees it too, and can change nothing a liaison does (no action forms).
    login(browser, h.base, "super")
    browser.get(h.base + "/complaints/%d" % cid)
    assert text_of(browser, "c-state") == "已办结" and not browser.find_elements(By.ID, "form-contact")


def _cell_values(ws: Any) -> list[list[Any]]:
    return [[c.value for c in r] for r in ws.iter_rows()]


def test_bulletin_drawn_and_its_xlsx_downloaded(live_hall: LiveHall, browser: Any, tmp_path: Path) -> None:
    h = live_hall
    for i, grade in ((1, "vs"), (2, "s"), (1, "bs"), (2, "d")):
        rated(h, i, grade)
    # What the store says the month's ratings are (each invitation's one rating).
    expected = {g: n for g, n in rows(h, "SELECT grade, count(*) FROM invitations WHERE status = 'rated'"
                                         " AND assess_number = 1 GROUP BY grade")}
    assert sum(expected.values()) >= 4 and expected.get("d", 0) >= 1
    cases = rows(h, "SELECT count(DISTINCT case_no) FROM invitations")[0][0]
    login(browser, h.base, "super")
    browser.get(h.base + "/bulletins")
    assert browser.find_element(By.ID, "p-quarter").is_displayed()      # the default: a quarter
    assert not browser.find_element(By.ID, "p-month").is_displayed()
    Select(browser.find_element(By.ID, "p-kind")).select_by_value("month")
    assert browser.find_element(By.ID, "p-month").is_displayed()
    assert not browser.find_element(By.ID, "p-quarter").is_displayed()
    Select(browser.find_element(By.ID, "p-by")).select_by_value("window")
    click_through(browser, browser.find_element(By.ID, "p-submit"))
    wait_until("the bulletin by window", lambda: "各窗口" in text_of(browser, "b-title"))
    for cid in ("chart-0", "chart-1", "chart-2"):
        wait_until("chart %s drawn" % cid,
                   lambda cid=cid: browser.find_element(By.ID, cid).get_attribute("data-drawn"))
    now = dt.datetime.now(ZoneInfo("Asia/Shanghai"))
    month = "%d年%d月" % (now.year, now.month)
    assert month in text_of(browser, "b-title")
    totals_html = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#b-totals th")]
    headers = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#bulletin thead th")]
    out = screenshot_dir(tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(out / "console-bulletin.png"))
    no_sideways_scroll(browser, "/bulletins")
    assert not console_errors(browser)

    downloads = Path(browser.downloads)
    for f in downloads.glob("*"):
        f.unlink()
    # The test config ends a session after 10 s without a request: load the page afresh first.
    browser.get(browser.current_url)
    browser.find_element(By.ID, "dl-xlsx").click()
    got = wait_until("the XLSX downloaded", lambda: [p for p in downloads.glob("*.xlsx")], timeout=20)
    time.sleep(0.2)
    wb = openpyxl.load_workbook(got[0])
    ws = wb.worksheets[0]
    cells = _cell_values(ws)
    flat = [v for r in cells for v in r if v is not None]
    assert any(isinstance(v, str) and "各窗口“好差评”评估通报表" in v for v in flat)
    assert "测试区政务服务管理办公室" in " ".join(str(v) for v in flat)
    head_i = next(i for i, r in enumerate(cells) if "评价量" in r)
    head = [str(v).replace("\n", "") if v is not None else "" for v in cells[head_i]]
    totals = next(r for r in cells if r and r[0] == "合计")
    col = {name: i for i, name in enumerate(head)}
    # The figures: the store's ratings, grade by grade, and the page's totals row.
    for g, zh in (("vs", "非常满意"), ("s", "满意"), ("bs", "基本满意"), ("d", "不满意"),
                  ("vd", "非常不满意")):
        assert totals[col[zh]] == expected.get(g, 0), zh
    assert totals[col["评价量"]] == sum(expected.values())
    assert totals[col["差评"]] == expected.get("d", 0) + expected.get("vd", 0)
    assert totals[col["办件量"]] == cases
    assert headers == head[:len(headers)]
    for name in ("办件量", "评价量", "差评", "非常满意"):
        assert totals_html[headers.index(name)] == str(totals[col[name]]), name
    with zipfile.ZipFile(got[0]) as z:   # openpyxl does not read charts back: look inside
        assert len([n for n in z.namelist() if n.startswith("xl/charts/chart")]) == 3
    assert got[0].name == "bulletin-%d-%02d-window.xlsx" % (now.year, now.month)

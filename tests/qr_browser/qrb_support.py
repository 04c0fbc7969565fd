"""Helpers of the QR channel's browser tests: the channel end to end in a real headless Chromium
with a phone's viewport: a real mosquitto, the real gateway process ([qr], [http], [uplink]), the
platform stand-in process and a QR-only window (no evaluator: plates alone), all on 127.0.0.1.
Nothing is scanned: the browser follows the URL the printed plate carries (decoded from the
plate's PNG) and the URL the invitation API returns for the receipt."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.mqtt import GATEWAY, TEST_USERS  # noqa: E402

from simulator.broker import Mosquitto, standard_acl  # noqa: E402
from simulator.gateway_proc import GatewayProcess, write_config  # noqa: E402
from simulator.netutil import free_port, wait_port  # noqa: E402
from simulator.proc import stop_process  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HCP_GATEWAY = Path(sys.executable).parent / "hcp-gateway"
PHONE = (390, 844)
WINDOW_TOKEN = "window-token-" + "w" * 16
ADMIN_TOKEN = "admin-token-" + "a" * 16
DEPT = "11370303004253591T"
TAGS = """
[complaints]
tag_version = "2026.1"
[complaints.tag_sets."2026.1"]
source = "示例标签（测试用，非任何省份的正式标签）"
d = [ { code = "D01", name = "服务态度不好" }, { code = "D02", name = "办事效率低" },
      { code = "D03", name = "一次性告知不到位" } ]
vd = [ { code = "V01", name = "推诿扯皮" }, { code = "V02", name = "吃拿卡要" } ]
"""


def _calendar() -> str:
    """The test runs on today's clock; a follow-up period may reach into a year the pinned
    calendar library does not know yet: then a plain arrangement (no holidays) is typed in, as
    test_adm_complaints_cli does (the unknown-year behaviour is tested on its own)."""
    import datetime as dt

    from gateway.workdays import WorkCalendar

    out = ""
    for year in (dt.date.today().year, dt.date.today().year + 1):
        try:
            WorkCalendar().check_year(year)
        except LookupError:
            out += '\n[calendar.national.%d]\nsource = "test only"\nholidays = []\n' % year
    return out


class LiveQrHall:
    """Broker, platform stand-in and gateway processes for one module; CLI and API helpers."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.http_port = free_port()
        self.platform_port = free_port()
        self.base = "http://127.0.0.1:%d" % self.http_port
        self.platform_url = "http://127.0.0.1:%d" % self.platform_port
        self.broker = Mosquitto(workdir / "mosquitto", users=TEST_USERS, acl=standard_acl())
        self.config = workdir / "gateway.toml"
        self.gateway: GatewayProcess | None = None
        self.platform: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.broker.start()
        extra = (
            """
[hall]
id = "zd-centre"
area_code = "370303"
timezone = "Asia/Shanghai"
opening_hours = ["00:00-24:00"]
opening_days = [1, 2, 3, 4, 5, 6, 7]
[http]
host = "127.0.0.1"
port = %d
window_token = "%s"
admin_token = "%s"
[uplink]
url = "%s"
area_code = "370303"
backoff_base_s = 0.05
backoff_max_s = 0.2
[qr]
public_url = "%s"
key_file = "secrets/qr.key"
hall_name = "淄博市张店区马尚便民服务中心"
"""
            % (self.http_port, WINDOW_TOKEN, ADMIN_TOKEN, self.platform_url, self.base)
            + TAGS
            + _calendar()
        )
        write_config(
            self.config,
            mqtt_port=self.broker.port,
            mqtt_password=GATEWAY[1],
            db_path=self.workdir / "gateway.db",
            extra=extra,
        )
        log = open(self.workdir / "platform.log", "wb")
        self.platform = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "simulator.platform",
                "--port",
                str(self.platform_port),
                "--config",
                str(self.config),
                "--db",
                str(self.workdir / "platform.sqlite"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        wait_port("127.0.0.1", self.platform_port, time.monotonic() + 30, self.platform)
        self.cli("init")
        self.cli("windows", "add", "3", "--dept", DEPT, "--name", "社保医保")
        self.cli("staff", "add", "3021", "--name", "王晓燕")
        self.cli("qr", "bind", "--window", "3", "--staff", "3021")  # a QR-only window
        self.gateway = GatewayProcess(self.config, self.workdir)
        self.gateway.start(timeout=60)

    def stop(self) -> None:
        try:
            if self.gateway is not None:
                self.gateway.terminate()
        finally:
            try:
                if self.platform is not None:
                    stop_process(self.platform)
            finally:
                self.broker.stop()

    def cli(self, *args: str) -> str:
        proc = subprocess.run(
            [str(HCP_GATEWAY), "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.workdir,
        )
        if proc.returncode != 0:
            raise AssertionError(
                "hcp-gateway %s: exit %d: %s" % (" ".join(args), proc.returncode, proc.stderr)
            )
        return proc.stdout

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli("--json", *args))

    def api(self, method: str, path: str, body: Any = None, token: str = WINDOW_TOKEN) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return r.status, json.loads(
                    raw
                ) if r.headers.get_content_type() == "application/json" else raw
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def plate_url(self, window: str) -> str:
        """The URL the printed plate carries: its PNG from the admin API, decoded."""
        import zxingcpp
        from PIL import Image

        st, png = self.api(
            "GET", "/api/v1/qr/windows/%s/plate?format=png&size=A5" % window, token=ADMIN_TOKEN
        )
        assert st == 200, png
        found = [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]
        assert len(found) == 1, found
        return found[0]

    def platform_records(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.platform_url + "/admin/records?limit=1000", timeout=10) as r:
            body = json.loads(r.read())
        return list(body["records"] if isinstance(body, dict) else body)


def screenshot_dir(default: Path) -> Path:
    """docs/img when HCP_QR_SCREENSHOTS=docs (to refresh the committed ones), else a tmp dir."""
    if os.environ.get("HCP_QR_SCREENSHOTS") == "docs":
        out = REPO / "docs" / "img"
        out.mkdir(parents=True, exist_ok=True)
        return out
    return default


def full_page_png(driver: Any, path: Path) -> None:
    """The whole page at the phone's width (Chromium's captureBeyondViewport)."""
    import base64

    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    path.write_bytes(base64.b64decode(shot["data"]))

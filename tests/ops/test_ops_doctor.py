"""`hcp-gateway doctor` on a hall set up like the install does (dynsec, TLS to the broker,
HTTPS, the platform stand-in, a webhook): every check passes; then each fault is injected on
its own and the doctor fails with exit 1 on the right line. Both store backends."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from gw_support import wait_for
from harness.store import execute, is_pg
from ops_support import Hall, WebhookReceiver, doctor, make_hall

from simulator.platform import PlatformStandIn, schema_for

pytestmark = pytest.mark.slow


def uplink_toml(url: str, secret: str = "change-me") -> str:
    return '[uplink]\nurl = "%s"\napp_key = "hall-1"\napp_secret = "%s"\ndaily_at = "03:00"\n' % (
        url, secret)


async def _hall(tmp: Path, store_url: str, extra: str = "", **kw: object) -> tuple[Hall, PlatformStandIn,
                                                                                 WebhookReceiver]:
    platform = PlatformStandIn(schema_for("default"))
    await platform.start()
    hook = await WebhookReceiver().start()
    text = uplink_toml(platform.url) + hook.notify_toml() + extra
    hall = await asyncio.to_thread(make_hall, tmp, store_url, extra=text, **kw)
    return hall, platform, hook


async def _close(hall: Hall, platform: PlatformStandIn, hook: WebhookReceiver) -> None:
    await asyncio.to_thread(hall.stop)
    await platform.stop()
    await hook.stop()


def _overwrite_page(db: Path, n: int, page: int = 4096) -> None:
    """Damage a SQLite file the way a bad disk does: one b-tree page replaced by noise."""
    data = bytearray(db.read_bytes())
    assert len(data) > (n + 1) * page
    data[n * page:(n + 1) * page] = os.urandom(page)
    db.write_bytes(bytes(data))


def failing(checks: dict[str, tuple[str, str]]) -> list[str]:
    return [name for name, (status, _) in checks.items() if status == "fail"]


async def test_doctor_passes_on_a_healthy_hall(tmp_path: Path, store_url: str) -> None:
    hall, platform, hook = await _hall(tmp_path, store_url)
    try:
        await asyncio.to_thread(hall.gateway.start)
        rc, checks, _ = await doctor(hall.config_path)
        assert rc == 0, "\n".join("%s %s %s" % (n, s, d) for n, (s, d) in checks.items())
        for name in ("config", "store", "service", "broker", "accounts", "acl", "platform", "clock", "disk",
                     "tls", "alerts"):
            assert checks[name][0] == "ok", (name, checks[name])
        assert "integrity" in checks["store"][1] or "quick_check" in checks["store"][1]
        assert "the service" in checks["broker"][1] and "connected" in checks["broker"][1]
        assert "all 2 registered devices" in checks["accounts"][1]
        # the probe account is gone again
        got = await asyncio.to_thread(hall.broker.control_api, [{"command": "listClients", "verbose": False,
                                                                  "count": -1, "offset": 0}])
        assert not [c for c in got[0]["data"]["clients"] if "probe" in c]
        # text output: one line per check
        from ops_support import cli
        rc, out, err = await cli(hall.config_path, "doctor")
        assert rc == 0 and err == ""
        assert len(out.strip().splitlines()) == 11 and out.startswith("ok    config")
    finally:
        await _close(hall, platform, hook)


async def test_service_stopped_fails_the_service_line_and_the_broker_is_probed(tmp_path: Path,
                                                                              store_url: str) -> None:
    hall, platform, hook = await _hall(tmp_path, store_url)
    try:
        # the service ran once (its persistent session subscribes), then stopped
        await asyncio.to_thread(hall.gateway.start)
        await asyncio.to_thread(hall.gateway.terminate)
        rc, checks, _ = await doctor(hall.config_path)
        assert rc == 1 and failing(checks) == ["service"], checks
        assert "no gateway serves this store" in checks["service"][1]
        assert checks["broker"][0] == "ok" and "no service running" in checks["broker"][1]
        # a message queued for the stopped service survives the probe (which resumes its session,
        # receives it and acknowledges nothing): the service starts and gets it
        dev = hall.device("dev-a")
        await dev.connect()
        rid = await dev.press()
        await asyncio.sleep(0.3)
        rc, checks, _ = await doctor(hall.config_path)      # probe again while the message waits
        assert checks["broker"][0] == "ok"
        await asyncio.to_thread(hall.gateway.start)
        await wait_for(lambda: rid in dev.acks, 20, "the queued record's ack")
        assert dev.acks.get(rid) == 1, "a record queued for the gateway was lost to the probe"
        await dev.disconnect()
    finally:
        await _close(hall, platform, hook)


async def test_broker_refusing_the_gateways_password_fails_the_broker_line(tmp_path: Path,
                                                                          store_url: str) -> None:
    hall, platform, hook = await _hall(tmp_path, store_url)
    try:
        hall.set_config(hall.config_path.read_text().replace('password = "gwpass"', 'password = "wrong"'))
        rc, checks, _ = await doctor(hall.config_path)
        assert rc == 1 and checks["broker"][0] == "fail", checks
        assert "refused the gateway's account gateway" in checks["broker"][1]
    finally:
        await _close(hall, platform, hook)


async def test_broker_down_under_a_running_service_fails_the_broker_line(tmp_path: Path,
                                                                         store_url: str) -> None:
    hall, platform, hook = await _hall(tmp_path, store_url)
    try:
        await asyncio.to_thread(hall.gateway.start)
        await asyncio.to_thread(hall.broker.stop)
        await asyncio.sleep(1.0)     # the service notices and says so in its heartbeat
        rc, checks, _ = await doctor(hall.config_path)
        assert rc == 1 and checks["broker"][0] == "fail", checks
        assert "is not connected" in checks["broker"][1]
        assert checks["service"][0] == "ok"
    finally:
        await _close(hall, platform, hook)


async def test_config_readable_by_others_or_invalid(tmp_path: Path, store_url: str) -> None:
    hall, platform, hook = await _hall(tmp_path, store_url)
    try:
        await asyncio.to_thread(hall.gateway.start)
        os.chmod(hall.config_path, 0o644)
        rc, checks, _ = await doctor(hall.config_path)
        assert rc == 1 and failing(checks) == ["config"], checks
        assert "readable by every user" in checks["config"][1]
        hall.set_config(hall.config_path.read_text() + "\n[alerts]\njournal_depht = 3\n")
        rc, checks, _ = await doctor(hall.config_path)
        assert rc == 1 and checks["config"][0] == "fail"
        assert "did you mean journal_depth" in checks["config"][1]
        assert {s for n, (s, _) in checks.items() if n != "config"} == {"skip"}
    finally:
        await _close(hall, platform, hook)


async def test_damaged_store_fails_the_store_line(tmp_path: Path, store_url: str) -> None:
    hall, platform, hook = await _hall(tmp_path, store_url)
    try:
        await asyncio.to_thread(hall.gateway.start)
        await asyncio.to_thread(hall.gateway.terminate)
        if is_pg(hall.store_url):
            execute(hall.store_url, "DROP TABLE service_instances")
            expect = "table service_instances is missing"
        else:
            await asyncio.to_thread(_overwrite_page, Path(hall.store_url), 3)
            expect = "damaged"
        rc, checks, _ = await doctor(hall.config_path)
        assert rc == 1 and checks["store"][0] == "fail" and expect in checks["store"][1], checks
        assert checks["service"][0] == "skip"
    finally:
        await _close(hall, platform, hook)


async def test_store_readable_by_others_fails_the_store_line(tmp_path: Path, store_url: str) -> None:
    if is_pg(store_url):
        pytest.skip("file modes are SQLite's (PostgreSQL's files belong to its server)")
    hall, platform, hook = await _hall(tmp_path, store_url)
    try:
        await asyncio.to_thread(hall.gateway.start)
        os.chmod(hall.store_url, 0o644)
        rc, checks, _ = await doctor(hall.config_path)
        assert rc == 1 and failing(checks) == ["store"] and "holds device keys" in checks["store"][1], checks
    finally:
        await _close(hall, platform, hook)


async def test_device_without_broker_account_fails_the_accounts_line(tmp_path: Path, store_url: str) -> None:
    hall, platform, hook = await _hall(tmp_path, store_url)
    try:
        await asyncio.to_thread(hall.gateway.start)
        await asyncio.to_thread(hall.broker.control_api, [{"command": "deleteClient", "username": "dev-b"}])
        rc, checks, _ = await doctor(hall.config_path)
        assert rc == 1 and failing(checks) == ["accounts"], checks
        assert "1 registered device(s) have no broker account: dev-b" in checks["accounts"][1]
    finally:
        await _close(hall, platform, hook)


async def test_acl_not_in_force_fails_the_acl_line(tmp_path: Path, store_url: str) -> None:
    hall, platform, hook = await _hall(tmp_path, store_url)
    try:
        await asyncio.to_thread(hall.gateway.start)
        await asyncio.to_thread(hall.broker.control_api, [{"command": "setDefaultACLAccess", "acls": [
            {"acltype": "subscribe", "allow": True}]}])
        rc, checks, _ = await doctor(hall.config_path)
        assert rc == 1 and checks["acl"][0] == "fail", checks
        assert "ACL NOT in force" in checks["acl"][1]
        assert "default ACL allows subscribe" in checks["accounts"][1]
    finally:
        await _close(hall, platform, hook)


async def test_platform_refusing_the_credentials_fails_the_platform_line(tmp_path: Path,
                                                                         store_url: str) -> None:
    hall, platform, hook = await _hall(tmp_path, store_url)
    try:
        text = hall.config_path.read_text()
        hall.set_config(text.replace('app_secret = "change-me"', 'app_secret = "nope"'))
        await asyncio.to_thread(hall.gateway.start)
        rc, checks, _ = await doctor(hall.config_path)
        assert rc == 1 and failing(checks) == ["platform"], checks
        assert "refused the credentials" in checks["platform"][1]
        await platform.stop()
        rc, checks, _ = await doctor(hall.config_path)
        assert rc == 1 and checks["platform"][0] == "fail" and "cannot be reached" in checks["platform"][1]
    finally:
        await _close(hall, platform, hook)


async def test_clock_set_back_fails_the_clock_line(tmp_path: Path, store_url: str) -> None:
    hall, platform, hook = await _hall(tmp_path, store_url)
    try:
        await asyncio.to_thread(hall.gateway.start)
        # what a clock set back two hours looks like: the store already holds a later time
        later = int(time.time() * 1000) + 2 * 3600 * 1000
        execute(hall.store_url, "INSERT INTO audit_log (at_ms, actor, action, detail_json)"
                " VALUES (?, ?, ?, ?)", (later, "cli:test", "window.add", "{}"))
        rc, checks, _ = await doctor(hall.config_path)
        assert rc == 1 and failing(checks) == ["clock"], checks
        assert "behind the newest audit time" in checks["clock"][1]
    finally:
        await _close(hall, platform, hook)


async def test_disk_below_the_limit_fails_the_disk_line(tmp_path: Path, store_url: str) -> None:
    hall, platform, hook = await _hall(tmp_path, store_url, extra="[alerts]\ndisk_min_free_pct = 99.999\n")
    try:
        await asyncio.to_thread(hall.gateway.start)
        rc, checks, _ = await doctor(hall.config_path)
        assert rc == 1 and failing(checks) == ["disk"], checks
        assert "disk_min_free_pct" in checks["disk"][1]
    finally:
        await _close(hall, platform, hook)


async def test_certificate_expiring_soon_fails_the_tls_line(tmp_path: Path, store_url: str) -> None:
    hall, platform, hook = await _hall(tmp_path, store_url, cert_days=10)
    try:
        await asyncio.to_thread(hall.gateway.start)
        rc, checks, _ = await doctor(hall.config_path)
        assert rc == 1 and failing(checks) == ["tls"], checks
        assert "expires in" in checks["tls"][1] and "tls init --force" in checks["tls"][1]
    finally:
        await _close(hall, platform, hook)

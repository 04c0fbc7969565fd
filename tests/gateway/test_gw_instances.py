"""Several gateway instances (issue 15): two on one mosquitto and one PostgreSQL share the
device traffic through an MQTT 5 shared subscription, each with its own client id; the
leader lease keeps the uplink on one of them. On SQLite a second instance is refused.

The two-instance run needs PostgreSQL whatever HCP_STORE says, so it runs once, in the
PostgreSQL pass of scripts/test.sh (HCP_STORE=postgresql); the SQLite refusal runs in both.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from gw_support import GatewayEnv, TestDevice, db_query, wait_for
from harness.store import BACKEND

from simulator.broker import Mosquitto
from simulator.gateway_proc import GatewayProcess

DEVICES = 40
PRESSES = 250                      # 40 x 250 = 10,000 ratings
KILL_AFTER = 3000                  # acked records before the leader is SIGKILLed
GROUP = "hall"
DEPT = "11540102MB00000018"   # a valid GB 32100 code (district checks the check character)
GW_ACCOUNTS = {"gw-1": ("hcp-gw-1", secrets.token_hex(8)), "gw-2": ("hcp-gw-2", secrets.token_hex(8))}


def _acl() -> str:
    users = "".join("user %s\ntopic readwrite hcp/#\n" % a for a in GW_ACCOUNTS)
    return users + "pattern write hcp/1/up/%u/#\npattern read hcp/1/down/%u/#\n"


def _config(path: Path, account: str, broker: Mosquitto, url: str, platform_url: str | None) -> Path:
    client_id, password = GW_ACCOUNTS[account]
    path.write_text("\n".join([
        "[mqtt]", 'host = "127.0.0.1"', "port = %d" % broker.port, 'username = "%s"' % account,
        'password = "%s"' % password, 'client_id = "%s"' % client_id, 'protocol = "5"',
        'shared_group = "%s"' % GROUP, "session_expiry_s = 3600", "",
        "[store]", 'url = "%s"' % url, "",
        "[ingest]", "batch_ms = 5", "batch_max = 500", "device_rate = 2000", "device_burst = 2000", "",
    ] + ([] if platform_url is None else [
        "[uplink]", "enabled = true", 'url = "%s"' % platform_url, 'app_key = "hall-1"',
        'app_secret = "pf-secret"', 'adapter = "default"', 'walkup = "upload"', "require_project_no = false",
        'area_code = "540102"', "batch_size = 500", "max_batches_per_second = 100",
        # Daily only at 01:30, plus every minute: the first leader pushes at its start (no
        # run yet), whoever leads a minute later pushes the rest.
        "realtime_minutes = 1", "request_timeout_s = 10", "backoff_base_s = 0.2", "backoff_max_s = 1", "",
    ])) + "\n")
    path.chmod(0o600)
    return path


async def _provision(url: str, devices: dict[str, tuple[str, str]]) -> None:
    from gateway import bindings
    from gateway.broker_accounts import NoBrokerAccounts
    from gateway.devices import DeviceService
    from gateway.store import open_store

    store = await open_store(url)
    try:
        svc = DeviceService(store, NoBrokerAccounts())
        for i, (d, (secret, pw)) in enumerate(sorted(devices.items())):
            await svc.register(d, secret, pw, fw="test-1")
            await bindings.add_window(store, "W%02d" % i, DEPT, "window %d" % i, "test")
            await bindings.add_staff(store, "clerk%02d" % i, "clerk %d" % i, "test")
            await bindings.pair(store, d, "W%02d" % i, "clerk%02d" % i, "test")
    finally:
        await store.close()


async def _run_device(dev: TestDevice, ids: list[str], stop: asyncio.Event) -> None:
    """Press PRESSES times, then, like the firmware, re-send what stays unacked."""
    await dev.connect()
    await dev.hello()
    for _ in range(PRESSES):
        ids.append(await dev.press(grade=("vs", "s", "bs", "d", "vd")[dev.seq % 5]))
    last = len(dev.journal)
    quiet = 0.0
    while dev.journal and not stop.is_set():
        await asyncio.sleep(0.5)
        quiet = quiet + 0.5 if len(dev.journal) == last else 0.0
        last = len(dev.journal)
        if quiet >= 3.0:                # no progress for 3 s: the firmware's re-send
            await dev.resend_unacked()
            quiet = 0.0


def _leader_pid(url: str) -> int | None:
    rows = db_query(url, "SELECT holder, expires_ms FROM leases WHERE name = 'leader'")
    if not rows or rows[0][1] < time.time() * 1000:
        return None
    return int(str(rows[0][0]).rsplit(":", 1)[1])


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "postgresql", reason="needs PostgreSQL: runs in the HCP_STORE=postgresql pass")
async def test_two_instances_share_devices_survive_a_sigkill_and_push_the_day_once(
        tmp_path: Path, pg_server: Any) -> None:
    from gateway.uplink.adapters import make_adapter
    from gateway.uplink.settings import UplinkSettings
    from simulator.platform import PlatformStandIn

    url = pg_server.fresh_database()
    devices = {"dev-%02d" % i: (secrets.token_hex(32), "pw-%d" % i) for i in range(DEVICES)}
    await _provision(url, devices)
    users = {a: pw for a, (_, pw) in GW_ACCOUNTS.items()} | {d: pw for d, (_, pw) in devices.items()}
    broker = Mosquitto(tmp_path / "mosquitto", users=users, acl=_acl(),
                       client_ids={a: cid for a, (cid, _) in GW_ACCOUNTS.items()})
    settings = UplinkSettings(adapter="default", walkup="upload", require_project_no=False,
                              area_code="540102")
    platform = PlatformStandIn(make_adapter(settings).schema(), tmp_path / "platform.sqlite",
                               app_key="hall-1", app_secret="pf-secret")
    gws: dict[str, GatewayProcess] = {}
    devs: list[TestDevice] = []
    stop = asyncio.Event()
    runs: list[asyncio.Task[None]] = []
    try:
        await asyncio.to_thread(broker.start)
        await platform.start()
        for account in GW_ACCOUNTS:
            d = tmp_path / account
            d.mkdir()
            # DEBUG: each instance logs the batches it opens (which records it took).
            gws[account] = GatewayProcess(_config(d / "gateway.toml", account, broker, url, platform.url),
                                          log_level="DEBUG")
        await asyncio.gather(*(asyncio.to_thread(g.start, 30.0) for g in gws.values()))

        pressed: dict[str, list[str]] = {d: [] for d in devices}
        devs = [TestDevice(d, s, pw, broker.host, broker.port) for d, (s, pw) in sorted(devices.items())]
        runs = [asyncio.create_task(_run_device(dev, pressed[dev.device_id], stop)) for dev in devs]

        def acked() -> int:
            return sum(len(dev.acks) for dev in devs)

        await wait_for(lambda: acked() >= KILL_AFTER, 60, "%d acked records" % KILL_AFTER)
        # SIGKILL the leader, after its first push (it pushes at start: no run yet) has ended.
        await wait_for(lambda: db_query(url, "SELECT count(*) FROM uplink_runs WHERE finished_ms IS NOT NULL")
                       [0][0] >= 1, 30, "the first leader's push")
        pid = _leader_pid(url)
        victim = next(a for a, g in gws.items() if g.pid == pid)
        gws[victim].kill()
        at_kill = acked()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(gws[victim].start, 30.0)
        # The lease leaves the dead process within its TTL: a live instance holds it next
        # (the survivor, or the restarted victim if it asks first: both are a new holder).
        await wait_for(lambda: _leader_pid(url) not in (None, pid), 30, "a live leader after the kill")
        new_leader = _leader_pid(url)
        assert new_leader in {g.pid for g in gws.values()}

        await wait_for(lambda: all(r.done() for r in runs), 90, "every device's records acked")
        for r in runs:
            r.result()
        # The minute's push by the leader (the survivor took the lease within its 10 s TTL).
        want = DEVICES * PRESSES
        await wait_for(lambda: platform.db.execute("SELECT count(*) FROM accepted").fetchone()[0] >= want,
                       90, "the day at the platform")
        await asyncio.sleep(1.0)        # nothing more may arrive
        accepted = dict(platform.db.execute("SELECT record_id, times_received FROM accepted").fetchall())
        sent = platform.db.execute("SELECT sum(count), sum(duplicates), sum(rejected) FROM batches"
                                   ).fetchone()
    finally:
        stop.set()
        for r in runs:
            r.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        await asyncio.gather(*(dev.disconnect() for dev in devs))
        codes = {a: g.terminate() for a, g in gws.items()}
        await platform.stop()
        broker.stop()

    every = [i for ids in pressed.values() for i in ids]
    assert len(every) == len(set(every)) == DEVICES * PRESSES
    # Every press stored once, and every record acked (the devices' journals are empty).
    assert db_query(url, "SELECT count(*), count(DISTINCT record_id) FROM records")[0] == (want, want)
    stored = {r[0] for r in db_query(url, "SELECT record_id FROM records")}
    assert stored == set(every)
    assert all(dev.journal == {} for dev in devs)
    assert set().union(*(dev.acks for dev in devs)) == set(every)
    # Both instances took device traffic (the shared subscription split it), before and after.
    logs = {a: g.log_text() for a, g in gws.items()}
    assert all("batch opened by" in t for t in logs.values()), "an instance got no records"
    assert 0 < at_kill < want
    # The day pushed once: each record in exactly one batch, accepted once, by one leader at
    # a time (the runs never overlap), none re-sent.
    assert set(accepted) == set(every)
    assert set(accepted.values()) == {1}
    assert sent == (want, 0, 0)
    items = dict(db_query(url, "SELECT status, count(*) FROM uplink_items GROUP BY status"))
    assert items == {"acked": want}
    runs_rows = db_query(url, "SELECT started_ms, finished_ms FROM uplink_runs ORDER BY started_ms")
    for (_, end), (start, _) in zip(runs_rows, runs_rows[1:], strict=False):
        assert end is not None and end <= start, runs_rows
    assert new_leader != pid                                        # the lease moved at the kill
    for a, t in logs.items():
        assert "Traceback" not in t, "%s:\n%s" % (a, t[-3000:])
    assert codes == {a: 0 for a in gws}


def test_a_second_instance_on_one_sqlite_store_is_refused(gw_env_factory: Any, tmp_path: Path) -> None:
    """One line, a non-zero exit; the first instance keeps serving."""
    env: GatewayEnv = gw_env_factory(["dev-a"], store_url=str(tmp_path / "gw" / "gateway.db"))
    env.gateway.start()
    other = tmp_path / "gw" / "second.toml"
    text = env.config_path.read_text()
    other.write_text(text.replace('client_id = "hcp-gateway"', 'client_id = "hcp-gw-2"'))
    other.chmod(0o600)
    r = subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(other)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r
    lines = r.stderr.strip().splitlines()
    assert lines == ["gateway: store error: another gateway (pid %d) is already serving store %s: stop it "
                     "first (systemctl stop hcp-gateway); several instances need a PostgreSQL store"
                     % (env.gateway.pid, env.db_path)], r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert env.gateway.running


@pytest.mark.skipif(BACKEND != "postgresql", reason="needs PostgreSQL: runs in the HCP_STORE=postgresql pass")
async def test_two_instances_with_one_client_id_are_named_in_the_log(tmp_path: Path, pg_server: Any) -> None:
    """A misconfiguration: two gateways use one client id on one broker; the broker drops the
    older connection at each CONNECT, in a loop. Each instance says what it most likely is.
    (Two on one store are refused at start by their heartbeats, tests/ops/test_ops_twin.py;
    gateways on different stores, e.g. two halls' gateways pointed at one district broker,
    cannot see each other there: this is how they find out.)"""
    urls = [pg_server.fresh_database(), pg_server.fresh_database()]
    for url in urls:
        await _provision(url, {})
    account = "gw-1"
    broker = Mosquitto(tmp_path / "mosquitto", users={a: pw for a, (_, pw) in GW_ACCOUNTS.items()},
                       acl=_acl())
    gws: list[GatewayProcess] = []
    try:
        await asyncio.to_thread(broker.start)
        for i in (1, 2):
            d = tmp_path / ("gw%d" % i)
            d.mkdir()
            gws.append(GatewayProcess(_config(d / "gateway.toml", account, broker, urls[i - 1], None)))
        for g in gws:
            await asyncio.to_thread(g.start, 30.0)
        said = "most likely another client uses our client id 'hcp-gw-1'"
        await wait_for(lambda: all(said in g.log_text() for g in gws), 40,
                       "both instances naming the client id clash")
    finally:
        for g in gws:
            g.terminate()
        broker.stop()
    for g in gws:
        assert "Traceback" not in g.log_text()

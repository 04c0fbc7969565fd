"""flash.py provision against the REAL gateway (issue 7), not the stand-in.

One hall per module (flash_hall.RealHall): a real mosquitto (password file, the project's ACL,
a `gateway` user) and the real gateway process (`python -m gateway serve`) with its HTTP API
on and [broker] password_file / pid_file pointing at that mosquitto, so registering a device
writes its password entry with mosquitto_passwd and SIGHUPs the broker.  Each test uses its
own virtual board (real MicroPython 1.27 behind a pty) and runs flash.py as a subprocess.

Independent read-back everywhere: mpremote for the board's files, a read-only sqlite3
connection and the `hcp-gateway` console script for the gateway's store, paho for the broker.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import queue
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from flash_hall import ADMIN_TOKEN, GW_PASSWORD, WINDOW_TOKEN
from flash_hall import RealHall as Hall
from flash_support import MPREMOTE, provision_args, run_cli

from protocol import messages, topics
from protocol.auth import Key
from simulator.serial_device import VirtualSerialDevice
from simulator.vdevice import VirtualDevice

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
HCP_GATEWAY = str(BIN / "hcp-gateway")
WAIT_S = 15.0


def _wait(pred: Any, what: str, limit_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + limit_s
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def hall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hall]:
    with Hall(tmp_path_factory.mktemp("hall")) as h:
        assert int(h.broker.pid_path.read_text()) == h.broker.pid
        yield h
        assert h.gateway.running, h.gateway.log_tail()  # nothing we did crashed it


# ---- clients ------------------------------------------------------------------------------


def provision_cmd(port: str, hall: Hall, *extra: str, token: str = ADMIN_TOKEN) -> list[str]:
    return provision_args(port, hall.url, token, "--wifi", "hall-net", "--wifi-password", "pw1",
                          "--broker", f"{hall.broker.host}:{hall.broker.port}", *extra)


def run(cmd: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return run_cli(cmd, timeout)


def broker_reloads(hall: Hall) -> int:
    return hall.broker.log_path.read_bytes().count(b"Reloading config")


def provisioned(port: str, hall: Hall, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run a provision that must succeed, then wait until mosquitto has handled the gateway's
    SIGHUP (asynchronous: the gateway returns once the signal is sent), as a board that boots
    seconds later would find it."""
    before = broker_reloads(hall)
    r = run(provision_cmd(port, hall, *extra))
    assert r.returncode == 0, r.stdout + r.stderr
    _wait(lambda: broker_reloads(hall) > before, "the broker's reload after the registration")
    return r


def board_config(port: str) -> dict[str, Any]:
    r = subprocess.run(
        [MPREMOTE, "connect", port, "fs", "cat", ":/config.json"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr
    cfg: dict[str, Any] = json.loads(r.stdout)
    return cfg


def board_files(dev: VirtualSerialDevice) -> dict[str, str]:
    """The board's persisted filesystem (the bridge mirrors it to state_dir/fs): path -> SHA-256."""
    assert dev.state_dir is not None
    root = dev.state_dir / "fs"
    return {
        "/" + p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def store_row(hall: Hall, device_id: str) -> dict[str, Any] | None:
    """The gateway's own row for the device, secret included (read-only connection)."""
    conn = sqlite3.connect(f"file:{hall.db_path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute("SELECT * FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return dict(row) if row is not None else None
    finally:
        conn.close()


def audit_actions(hall: Hall, device_id: str) -> list[tuple[str, str]]:
    conn = sqlite3.connect(f"file:{hall.db_path}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT actor, action, detail_json FROM audit_log ORDER BY rowid").fetchall()
    finally:
        conn.close()
    out = []
    for actor, action, detail in rows:
        d = json.loads(detail)
        if isinstance(d, dict) and d.get("device_id") == device_id:
            out.append((actor, action))
    return out


def passwd_entries(hall: Hall, device_id: str) -> list[str]:
    """The device's lines in the broker's password file (the gateway writes them)."""
    lines = hall.broker.passwd_path.read_text().splitlines()
    return [ln for ln in lines if ln.startswith(device_id + ":")]


def gateway_devices(hall: Hall) -> dict[str, dict[str, Any]]:
    """`hcp-gateway --config F devices --json`: the admin's view (never shows secrets)."""
    r = subprocess.run(
        [HCP_GATEWAY, "--config", str(hall.config_path), "devices", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return {d["device_id"]: d for d in json.loads(r.stdout)}


class MqttClient:
    """A paho client on its own network thread; messages land in a queue."""

    def __init__(self, hall: Hall, client_id: str, username: str, password: str) -> None:
        self.host, self.port = hall.broker.host, hall.broker.port
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
        self.client.username_pw_set(username, password)
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.reason: Any = None
        self._connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, msg: self.messages.put((msg.topic, bytes(msg.payload)))

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self.reason is None:
            self.reason = reason
        self._connected.set()

    def connect(self) -> Any:
        """Connect; return the CONNACK reason (a refused client is stopped, not retried)."""
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        assert self._connected.wait(WAIT_S), "no CONNACK"
        if self.reason.is_failure:
            self.close()
        return self.reason

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, qos=1)
        assert done.wait(WAIT_S), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(WAIT_S)
        assert info.is_published(), f"no PUBACK for {topic}"

    def next_message(self, limit_s: float = WAIT_S) -> tuple[str, bytes]:
        try:
            return self.messages.get(timeout=limit_s)
        except queue.Empty:
            raise AssertionError(f"no message within {limit_s}s") from None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect_device(hall: Hall, cfg: dict[str, Any]) -> MqttClient:
    """Connect the way the firmware does: username = device id, the broker password from
    /config.json, the broker address from /config.json too."""
    assert (cfg["broker"]["host"], cfg["broker"]["port"]) == (hall.broker.host, hall.broker.port)
    dev = MqttClient(hall, cfg["device_id"], cfg["device_id"], cfg["broker"]["password"])
    reason = dev.connect()
    assert not reason.is_failure, f"broker refused the provisioned device: {reason}"
    return dev


def signed(board: dict[str, Any], t: str, n: int, boot: int, fields: dict[str, Any]) -> bytes:
    """A message as the firmware signs it, with the secret from the board's /config.json."""
    m = {"t": t, "d": board["device_id"], "b": boot, "n": n, **fields}
    return bytes(messages.sign(m, Key(board["secret"])))


def say_hello(hall: Hall, cfg: dict[str, Any], n: int, boot: int = 1, attempts: int = 1) -> dict[str, Any]:
    """Connect as the board, announce (status online, retained) and send a signed hello; return
    the gateway's answer, a command signed with the board's key (decoded and verified here).
    With attempts > 1 the hello is sent again (next n) every second until an answer comes."""
    dev = connect_device(hall, cfg)
    try:
        dev.subscribe(topics.device_sub(cfg["device_id"]))
        for i in range(attempts):
            nn = n + i
            status = signed(cfg, "status", nn, boot, {"s": "online", "c": nn})
            dev.publish(topics.up(cfg["device_id"], "status"), status, retain=True)
            hello_fields = {"fw": "mpy-e2e", "up": 5000, "rst": "power", "cfg": 1, "jd": 0, "safe": False}
            dev.publish(topics.up(cfg["device_id"], "hello"), signed(cfg, "hello", nn, boot, hello_fields))
            try:
                topic, payload = dev.next_message(WAIT_S if i == attempts - 1 else 1.0)
            except AssertionError:
                if i == attempts - 1:
                    raise
                continue
            return messages.decode(payload, Key(cfg["secret"]), topic)
        raise AssertionError("unreachable")
    finally:
        dev.close()


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, r.stdout + r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, r.stderr
    return errors[0]


# ---- tests --------------------------------------------------------------------------------


def test_provisioned_board_is_registered_and_connects_at_once(hall: Hall, tmp_path: Path) -> None:
    with VirtualSerialDevice(uid="0a1b2c3d4e01", state_dir=tmp_path / "board", exec_timeout=10) as board:
        r = provisioned(board.path, hall)
        m = re.search(r"^LABEL (hcp-0a1b2c3d4e01)  hall=hall-1  fw=(0\.2\.0\+[0-9a-f]{10})$", r.stdout, re.M)
        assert m, r.stdout
        device_id, fw = m.groups()
        assert f"{device_id}: registered with the gateway" in r.stdout
        cfg = board_config(board.path)

    # The gateway's store has the key the board has, and the fw flash.py reported.
    row = store_row(hall, device_id)
    assert row is not None and row["enabled"] == 1
    assert row["secret_hex"] == cfg["secret"] and row["fw"] == fw
    assert audit_actions(hall, device_id) == [("api:admin", "device.add")]
    # Its broker entry: written by the gateway (mosquitto_passwd), hashed, one line.
    entries = passwd_entries(hall, device_id)
    assert len(entries) == 1 and cfg["broker"]["password"] not in entries[0]

    # The broker takes the board's credentials, and only those.
    wrong = MqttClient(hall, device_id, device_id, cfg["broker"]["password"] + "x")
    assert wrong.connect().is_failure
    # The ACL: the device publishes under its own id only.  A gateway-side observer sees the
    # device's own topic, never the foreign one (mosquitto acks a denied PUBLISH and drops it).
    observer = MqttClient(hall, "flash-e2e-observer", "gateway", GW_PASSWORD)
    assert not observer.connect().is_failure
    try:
        observer.subscribe("hcp/1/up/#")
        dev = connect_device(hall, cfg)
        try:
            dev.publish(topics.up("hcp-someone-else", "hb"), b"foreign")
            dev.publish(topics.up(device_id, "probe"), b"own")
        finally:
            dev.close()
        assert observer.next_message() == (topics.up(device_id, "probe"), b"own")
        time.sleep(0.3)
        assert observer.messages.empty()
    finally:
        observer.close()

    # A signed hello with the board's secret is accepted by the running gateway at once: it
    # answers with the device's state (not bound to a window yet: `unpaired`), signed with the
    # same key, for the current boot.
    answer = say_hello(hall, cfg, n=1)
    assert (answer["t"], answer["d"], answer["b"]) == ("unpaired", device_id, 1)
    # And the admin sees it online, with a last_seen and the fw of its hello.
    shown = _wait(
        lambda: (d := gateway_devices(hall).get(device_id)) and d["online"] and d["last_seen"] and d,
        "device online in `hcp-gateway devices --json`",
    )
    assert shown["fw"] == "mpy-e2e" and shown["boot"] == 1 and "secret_hex" not in shown
    assert shown["last_seen"] >= int(time.time() * 1000) - 60_000


def test_reprovision_is_idempotent_and_a_wrong_token_changes_nothing(hall: Hall, tmp_path: Path) -> None:
    with VirtualSerialDevice(uid="0a1b2c3d4e02", state_dir=tmp_path / "board", exec_timeout=10) as board:
        provisioned(board.path, hall)
        cfg = board_config(board.path)
        device_id = cfg["device_id"]
        files = board_files(board)
        entry = passwd_entries(hall, device_id)

        # Unchanged board: nothing uploaded, the gateway accepts the same id + secret again.
        before = board.bytes_from_host
        r = provisioned(board.path, hall)
        assert "nothing to upload" in r.stdout and f"{device_id}: re-registered with the gateway" in r.stdout
        assert board.bytes_from_host - before < 20_000  # helpers and hash queries, no file data
        assert board_files(board) == files
        row = store_row(hall, device_id)
        assert row is not None and row["secret_hex"] == cfg["secret"]
        assert audit_actions(hall, device_id) == [("api:admin", "device.add"), ("api:admin", "device.rekey")]
        # The password entry was rewritten (a new salt) for the same password: still one line.
        entry2 = passwd_entries(hall, device_id)
        assert len(entry) == len(entry2) == 1 and entry != entry2
        assert say_hello(hall, cfg, n=1)["t"] == "unpaired"

        # A wrong admin token: one clear line, exit 1, before the board is even opened — even
        # with --rotate-secrets, which would otherwise give the board a new secret.
        before = board.bytes_from_host
        r = run(provision_cmd(board.path, hall, "--rotate-secrets", token="not-the-admin-token-at-all"))
        line = one_error_line(r)
        assert f"gateway {hall.url} refused the admin token" in line
        assert "HTTP 401 unauthorized: bad token for this endpoint" in line
        assert "nothing was sent to the board" in line
        assert board.bytes_from_host == before
        assert board_files(board) == files
        assert board_config(board.path) == cfg
        row = store_row(hall, device_id)
        assert row is not None and row["secret_hex"] == cfg["secret"]
        assert len(audit_actions(hall, device_id)) == 2


def test_wrong_token_on_a_blank_board(hall: Hall, tmp_path: Path) -> None:
    with VirtualSerialDevice(uid="0a1b2c3d4e03", state_dir=tmp_path / "board", exec_timeout=10) as board:
        files = board_files(board)
        before = board.bytes_from_host
        # A made-up token, and the window system's token (valid, but not for device registration).
        for token in ("wrong-token", WINDOW_TOKEN):
            r = run(provision_cmd(board.path, hall, token=token))
            assert "refused the admin token (HTTP 401 unauthorized" in one_error_line(r)
            assert r.stdout == ""
        assert board.bytes_from_host == before and board_files(board) == files
    assert store_row(hall, "hcp-0a1b2c3d4e03") is None


def test_registration_refused_by_the_gateway_leaves_the_live_set(hall: Hall, tmp_path: Path) -> None:
    """The token is fine but the gateway cannot finish the registration (here: it cannot signal
    the broker, its pid file is gone).  flash.py stops before the switch: the board keeps its
    old set (here: none) with inert staged files, and the same command run again completes."""
    pid_file = hall.broker.pid_path
    saved = pid_file.read_text()
    with VirtualSerialDevice(uid="0a1b2c3d4e05", state_dir=tmp_path / "board", exec_timeout=10) as board:
        pid_file.unlink()
        try:
            r = run(provision_cmd(board.path, hall))
        finally:
            pid_file.write_text(saved)
        line = one_error_line(r)
        assert "gateway refused the registration of hcp-0a1b2c3d4e05: HTTP 400 bad_registration" in line
        assert "the broker was not updated" in line and "pid file" in line
        live = {p for p in board_files(board) if not p.endswith(".hcpnew")}
        assert live == {"/.uid"}  # nothing switched: no main.py, no config.json
        provisioned(board.path, hall)
        cfg = board_config(board.path)
    row = store_row(hall, cfg["device_id"])
    assert row is not None and row["secret_hex"] == cfg["secret"]
    assert say_hello(hall, cfg, n=1)["t"] == "unpaired"


def test_rotated_secrets_reach_gateway_and_broker(hall: Hall, tmp_path: Path) -> None:
    with VirtualSerialDevice(uid="0a1b2c3d4e04", state_dir=tmp_path / "board", exec_timeout=10) as board:
        provisioned(board.path, hall)
        old = board_config(board.path)
        assert say_hello(hall, old, n=1)["t"] == "unpaired"  # the gateway now caches this key
        provisioned(board.path, hall, "--rotate-secrets")
        new = board_config(board.path)
    assert new["secret"] != old["secret"] and new["broker"]["password"] != old["broker"]["password"]
    row = store_row(hall, new["device_id"])
    assert row is not None and row["secret_hex"] == new["secret"]
    # The broker refuses the old password at once and takes the new one.
    stale = MqttClient(hall, old["device_id"], old["device_id"], old["broker"]["password"])
    assert stale.connect().is_failure
    # The running gateway, which knew the old key, accepts the very first hello signed with the
    # new one: POST /api/v1/devices hands the new key to the ingest's registry (rekey), so no
    # message in between is refused as bad_mac.
    answer = say_hello(hall, new, n=2, attempts=1)
    assert (answer["t"], answer["b"]) == ("unpaired", 1)


def provision_and_copy_config(hall: Hall, tmp_path: Path, uid: str) -> Path:
    """Provision a virtual board; copy its /config.json (mpremote) into a directory that the
    host HAL uses as the board's flash."""
    with VirtualSerialDevice(uid=uid, state_dir=tmp_path / "board", exec_timeout=10) as board:
        provisioned(board.path, hall)
        flash = tmp_path / "flash"
        flash.mkdir()
        r = subprocess.run(
            [MPREMOTE, "connect", board.path, "fs", "cp", ":/config.json", str(flash / "config.json")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stdout + r.stderr
    return flash


def stored_record_ids(hall: Hall, device_id: str) -> list[str]:
    conn = sqlite3.connect(f"file:{hall.db_path}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT record_id FROM records WHERE device_id = ?", (device_id,)).fetchall()
    finally:
        conn.close()
    return [r[0] for r in rows]


async def test_real_firmware_runs_on_the_provisioned_config(hall: Hall, tmp_path: Path) -> None:
    """The firmware itself (firmware.main.Firmware + its MQTT link, on the host HAL) boots from
    the exact /config.json flash.py wrote: it connects with those credentials, its hello is
    answered (the device becomes `unpaired` and online in the store) and a press reaches the
    store under its record id and is acked."""
    flash = await asyncio.to_thread(provision_and_copy_config, hall, tmp_path, "0a1b2c3d4e06")
    cfg = json.loads((flash / "config.json").read_text())
    device_id = cfg["device_id"]
    host, port, pw = cfg["broker"]["host"], cfg["broker"]["port"], cfg["broker"]["password"]
    dev = VirtualDevice(device_id, flash, cfg["secret"], host, port, pw)  # not dev.provision(): ours
    await dev.power_on()
    try:
        deadline = time.monotonic() + WAIT_S
        while not (
            dev.online and dev.state == "unpaired" and (row := store_row(hall, device_id)) and row["online"]
        ):
            assert time.monotonic() < deadline, f"firmware not online/unpaired: {dev.state} {dev.online}"
            await asyncio.sleep(0.05)
        assert row["last_hello_json"] and row["last_seen"]
        press = await dev.press(0)
        assert press.kind == "unpaired" and press.record_id.startswith(device_id + ":")
        while dev.journal_depth() > 0:  # emptied by the gateway's ack (after its commit)
            assert time.monotonic() < deadline + WAIT_S, "press not acked"
            await asyncio.sleep(0.05)
        assert stored_record_ids(hall, device_id) == [press.record_id]
    finally:
        await dev.stop()

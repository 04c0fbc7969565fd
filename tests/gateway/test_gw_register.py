"""Device registration: key in the store, password entry for the broker, broker reload."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from gw_support import GW_PASSWORD, TestDevice, db_query, wait_for
from harness.mqtt import MqttProbe

from gateway.broker_accounts import NoBrokerAccounts
from gateway.devices import DeviceService, RegistrationError, device_service
from gateway.store import open_store
from simulator.broker import Mosquitto, standard_acl
from simulator.gateway_proc import GatewayProcess, write_config


@pytest.mark.parametrize("auth", ["dynsec", "password_file"])
async def test_registered_device_can_connect_at_once_and_is_ingested(tmp_path: Path, auth: str) -> None:
    """dynsec: the account is made through the plugin's control API, tied to the device's id;
    password_file: a hashed entry and a broker reload."""
    broker = Mosquitto(tmp_path / "mq", users={"gateway": GW_PASSWORD}, acl=standard_acl(),
                       client_ids={"gateway": "hcp-gateway"}, auth=auth)
    broker.start()
    db_path = tmp_path / "gw" / "gateway.db"
    db_path.parent.mkdir()
    cfg_path = write_config(tmp_path / "gw" / "gateway.toml", mqtt_port=broker.port,
                            mqtt_password=GW_PASSWORD, db_path=db_path,
                            broker_toml=broker.gateway_broker_toml())
    await (await open_store(db_path)).close()   # `hcp-gateway init`: serve refuses a missing store
    gw = GatewayProcess(cfg_path)
    try:
        gw.start()
        from gateway.config import load_config

        cfg = load_config(cfg_path)
        secret = secrets.token_hex(32)
        db = await open_store(cfg.store.url)
        try:
            await device_service(db, cfg).register("dev-new", secret, "s3cret-pw", fw="1.0")
        finally:
            await db.close()
        stored_at = broker.dynsec_path if auth == "dynsec" else broker.passwd_path
        stored = stored_at.read_text()
        assert "dev-new" in stored and "s3cret-pw" not in stored  # hashed
        assert stored_at.stat().st_mode & 0o777 == 0o600
        if auth == "password_file":
            await wait_for(lambda: b"Reloading config" in broker.log_path.read_bytes(), what="broker reload")
        else:
            # tied to its own client id
            with MqttProbe(broker.host, broker.port, "dev-new", "s3cret-pw", client_id="hcp-gateway") as p:
                assert p.connect().is_failure
        # The running gateway has never seen this device: it finds the key in the store.
        dev = TestDevice("dev-new", secret, "s3cret-pw", broker.host, broker.port)
        await dev.connect()
        try:
            rid = await dev.press()
            await wait_for(lambda: rid in dev.acks, what="ack for the new device")
        finally:
            await dev.disconnect()
        audit = db_query(db_path, "SELECT action, detail_json FROM audit_log")
        assert audit[0][0] == "device.add" and secret not in audit[0][1]
    finally:
        gw.terminate()
        broker.stop()


@pytest.mark.parametrize(("device_id", "secret", "pw", "why"), [
    ("Bad_ID", "ab" * 32, "pw", "device id"),
    ("dev-a", "xyz", "pw", "secret"),
    ("dev-a", "ab" * 32, "", "broker password"),
])
async def test_bad_registration_is_refused_clearly(store_url: str, device_id: str, secret: str, pw: str,
                                                   why: str) -> None:
    db = await open_store(store_url)
    try:
        with pytest.raises(RegistrationError, match=why):
            await DeviceService(db, NoBrokerAccounts()).register(device_id, secret, pw)
        assert await db.read(lambda tx: tx.devices.all()) == []
    finally:
        await db.close()

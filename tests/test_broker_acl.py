"""The real mosquitto with the project's accounts and ACL in the dynsec plugin (simulator/broker.py).

Denials are proven with a barrier instead of a sleep: after the forbidden message, the same
publisher sends an allowed sentinel; mosquitto forwards one publisher's messages in order, so
when the sentinel arrives, a leaked message would already have arrived before it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from harness.mqtt import DEVICES, GATEWAY, MQTT5, MQTT311, MqttProbe
from paho.mqtt.enums import MQTTProtocolVersion

from simulator.broker import BrokerError, Mosquitto

NOT_AUTHORIZED = 135


def probe(broker: Mosquitto, user: str, **kw: object) -> MqttProbe:
    password = GATEWAY[1] if user == GATEWAY[0] else DEVICES[user]
    return MqttProbe(broker.host, broker.port, user, password, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", [MQTT311, MQTT5], ids=["mqtt311", "mqtt5"])
def test_device_cannot_publish_under_another_id(broker: Mosquitto, protocol: MQTTProtocolVersion) -> None:
    with (
        probe(broker, "gateway").connect_ok() as gw,
        probe(broker, "dev-a", protocol=protocol).connect_ok() as a,
    ):
        gw.subscribe("hcp/#")

        forged = a.publish("hcp/1/up/dev-b/rating", b"forged", qos=1)
        own = a.publish("hcp/1/up/dev-a/rating", b"genuine", qos=1)

        # The broker acknowledges the forged QoS1 publish either way (the device is not
        # disconnected); only MQTT 5 tells the publisher it was refused.
        if protocol == MQTT5:
            assert forged.value == NOT_AUTHORIZED, forged
        else:
            assert not forged.is_failure
        assert not own.is_failure, own
        got = gw.receive_until("hcp/1/up/dev-a/rating")
        assert [(m.topic, m.payload) for m in got] == [("hcp/1/up/dev-a/rating", b"genuine")]


def test_device_cannot_read_another_devices_commands(broker: Mosquitto) -> None:
    with (
        probe(broker, "gateway").connect_ok() as gw,
        probe(broker, "dev-a").connect_ok() as a,
        probe(broker, "dev-b").connect_ok() as b,
    ):
        # dynsec refuses the SUBSCRIBE itself (SUBACK 0x80), and would filter per message anyway.
        assert [rc.value for rc in a.subscribe("hcp/1/down/dev-b/#")] == [0x80]
        a.subscribe("hcp/1/down/dev-a/#")
        b.subscribe("hcp/1/down/dev-b/#")

        gw.publish("hcp/1/down/dev-b/cmd", b"secret for b")
        gw.publish("hcp/1/down/dev-a/sync", b"sentinel")

        assert [(m.topic, m.payload) for m in b.receive_until("hcp/1/down/dev-b/cmd")] == [
            ("hcp/1/down/dev-b/cmd", b"secret for b")
        ]
        assert [m.topic for m in a.receive_until("hcp/1/down/dev-a/sync")] == ["hcp/1/down/dev-a/sync"]


def test_device_cannot_subscribe_to_everything(broker: Mosquitto) -> None:
    """A device subscribing to hcp/# still only receives its own commands (not uplink, not others')."""
    with probe(broker, "gateway").connect_ok() as gw, probe(broker, "dev-a").connect_ok() as a:
        assert [rc.value for rc in a.subscribe("hcp/#")] == [0x80]   # refused outright (dynsec)
        assert [rc.value for rc in a.subscribe("hcp/1/down/+/#")] == [0x80]
        a.subscribe("hcp/1/down/dev-a/#")
        gw.publish("hcp/1/up/dev-b/rating", b"b's rating")
        gw.publish("hcp/1/down/dev-b/cmd", b"b's command")
        gw.publish("hcp/1/down/dev-a/cmd", b"a's command")
        assert [m.topic for m in a.receive_until("hcp/1/down/dev-a/cmd")] == ["hcp/1/down/dev-a/cmd"]


@pytest.mark.parametrize("protocol", [MQTT311, MQTT5], ids=["mqtt311", "mqtt5"])
def test_wrong_password_is_refused(broker: Mosquitto, protocol: MQTTProtocolVersion) -> None:
    with MqttProbe(broker.host, broker.port, "dev-a", "wrong", protocol=protocol) as p:
        rc = p.connect()
        assert rc.is_failure
        # mosquitto 2.0.11 answers "not authorised" in both versions (3.1.1 return code 5, which
        # paho reports as 135; MQTT 5 reason 135), not 134 "bad user name or password".
        assert rc.value == NOT_AUTHORIZED, rc


def test_unknown_user_is_refused(broker: Mosquitto) -> None:
    with MqttProbe(broker.host, broker.port, "dev-zzz", "pa") as p:
        assert p.connect().is_failure


def test_gateway_reads_and_writes_everything(broker: Mosquitto) -> None:
    with (
        probe(broker, "gateway").connect_ok() as gw,
        probe(broker, "dev-a").connect_ok() as a,
        probe(broker, "dev-b").connect_ok() as b,
    ):
        gw.subscribe("hcp/#")
        b.subscribe("hcp/1/down/dev-b/#")
        a.publish("hcp/1/up/dev-a/rating", b"r-a")
        b.publish("hcp/1/up/dev-b/hello", b"h-b")
        assert not gw.publish("hcp/1/down/dev-b/ack", b"ack-b").is_failure
        assert not gw.publish("hcp/1/hall/status", b"up").is_failure

        # Each publish above waited for its PUBACK, and mosquitto queues a message to subscribers
        # before acknowledging it, so the gateway sees them in this order. Its own publishes come
        # back too (it subscribed to hcp/#): proof it may write anywhere.
        assert [(m.topic, m.payload) for m in gw.receive_until("hcp/1/hall/status")] == [
            ("hcp/1/up/dev-a/rating", b"r-a"),
            ("hcp/1/up/dev-b/hello", b"h-b"),
            ("hcp/1/down/dev-b/ack", b"ack-b"),
            ("hcp/1/hall/status", b"up"),
        ]
        assert b.expect().payload == b"ack-b"


def test_add_user_at_runtime(broker: Mosquitto) -> None:
    with MqttProbe(broker.host, broker.port, "dev-c", "pc") as p:
        assert p.connect().is_failure
    broker.add_user("dev-c", "pc")
    with MqttProbe(broker.host, broker.port, "dev-c", "pc") as p, probe(broker, "gateway").connect_ok() as gw:
        p.connect_ok()
        gw.subscribe("hcp/1/up/#")
        p.publish("hcp/1/up/dev-c/hello", b"hi")
        assert gw.expect().topic == "hcp/1/up/dev-c/hello"


def test_queued_qos1_survives_restart(broker: Mosquitto) -> None:
    """A device offline with a persistent session gets its QoS1 command after a broker restart."""
    with probe(broker, "dev-b", client_id="dev-b", clean=False).connect_ok() as b:
        b.subscribe("hcp/1/down/dev-b/#", qos=1)
    # dev-b is offline now; the broker queues for its session.
    with probe(broker, "gateway").connect_ok() as gw:
        assert not gw.publish("hcp/1/down/dev-b/cmd", b"queued", qos=1).is_failure

    port = broker.port
    broker.restart()
    assert broker.port == port

    with probe(broker, "dev-b", client_id="dev-b", clean=False) as b:
        b.connect_ok()
        assert b.session_present is True
        msg = b.expect(timeout=5)
        assert (msg.topic, msg.payload, msg.qos) == ("hcp/1/down/dev-b/cmd", b"queued", 1)


def test_accounts_made_through_the_control_api_survive_restart(broker: Mosquitto) -> None:
    """The gateway creates device accounts through the dynsec control API; the broker saves
    them in its file (0600), and a restart (which brings our own users up to date) keeps them."""
    import asyncio

    from gateway.broker_dynsec import DynsecAccounts
    # A password no base64 hash or salt can contain by chance ("px" did, now and then).
    pw = "device-x-password!"
    asyncio.run(DynsecAccounts(broker.host, broker.port, broker.control, set()).set_device("dev-x", pw))
    assert broker.pid_path.read_text().strip() == str(broker.pid)
    broker.restart()
    assert broker.pid_path.read_text().strip() == str(broker.pid)
    assert broker.dynsec_path.stat().st_mode & 0o777 == 0o600
    assert pw not in broker.dynsec_path.read_text()  # hashed
    with MqttProbe(broker.host, broker.port, "dev-x", pw) as p:
        p.connect_ok()
    with probe(broker, "dev-a") as a:  # our own users are still there too
        a.connect_ok()


def test_broken_config_raises_with_log_tail(tmp_path: Path) -> None:
    m = Mosquitto(tmp_path / "bad", users={"u": "p"}, acl="topic bogus-access hcp/#\n")
    with pytest.raises(BrokerError, match=r"Invalid topic access type"):
        m.start()
    assert not m.running
    m.stop()  # idempotent, also after a failed start
    # A config mosquitto itself refuses: the error carries its log tail.
    m = Mosquitto(tmp_path / "bad2", users={"u": "p"}, auth="password_file",
                  acl="topic bogus-access hcp/#\n")
    with pytest.raises(BrokerError, match=r"(?s)exited with code 3.*Invalid topic access type"):
        m.start()
    m.stop()


def test_password_file_mode_still_works(tmp_path: Path) -> None:
    """auth="password_file": the older set-up (for the gateway's password-file accounts)."""
    from simulator.broker import standard_acl
    with Mosquitto(tmp_path / "pf", users={"dev-a": "pa"}, acl=standard_acl(), auth="password_file") as b:
        assert b.passwd_path.stat().st_mode & 0o777 == 0o600   # hashes: owner only
        subprocess.run(["mosquitto_passwd", "-b", str(b.passwd_path), "dev-x", "px"], check=True)
        b.reload()
        with MqttProbe(b.host, b.port, "dev-x", "px", client_id="any-id") as p:
            p.connect_ok()

"""Issue 14, item 2: identity on the broker (mosquitto's dynamic security plugin).

Before: any authenticated device could connect with the gateway's client id (or another
device's) and knock it off, again and again; with a clean session it wiped the gateway's
queued messages. Now every account is tied to one client id: those attempts are refused at
CONNECT and the victim's connection and session are untouched. Device accounts made by the
gateway through the control API get the same treatment, and are removed the same way.
Real mosquitto 2.0.11 with the Debian plugin; paho probes.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.mqtt import MQTT5, MQTT311, MqttProbe
from paho.mqtt.enums import MQTTProtocolVersion

from gateway.broker_accounts import BrokerAccountsError
from gateway.broker_dynsec import DynsecAccounts
from simulator.broker import Mosquitto, standard_acl

GW = ("gateway", "gw-pass", "hcp-gateway")
DEVS = {"dev-a": "pa", "dev-b": "pb"}
NOT_AUTHORIZED = 135


@pytest.fixture
def hall_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """The hall's set-up: gateway account tied to its client id, devices to theirs."""
    with Mosquitto(tmp_path / "mq", users={GW[0]: GW[1], **DEVS}, acl=standard_acl(),
                   client_ids={GW[0]: GW[2]}) as b:
        yield b


def gateway(b: Mosquitto, clean: bool = False) -> MqttProbe:
    return MqttProbe(b.host, b.port, GW[0], GW[1], client_id=GW[2], clean=clean)


def device(b: Mosquitto, dev: str, client_id: str | None = None, clean: bool = True,
           protocol: MQTTProtocolVersion = MQTT311) -> MqttProbe:
    return MqttProbe(b.host, b.port, dev, DEVS.get(dev, "pc"), client_id=client_id, clean=clean,
                     protocol=protocol)


def _still_connected(gw: MqttProbe, b: Mosquitto) -> None:
    """The gateway's connection is the same one: a device's message reaches it without a
    reconnect (paho would have to reconnect, and our probes never do)."""
    with device(b, "dev-b") as d:
        d.connect_ok()
        d.publish("hcp/1/up/dev-b/hb", b"alive?")
    got = gw.expect(timeout=5)
    assert (got.topic, got.payload) == ("hcp/1/up/dev-b/hb", b"alive?")
    assert gw.client.is_connected()


@pytest.mark.parametrize("protocol", [MQTT311, MQTT5], ids=["mqtt311", "mqtt5"])
@pytest.mark.parametrize("clean", [True, False], ids=["clean", "persistent"])
def test_device_cannot_take_the_gateways_client_id(hall_broker: Mosquitto, clean: bool,
                                                   protocol: MQTTProtocolVersion) -> None:
    with gateway(hall_broker) as gw:
        gw.connect_ok()
        gw.subscribe("hcp/1/up/+/+")
        for _ in range(3):   # "repeatedly"
            with device(hall_broker, "dev-a", client_id=GW[2], clean=clean, protocol=protocol) as attacker:
                rc = attacker.connect()
                assert rc.is_failure and rc.value == NOT_AUTHORIZED, rc
        _still_connected(gw, hall_broker)


def test_a_clean_session_takeover_cannot_wipe_the_gateways_queue(hall_broker: Mosquitto) -> None:
    with gateway(hall_broker) as gw:
        gw.connect_ok()
        gw.subscribe("hcp/1/up/+/+")
    # The gateway is away (a restart); the broker queues for its persistent session.
    with device(hall_broker, "dev-b") as d:
        d.connect_ok()
        for i in range(5):
            d.publish("hcp/1/up/dev-b/rec", b"queued-%d" % i)
    with device(hall_broker, "dev-a", client_id=GW[2], clean=True) as attacker:
        assert attacker.connect().is_failure
    with gateway(hall_broker) as gw:
        gw.connect_ok()
        assert gw.session_present is True
        got = [gw.expect(timeout=5).payload for _ in range(5)]
        assert got == [b"queued-%d" % i for i in range(5)]


@pytest.mark.parametrize("clean", [True, False], ids=["clean", "persistent"])
def test_device_cannot_take_another_devices_client_id(hall_broker: Mosquitto, clean: bool) -> None:
    with device(hall_broker, "dev-b", clean=False) as victim, gateway(hall_broker) as gw:
        victim.connect_ok()
        victim.subscribe("hcp/1/down/dev-b/#")
        gw.connect_ok()
        with device(hall_broker, "dev-a", client_id="dev-b", clean=clean) as attacker:
            assert attacker.connect().value == NOT_AUTHORIZED
        gw.publish("hcp/1/down/dev-b/ack", b"for b")
        assert victim.expect(timeout=5).payload == b"for b"
        assert victim.client.is_connected()


def test_device_may_use_only_its_own_client_id(hall_broker: Mosquitto) -> None:
    for cid in ("dev-a-2", "probe", "", "hcp-gateway-ctl", "broker-admin"):
        with device(hall_broker, "dev-a", client_id=cid or None) as p:
            if cid:
                assert p.connect().is_failure, cid
    with device(hall_broker, "dev-a") as p:   # its own id
        p.connect_ok()


def test_gateway_account_is_tied_to_its_client_id_too(hall_broker: Mosquitto) -> None:
    with MqttProbe(hall_broker.host, hall_broker.port, GW[0], GW[1], client_id="dev-a") as p:
        assert p.connect().is_failure
    with MqttProbe(hall_broker.host, hall_broker.port, GW[0], GW[1], client_id="gw-other") as p:
        assert p.connect().is_failure


def test_control_accounts_reach_only_the_control_topic(hall_broker: Mosquitto) -> None:
    c = hall_broker.control
    with MqttProbe(hall_broker.host, hall_broker.port, c.username, c.password, client_id=c.client_id) as p:
        p.connect_ok()
        assert [rc.value for rc in p.subscribe("hcp/#")] == [0x80]
    with MqttProbe(hall_broker.host, hall_broker.port, c.username, c.password, client_id="hcp-gateway") as p:
        assert p.connect().is_failure


# ---- device accounts the gateway makes through the control API ---------------------------------

def _ctl(b: Mosquitto) -> DynsecAccounts:
    return DynsecAccounts(b.host, b.port, b.control, {"gateway", "hcp-gateway"})


def test_gateway_made_device_accounts_are_tied_and_confined(hall_broker: Mosquitto) -> None:
    asyncio.run(_ctl(hall_broker).set_device("dev-c", "pc-1"))
    with device(hall_broker, "dev-c", client_id="hcp-gateway") as p:
        assert p.connect().is_failure
    with device(hall_broker, "dev-c", client_id="dev-a") as p:
        assert p.connect().is_failure
    with gateway(hall_broker) as gw, MqttProbe(hall_broker.host, hall_broker.port, "dev-c", "pc-1") as c, \
            device(hall_broker, "dev-a") as a:
        gw.connect_ok()
        gw.subscribe("hcp/1/up/+/+")
        c.connect_ok()
        a.connect_ok()
        a.subscribe("hcp/1/down/dev-a/#")
        assert [rc.value for rc in c.subscribe("hcp/1/down/dev-a/#")] == [0x80]  # cannot read dev-a's
        assert [rc.value for rc in c.subscribe("hcp/1/down/dev-c/#")] == [1]
        c.publish("hcp/1/up/dev-a/rec", b"forged")          # denied (PUBACK anyway in 3.1.1)
        c.publish("hcp/1/up/dev-c/rec", b"own")
        assert gw.receive_until("hcp/1/up/dev-c/rec")[0].payload == b"own"
        gw.publish("hcp/1/down/dev-a/ack", b"a's secret")
        gw.publish("hcp/1/down/dev-c/ack", b"c's")
        assert c.expect(timeout=5).payload == b"c's"
        assert a.expect(timeout=5).payload == b"a's secret"
        with pytest.raises(queue.Empty):
            c.messages.get(timeout=0.3)


def test_reregistration_changes_the_password_and_removal_ends_the_account(hall_broker: Mosquitto) -> None:
    ctl = _ctl(hall_broker)
    asyncio.run(ctl.set_device("dev-c", "old-pw"))
    asyncio.run(ctl.set_device("dev-c", "new-pw"))   # re-flash
    with MqttProbe(hall_broker.host, hall_broker.port, "dev-c", "old-pw") as p:
        assert p.connect().is_failure
    with MqttProbe(hall_broker.host, hall_broker.port, "dev-c", "new-pw") as p:
        p.connect_ok()
        asyncio.run(ctl.remove_device("dev-c"))
        for _ in range(100):        # the broker disconnects a removed account's client
            if not p.client.is_connected():
                break
            asyncio.run(asyncio.sleep(0.02))
        assert not p.client.is_connected()
    with MqttProbe(hall_broker.host, hall_broker.port, "dev-c", "new-pw") as p:
        assert p.connect().is_failure
    asyncio.run(ctl.remove_device("dev-c"))          # again: nothing to remove, no error


@pytest.mark.parametrize("name", ["gateway", "hcp-gateway", "hcp-gateway-ctl", "admin", "broker-admin",
                                  "$SYS", "dev-a\n", "dev/a", "#"])
def test_control_api_wrapper_refuses_reserved_and_bad_names(hall_broker: Mosquitto, name: str) -> None:
    with pytest.raises(BrokerAccountsError):
        asyncio.run(_ctl(hall_broker).set_device(name, "pw"))
    with pytest.raises(BrokerAccountsError):
        asyncio.run(_ctl(hall_broker).remove_device(name))
    with MqttProbe(hall_broker.host, hall_broker.port, GW[0], GW[1], client_id=GW[2]) as p:
        p.connect_ok()   # the gateway's account is untouched


def test_dynsec_file_is_private(hall_broker: Mosquitto) -> None:
    asyncio.run(_ctl(hall_broker).set_device("dev-c", "pc-1"))   # the broker saves the file itself
    mode = hall_broker.dynsec_path.stat().st_mode & 0o777
    assert mode == 0o600, oct(mode)
    text = hall_broker.dynsec_path.read_text()
    assert "pc-1" not in text and GW[1] not in text


def test_an_account_that_is_not_a_devices_is_never_taken_over(tmp_path: Path) -> None:
    """A second gateway's account named outside the reserved prefixes: registering a "device"
    of that name (or removing it) must not touch it."""
    with Mosquitto(tmp_path / "mq", users={"gw-other": "go", **DEVS},
                   acl=standard_acl("gw-other"), client_ids={"gw-other": "gw-other-1"}) as b:
        ctl = DynsecAccounts(b.host, b.port, b.control, set())
        with pytest.raises(BrokerAccountsError, match="not a device account"):
            asyncio.run(ctl.set_device("gw-other", "stolen"))
        with pytest.raises(BrokerAccountsError, match="not a device account"):
            asyncio.run(ctl.remove_device("gw-other"))
        with MqttProbe(b.host, b.port, "gw-other", "go", client_id="gw-other-1") as p:
            p.connect_ok()
        asyncio.run(ctl.set_device("dev-a", "pa-2"))     # a device made by the runner: re-keyed fine
        with MqttProbe(b.host, b.port, "dev-a", "pa-2") as p:
            p.connect_ok()

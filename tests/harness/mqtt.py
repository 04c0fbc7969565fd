"""A blocking paho-mqtt 2.x probe for broker tests: every wait is bounded by a timeout.

paho runs its network loop in a thread (loop_start); callbacks hand results to the test thread
through a Condition, so a test waits exactly as long as the broker needs and never sleeps.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

GATEWAY = ("gateway", "gwpass")
DEVICES = {"dev-a": "pa", "dev-b": "pb"}
TEST_USERS = {GATEWAY[0]: GATEWAY[1], **DEVICES}

MQTT311 = MQTTProtocolVersion.MQTTv311
MQTT5 = MQTTProtocolVersion.MQTTv5

T = TypeVar("T")


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class MqttProbe:
    """One MQTT connection. Use as a context manager so the loop thread always stops."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        client_id: str | None = None,
        protocol: MQTTProtocolVersion = MQTT311,
        clean: bool = True,
    ) -> None:
        self.host, self.port = host, port
        # Default: the user name, the client id a device account is tied to (dynsec);
        # unique=True-style ids for unbound accounts are given explicitly by the caller.
        self.client_id = client_id or username
        self.protocol = protocol
        self.clean = clean
        kwargs: dict[str, Any] = {}
        if protocol != MQTT5:
            kwargs["clean_session"] = clean  # MQTT 5 uses clean_start on connect() instead
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            # A refused CONNECT must stay refused: no silent retry loop in the background.
            reconnect_on_failure=False,
            **kwargs,
        )
        self.client.username_pw_set(username, password)
        self.messages: queue.Queue[Received] = queue.Queue()
        self._cond = threading.Condition()
        self._connack: ReasonCode | None = None
        self.session_present: bool | None = None
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._pubacks: dict[int, ReasonCode] = {}
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

    # paho callbacks (network thread) ---------------------------------------------------
    def _on_connect(self, _c: mqtt.Client, _u: Any, flags: Any, rc: ReasonCode, _p: Any) -> None:
        with self._cond:
            self._connack = rc
            self.session_present = bool(flags.session_present)
            self._cond.notify_all()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, rcs: list[ReasonCode], _p: Any) -> None:
        with self._cond:
            self._subacks[mid] = list(rcs)
            self._cond.notify_all()

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        with self._cond:
            self._pubacks[mid] = rc
            self._cond.notify_all()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put(Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))

    def _wait(self, what: str, get: Callable[[], T | None], timeout: float) -> T:
        # "is not None", not truthiness: a ReasonCode or an empty list must count as an answer.
        with self._cond:
            if not self._cond.wait_for(lambda: get() is not None, timeout):
                raise TimeoutError(f"{self.client_id}: no {what} within {timeout} s")
            value = get()
            assert value is not None
            return value

    # test API --------------------------------------------------------------------------
    def connect(self, timeout: float = 5.0) -> ReasonCode:
        """Connect and return the CONNACK reason code (a failure code is returned, not raised)."""
        if self.protocol == MQTT5:
            self.client.connect(self.host, self.port, keepalive=30, clean_start=self.clean)
        else:
            self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        return self._wait("CONNACK", lambda: self._connack, timeout)

    def connect_ok(self, timeout: float = 5.0) -> MqttProbe:
        rc = self.connect(timeout)
        if rc.is_failure:
            raise AssertionError(f"{self.client_id}: CONNACK refused: {rc}")
        return self

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 5.0) -> list[ReasonCode]:
        res, mid = self.client.subscribe(topic, qos)
        assert res == mqtt.MQTT_ERR_SUCCESS and mid is not None, res
        return self._wait(f"SUBACK for {topic}", lambda: self._subacks.get(mid), timeout)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, timeout: float = 5.0) -> ReasonCode:
        """Publish and wait for the broker's acknowledgement (PUBACK reason code for QoS 1)."""
        info = self.client.publish(topic, payload, qos)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, info.rc
        return self._wait(f"PUBACK for {topic}", lambda: self._pubacks.get(info.mid), timeout)

    def expect(self, timeout: float = 5.0) -> Received:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.client_id}: no message within {timeout} s") from None

    def receive_until(self, topic: str, timeout: float = 5.0) -> list[Received]:
        """Collect messages up to and including the first on ``topic``.

        Used as a barrier: mosquitto forwards one publisher's messages to a subscriber in order,
        so once a sentinel published *after* a denied message arrives, the denied one would have
        arrived before it. This proves "nothing was delivered" without sleeping.
        """
        got: list[Received] = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.expect(max(0.0, deadline - time.monotonic()))
            got.append(msg)
            if msg.topic == topic:
                return got

    def close(self) -> None:
        if self.client.is_connected():
            self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> MqttProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

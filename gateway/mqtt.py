"""The gateway's MQTT side: its connection to the broker, and signed commands to devices.

Connection: one MQTT 5 client (paho) driven by the asyncio loop through paho's documented
external-loop API (on_socket_open/close/register_write/unregister_write with loop_read,
loop_write and loop_misc; paho's examples/loop_asyncio.py). Only public paho API. Fixed client
id, clean_start=False and a session expiry, so the broker keeps our QoS 1 subscription and
queues what arrives while the gateway is down.

Downlink: every command to a device (ack, time, invite, paired, ...) is signed with that
device's key and carries the device's current boot b and a fresh counter n
(DeviceRegistry.next_command); the device drops anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import ConnectFlags, DisconnectFlags
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway import tls
from gateway.config import MqttConfig
from gateway.registry import DeviceRegistry, DeviceState
from protocol import messages, topics
from protocol.auth import Key
from protocol.errors import BadSignature
from protocol.messages import VERSION

log = logging.getLogger("gateway.mqtt")

__all__ = ["BadSignature", "Connection", "Downlink", "MqttError", "NotConnected", "UnknownDevice",
           "canonical", "sign", "signed_part", "verify", "verify_received"]


def canonical(m: dict[str, Any]) -> bytes:
    """protocol.cjson.encode's bytes for a *validated* message, via CPython's C json encoder.

    Validated messages hold only ints, bools, control-free strings, lists and flat dicts, for
    which json.dumps(sort_keys, no spaces, ensure_ascii=False) escapes exactly what cjson
    escapes (tests/gateway/test_gw_wire.py checks it). ~10x faster than the pure-Python
    encoder, which matters at thousands of messages per second.
    """
    return json.dumps(m, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


_MAC_MEMBER = b'"mac":"'
_MAC_HEX = 64


def signed_part(payload: bytes, mac: str) -> bytes | None:
    """The bytes `mac` covers if `payload` is the canonical encoding it was sent as: the
    payload without its `"mac":"<mac>"` member (and one adjoining comma). None when the
    payload does not have that shape.

    Why the first `"mac":"` is the member: in valid JSON a quote inside a string is escaped,
    so the sequence can only start a key named mac whose value is a string. Whatever is
    found, the caller only accepts a match of the HMAC over these bytes, and a key holder
    never signs bytes that contain a mac member: a match means the payload is exactly the
    signed body with that member added, which is what the parsed message says.
    """
    i = payload.find(_MAC_MEMBER)
    j = i + len(_MAC_MEMBER)
    end = j + _MAC_HEX
    if i < 1 or payload[end:end + 1] != b'"' or payload[j:end] != mac.encode("ascii", "replace"):
        return None
    if payload[end + 1:end + 2] == b",":
        return payload[:i] + payload[end + 2:]
    if payload[i - 1:i] == b",":
        return payload[:i - 1] + payload[end + 1:]
    return None


def verify(m: dict[str, Any], key: Key) -> None:
    """protocol.messages.verify, with the fast encoder and a C constant-time comparison.

    A match on the fast bytes is authentic (only the key holder can produce that HMAC);
    on a mismatch the protocol's own verify decides, so the fast path can never reject
    a message the protocol accepts.
    """
    mac = m.get("mac")
    body = {k: v for k, v in m.items() if k != "mac"}
    if isinstance(mac, str) and hmac.compare_digest(key.hexdigest(canonical(body)), mac):
        return
    messages.verify(m, key)  # raises BadSignature


def verify_received(payload: bytes, m: dict[str, Any], key: Key) -> None:
    """verify(m, key) for m = messages.parse(payload), without encoding m again: the HMAC
    over the received bytes minus their mac member, when the sender sent the canonical
    encoding (devices and the gateway always do). Anything else goes to verify().

    m must be what payload parses to: the received bytes vouch for their own content only.
    """
    mac = m.get("mac")
    if isinstance(mac, str):
        signed = signed_part(payload, mac)
        if signed is not None and hmac.compare_digest(key.hexdigest(signed), mac):
            return
    verify(m, key)


def sign(m: dict[str, Any], key: Key) -> bytes:
    """protocol.messages.sign with the fast encoder (same validation, same bytes)."""
    m.pop("mac", None)
    m["v"] = VERSION
    messages.validate(m)
    m["mac"] = key.hexdigest(canonical(m))
    data = canonical(m)
    if len(data) > messages.MAX_PAYLOAD:
        return bytes(messages.sign(m, key))  # let the protocol raise its too_large error
    return data


# ---- the connection: paho on the asyncio loop, public API only ---------------------------------

# paho's default of 20 in-flight QoS 1 publishes would throttle acks under load.
MAX_INFLIGHT = 1000
# Outgoing messages paho may hold (acks, commands) before publish() refuses: a bounded hop.
MAX_QUEUED_OUT = 20000
# The kernel's receive buffer for the broker connection: what the broker has sent that we have
# not read yet is bounded by this (the broker holds the rest, within its own queue limits).
RCVBUF = 256 * 1024
# MQTT 5 Maximum Packet Size announced at CONNECT: the broker never sends us a bigger packet
# (a device payload is at most 1 KB; up to this size it is still counted here as too_large).
MAX_PACKET = 16 * 1024
MISC_EVERY_S = 1.0
# Packets handled per readable event at most (see Connection._readable).
READ_BURST = 64
# A graceful close (DISCONNECT written) waits this long; then the socket is shut down.
CLOSE_TIMEOUT_S = 2.0
SESSION_TAKEN_OVER = 0x8E


class MqttError(Exception):
    """The connection failed, was refused or was lost; the message says why (one line)."""


OnMessage = Callable[[str, bytes], None]


class Connection:
    """One MQTT 5 connection driven by the running event loop, through paho's documented
    external-loop API (paho's examples/loop_asyncio.py): paho tells us when its socket opens and
    closes and when it has something to write (on_socket_*); the loop calls loop_read when the
    socket is readable, loop_write when it is writable and wanted, loop_misc every second.

    Messages go to `on_message(topic, payload)` as paho parses them, in the reader callback: no
    queue, task or future per message here (the caller's gate decides what to keep). The
    blocking part of connecting (DNS, TCP, TLS handshake) runs in a worker thread; everything
    else runs on the loop thread.
    """

    def __init__(self, cfg: MqttConfig, on_message: OnMessage,
                 on_connack: Callable[[Connection], None] | None = None) -> None:
        """on_connack(conn) runs in the reader callback that parsed a successful CONNACK, before
        any message behind it: with a kept session the broker sends what it queued for us right
        after the CONNACK, and whatever answers those messages (acks) must find the connection."""
        self.cfg = cfg
        self._on_connack = on_connack
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._on_message = on_message
        v5 = cfg.protocol == "5"
        c = self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=cfg.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else False)
        if cfg.username:
            c.username_pw_set(cfg.username, cfg.password or None)
        if cfg.tls_ca is not None:
            c.tls_set_context(tls.client_context(cfg.tls_ca))
        c.max_inflight_messages_set(MAX_INFLIGHT)
        c.max_queued_messages_set(MAX_QUEUED_OUT)
        c.on_socket_open = self._socket_open
        c.on_socket_close = self._socket_close
        c.on_socket_register_write = self._register_write
        c.on_socket_unregister_write = self._unregister_write
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_subscribe = self._acked
        c.on_unsubscribe = self._acked
        c.on_publish = self._published
        c.on_message = self._message
        self._sock: Any = None
        self._want_write = False        # noted by a socket callback in the connect thread
        self._reading = self._writing = False
        self._misc: asyncio.Task[None] | None = None
        self._connack: asyncio.Future[None] = self._loop.create_future()
        self._closed: asyncio.Future[str] = self._loop.create_future()
        self._waiting: dict[int, asyncio.Future[None]] = {}   # mid -> SUBACK/UNSUBACK/PUBACK
        self.session_present = False

    # -- connecting ------------------------------------------------------------------------------

    async def connect(self, timeout_s: float = 10.0) -> None:
        """Connect and wait for the CONNACK; MqttError if refused, unreachable or too slow.

        paho's connect() (name lookup, TCP, TLS handshake, CONNECT written) blocks, so it runs
        in a worker thread; the socket callbacks it makes there only note what they want, and
        the reader/writer are registered here, on the loop's thread, once it has returned."""
        kw: dict[str, Any] = {}
        if self.cfg.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            # Keep our session (QoS 1 subscription and what is queued for it) while we are away.
            props.SessionExpiryInterval = self.cfg.session_expiry_s
            props.MaximumPacketSize = MAX_PACKET
            kw = {"clean_start": False, "properties": props}
        # (MQTT 3.1.1: clean_session=False, given to the client; the broker keeps the session.)
        where = "%s:%d" % (self.cfg.host, self.cfg.port)
        job = self._loop.run_in_executor(None, functools.partial(
            self.client.connect, self.cfg.host, self.cfg.port, self.cfg.keepalive_s, **kw))
        try:
            rc = await asyncio.wait_for(asyncio.shield(job), timeout_s)
        except (OSError, TimeoutError, ValueError, asyncio.CancelledError) as e:
            # The thread may still finish later: close whatever it opened then.
            job.add_done_callback(lambda _: self._loop.call_soon_threadsafe(self.abort))
            if isinstance(e, asyncio.CancelledError):
                raise
            raise MqttError("cannot connect to %s: %s" % (where, _why(e))) from None
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttError("cannot connect to %s: %s" % (where, mqtt.error_string(rc)))
        if self._sock is not None:
            self._watch(self._sock)
            if self._want_write or self.client.want_write():
                self._register_write(self.client, None, self._sock)
        self._misc = asyncio.create_task(self._misc_loop(), name="mqtt-misc")
        try:
            await asyncio.wait_for(asyncio.shield(self._connack), timeout_s)
        except TimeoutError:
            self.abort()
            raise MqttError("no CONNACK from %s within %.0f s" % (where, timeout_s)) from None
        except BaseException:
            self.abort()
            raise

    def _on_loop(self) -> bool:
        return bool(threading.get_ident() == self._loop_thread)

    def _socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # Nagle off: an ack written while the previous one is unacknowledged by TCP would wait
        # for the broker's delayed ACK (up to 40 ms). A bounded receive buffer: see RCVBUF.
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self._sock = sock
        if self._on_loop():
            self._watch(sock)

    def _watch(self, sock: Any) -> None:
        if not self._reading:
            self._loop.add_reader(sock, self._readable)
            self._reading = True

    def _socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._sock = None
        if not self._on_loop():
            return      # the connect thread failed half-way: nothing was registered yet
        if self._reading:
            self._loop.remove_reader(sock)
            self._reading = False
        if self._writing:
            self._loop.remove_writer(sock)
            self._writing = False
        # paho calls on_disconnect right after this, with the reason (e.g. the broker's
        # DISCONNECT "session taken over"): let that one be the connection's end.
        self._loop.call_soon(self._end, "connection closed")

    def _register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if not self._on_loop():
            self._want_write = True
        elif not self._writing and sock is not None:
            self._loop.add_writer(sock, self._writable)
            self._writing = True

    def _unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if not self._on_loop():
            self._want_write = False
        elif self._writing:
            self._loop.remove_writer(sock)
            self._writing = False

    def _readable(self) -> None:
        # paho's loop_read handles one packet per call when nothing is in flight, and each
        # call costs a trip through the event loop's selector: drain what the socket already
        # holds (bounded, so one busy link cannot starve the loop's other callbacks).
        for _ in range(READ_BURST):
            if self.client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            sock = self._sock
            if sock is None or not _has_bytes(sock):
                return

    def _writable(self) -> None:
        self.client.loop_write()

    async def _misc_loop(self) -> None:
        """Keep-alive pings and the keep-alive timeout (paho's loop_misc), once a second."""
        while not self._closed.done():
            if self.client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            await asyncio.sleep(MISC_EVERY_S)

    # -- paho's protocol callbacks ------------------------------------------------------------

    def _connected(self, client: mqtt.Client, userdata: Any, flags: ConnectFlags, reason: ReasonCode,
                   properties: Properties | None) -> None:
        if self._connack.done():
            return
        if reason.is_failure:
            self._connack.set_exception(MqttError("broker %s:%d refused the connection: %s"
                                                  % (self.cfg.host, self.cfg.port, reason)))
        else:
            self.session_present = bool(flags.session_present)
            self._connack.set_result(None)
            if self._on_connack is not None:
                self._on_connack(self)

    def _disconnected(self, client: mqtt.Client, userdata: Any, flags: DisconnectFlags, reason: ReasonCode,
                      properties: Properties | None) -> None:
        if flags.is_disconnect_packet_from_server and reason.value == SESSION_TAKEN_OVER:
            why = ("another client connected with our client id %r, so the broker closed this connection"
                   " (session taken over): every gateway instance needs its own [mqtt] client_id"
                   % self.cfg.client_id)
        elif flags.is_disconnect_packet_from_server:
            why = "the broker closed the connection: %s" % reason
        else:
            why = "connection lost" if reason.is_failure else "disconnected"
        self._end(why)

    def _end(self, why: str) -> None:
        if not self._connack.done():
            self._connack.set_exception(MqttError(why))
        if not self._closed.done():
            self._closed.set_result(why)
        waiting, self._waiting = self._waiting, {}
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(MqttError(why))
        if self._misc is not None:
            self._misc.cancel()

    def _acked(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode],
               properties: Properties | None) -> None:
        fut = self._waiting.pop(mid, None)
        if fut is None or fut.done():
            return
        bad = [r for r in reasons if r.is_failure]
        if bad:
            fut.set_exception(MqttError("broker refused: %s" % ", ".join(str(r) for r in bad)))
        else:
            fut.set_result(None)

    def _published(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode,
                   properties: Properties | None) -> None:
        fut = self._waiting.pop(mid, None)   # None: a publish nobody waits for (acks)
        if fut is None or fut.done():
            return
        if reason.is_failure:
            fut.set_exception(MqttError("broker refused the publish: %s" % reason))
        else:
            fut.set_result(None)

    def _message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        payload = msg.payload
        try:
            self._on_message(msg.topic, payload if isinstance(payload, bytes) else bytes(payload))
        except Exception:  # noqa: BLE001 - an exception here would end paho's read and the loop's callback
            log.exception("mqtt: message handler failed for a message on %r", msg.topic)

    # -- using the connection -------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed.done()

    async def wait_closed(self) -> str:
        """Wait until the connection ends; why it ended (one line)."""
        return await asyncio.shield(self._closed)

    async def _wait(self, mid: int | None, what: str, timeout_s: float) -> None:
        if mid is None:
            raise MqttError("%s: not connected" % what)
        fut = self._loop.create_future()
        self._waiting[mid] = fut
        try:
            await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            raise MqttError("%s: no answer from the broker within %.0f s" % (what, timeout_s)) from None
        finally:
            self._waiting.pop(mid, None)

    async def subscribe(self, topic: str, qos: int = 1, timeout_s: float = 10.0) -> None:
        """Subscribe and wait for the SUBACK; MqttError if the broker refused it."""
        if self.cfg.protocol == "5":
            rc, mid = self.client.subscribe(topic, options=SubscribeOptions(qos=qos))
        else:
            rc, mid = self.client.subscribe(topic, qos=qos)
        _check(rc, "subscribe %s" % topic)
        await self._wait(mid, "subscribe %s" % topic, timeout_s)

    async def unsubscribe(self, topic: str, timeout_s: float = 10.0) -> None:
        rc, mid = self.client.unsubscribe(topic)
        _check(rc, "unsubscribe %s" % topic)
        await self._wait(mid, "unsubscribe %s" % topic, timeout_s)

    async def publish(self, topic: str, payload: bytes, qos: int = 1, timeout_s: float = 10.0) -> None:
        """Publish and, for QoS 1, wait for the broker's PUBACK."""
        info = self.client.publish(topic, payload, qos=qos)
        _check(info.rc, "publish")
        if qos == 0 or info.is_published():
            return
        await self._wait(info.mid, "publish", timeout_s)

    def publish_nowait(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """Hand a message to paho without waiting for its PUBACK (acks, time replies: losing
        one is harmless, the device asks again). False when paho refused it (not connected,
        its outgoing queue full)."""
        return self.client.publish(topic, payload, qos=qos).rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def want_write(self) -> bool:
        return self.client.want_write()

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """DISCONNECT and wait (bounded) for the socket to close; past that, abort()."""
        if not self._closed.done() and self._sock is not None:
            self.client.disconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._closed), timeout_s)
        self.abort()

    def abort(self) -> None:
        """Drop the connection now, without a DISCONNECT (synchronous: usable while cancelled,
        and for a connect abandoned half-way, whose thread may open the socket later)."""
        sock = self.client.socket()
        if isinstance(sock, socket.socket):      # an ssl.SSLSocket too
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            # paho reads the end of the stream and closes its socket (on_socket_close).
            with contextlib.suppress(Exception):
                self.client.loop_read()
        self._end("closed")


def _has_bytes(sock: Any) -> bool:
    """Whether a read would return data now (public socket API: a non-blocking peek). A TLS
    socket cannot peek: only its already decrypted bytes count; what is still encrypted in the
    kernel wakes the (level-triggered) selector again."""
    if isinstance(sock, ssl.SSLSocket):
        return sock.pending() > 0
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True     # let loop_read meet the error and end the connection its own way


def _check(rc: MQTTErrorCode, what: str) -> None:
    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
        raise MqttError("%s: %s" % (what, mqtt.error_string(rc)))


def _why(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return str(text).splitlines()[0]


class UnknownDevice(Exception):
    """A command for a device id the gateway has no key for."""


class NotConnected(Exception):
    """The gateway is not connected to the broker right now."""


class Downlink:
    """Signed commands to devices over the current connection (None while disconnected)."""

    def __init__(self, registry: DeviceRegistry) -> None:
        self.registry = registry
        self.client: Connection | None = None   # set by the service once connected (CONNACK)
        self.sent = 0
        self.failed = 0

    def attach(self, conn: Connection) -> None:
        """The connection to send on, from its CONNACK (Connection's on_connack)."""
        self.client = conn

    async def _sign(self, st: DeviceState, t: str, fields: dict[str, Any]) -> bytes:
        b, n = await self.registry.next_command(st)
        m = dict(fields)
        m.update(t=t, d=st.device_id, b=b, n=n)
        return sign(m, st.key)

    async def send_command(self, device_id: str, t: str, fields: dict[str, Any]) -> None:
        """Sign and publish one command (QoS 1), waiting for the broker's PUBACK.

        Raises UnknownDevice, NotConnected, protocol MalformedMessage for bad fields, or
        MqttError; a caller (API, change feed) reports these instead of losing a command.
        """
        st = await self.registry.lookup(device_id)
        if st is None:
            raise UnknownDevice(f"unknown device {device_id}")
        client = self.client
        if client is None:
            raise NotConnected("gateway is not connected to the broker")
        payload = await self._sign(st, t, fields)
        await client.publish(topics.down(device_id, t), payload, qos=1)
        self.sent += 1

    async def send_nowait(self, st: DeviceState, t: str, fields: dict[str, Any]) -> bool:
        """Sign and hand a command to the connection without waiting for its PUBACK.

        For acks and time replies: losing one is harmless (the device asks again), and
        waiting would stall the ingest. False when not connected.
        """
        client = self.client
        if client is None:
            return False
        payload = await self._sign(st, t, fields)
        if client.publish_nowait(topics.down(st.device_id, t), payload, qos=1):
            self.sent += 1
        else:
            self.failed += 1
            if self.failed == 1 or self.failed % 1000 == 0:
                log.warning("publish to device failed (%d so far): outgoing queue full or not connected",
                            self.failed)
        return True

    async def drain(self, wait_s: float = 2.0) -> None:
        """Wait briefly for handed-over commands to be written (at shutdown)."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while self.client is not None and self.client.want_write():
            if asyncio.get_running_loop().time() >= deadline:
                return
            await asyncio.sleep(_POLL_S)


_POLL_S = 0.01

"""The gateway's MQTT side: the client it connects with, and signed commands to devices.

Client: fixed client id and clean_session=False, so the broker keeps the QoS 1
subscription while the gateway is down and delivers what was queued when it returns.

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
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from gateway import tls
from gateway.config import MqttConfig
from gateway.registry import DeviceRegistry, DeviceState
from protocol import messages, topics
from protocol.auth import Key
from protocol.errors import BadSignature
from protocol.messages import VERSION

log = logging.getLogger("gateway.mqtt")

# paho's default of 20 in-flight QoS 1 publishes would throttle acks under load.
MAX_INFLIGHT = 1000
# paho leaves Nagle on: a small ack written while the previous one is unacknowledged by TCP
# then waits for the peer's delayed ACK (up to 40 ms). Acks are latency, so send at once.
NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


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


__all__ = ["BadSignature", "BufferedSocket", "Downlink", "canonical", "make_client",
           "incoming", "session", "sign", "signed_part", "verify", "verify_received"]

# One recv fetches up to this much; paho then takes its packets from memory.
READ_CHUNK = 65536


class BufferedSocket:
    """A paho socket whose recv() is served from one large read.

    paho reads every packet with at least three recv calls (1 byte command, 1+ bytes of
    length, then the rest): at thousands of small PUBLISHes a second the syscalls and their
    Python wrappers cost ~10% of the gateway's CPU. Here one recv(READ_CHUNK) fills a buffer
    and paho's small reads are sliced from it.

    Bytes left in the buffer are not visible to the event loop's readiness check, so the
    buffer must be drained before the reader callback returns: `pending()` reports them, and
    aiomqtt's reader keeps calling paho's loop_read while `_sock.pending() > 0` (the hook it
    has for SSL sockets, which buffer the same way; tests/gateway/test_gw_wire.py checks that
    this hook is still there). Everything else is the socket's own (attribute delegation).
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0
        self._may_refill = True

    def recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._buf):
            if not self._may_refill:
                # One socket read per read callback: once a chunk is used up, say "no data"
                # (paho keeps its partial packet) so the callback returns and the event loop
                # runs the committer and the writes. Without this, while the broker keeps
                # sending, the reader processed messages for as long as data kept coming and
                # acks waited: the devices' windows ran empty and the two sides took turns.
                self._may_refill = True
                raise BlockingIOError
            data = self._sock.recv(READ_CHUNK)  # BlockingIOError / b"" (EOF) pass through
            self._may_refill = False
            if len(data) <= bufsize:
                self._buf, self._pos = b"", 0
                return data
            self._buf, self._pos = data, 0
        end = self._pos + bufsize
        out = self._buf[self._pos:end]
        self._pos = min(end, len(self._buf))
        return out

    def pending(self) -> int:
        """Bytes read from the socket that paho has not taken yet."""
        return len(self._buf) - self._pos

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _buffer_reads(client: aiomqtt.Client) -> bool:
    """Make paho create BufferedSocket-wrapped sockets. Private paho/aiomqtt API, guarded:
    if any piece is missing (another version) paho keeps its own socket, which is only
    slower. Only a plain TCP socket is wrapped (not TLS or websockets)."""
    paho = getattr(client, "_client", None)
    create = getattr(paho, "_create_socket", None)
    if paho is None or not callable(create) or not _aiomqtt_drains_pending():
        return False

    def create_buffered() -> Any:
        sock = create()
        return BufferedSocket(sock) if type(sock) is socket.socket else sock

    setattr(paho, "_create_socket", create_buffered)  # noqa: B010 (instance attribute on purpose)
    return True


# At most this many bytes per coalesced send (a burst of PUBACKs is 4 bytes each).
WRITE_CHUNK = 65536


def _coalesce_writes(paho: mqtt.Client) -> bool:
    """Make paho write its queued packets with one send() per burst, not one per packet.

    Every incoming QoS 1 message costs a PUBACK and every ack a PUBLISH; paho sends each
    with its own send() (~5% of the gateway's CPU at thousands a second). Consecutive packets
    that need nothing after their write -- everything but a QoS 0 PUBLISH (on_publish) and
    DISCONNECT (closes the socket) -- are joined into one send; a special packet at the head
    goes to paho's own _packet_write. The bookkeeping is paho's: pos/to_process per packet,
    a partly written packet stays at the head, _last_msg_out for the keepalive. Private paho
    API, guarded: False (paho unchanged) if a piece is missing.
    """
    original = getattr(paho, "_packet_write", None)
    out = getattr(paho, "_out_packet", None)
    clock = getattr(mqtt, "time_func", None)
    if (not callable(original) or out is None or clock is None
            or not hasattr(paho, "_msgtime_mutex") or not callable(getattr(paho, "_sock_send", None))):
        return False
    plain_publish, disconnect = int(mqtt.PUBLISH), int(mqtt.DISCONNECT)

    def packet_write() -> MQTTErrorCode:
        while out:
            run: list[Any] = []
            size = 0
            for p in out:
                cmd = p["command"] & 0xF0
                if cmd == disconnect or (cmd == plain_publish and p["qos"] == 0) or size >= WRITE_CHUNK:
                    break
                run.append(p)
                size += p["to_process"]
            if len(run) < 2:
                return original()  # type: ignore[no-any-return]
            data = b"".join(p["packet"][p["pos"]:] if p["pos"] else p["packet"] for p in run)
            try:
                n = paho._sock_send(data)
            except (AttributeError, ValueError):
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            except BlockingIOError:
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError as err:
                log.warning("mqtt: send failed: %s", err)
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            if n <= 0:
                break
            for p in run:
                if n >= p["to_process"]:
                    n -= p["to_process"]
                    p["pos"] += p["to_process"]
                    p["to_process"] = 0
                    out.popleft()
                else:
                    p["pos"] += n
                    p["to_process"] -= n
                    break
        with paho._msgtime_mutex:
            paho._last_msg_out = clock()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    setattr(paho, "_packet_write", packet_write)  # noqa: B010 (instance attribute on purpose)
    return True


@functools.cache
def _aiomqtt_drains_pending() -> bool:
    """aiomqtt's reader loops while the socket has pending() bytes (checked in its source:
    without that loop, buffered bytes could wait for the next network read)."""
    import inspect
    try:
        src = inspect.getsource(aiomqtt.Client._on_socket_open)
    except (OSError, TypeError, AttributeError):
        return False
    return "pending()" in src


# Messages taken from the queue per turn before the consumer lets the loop run other work.
DRAIN_MAX = 64


async def incoming(client: aiomqtt.Client) -> AsyncIterator[aiomqtt.Message]:
    """`client.messages`, cheaper under load: aiomqtt's iterator creates a task and runs an
    `asyncio.wait` for every message (~10% of the gateway's GIL time at thousands a second).
    Here, after each message from aiomqtt's own iterator (which waits while the queue is
    empty and raises MqttError on a disconnect), up to DRAIN_MAX messages already queued are
    taken directly; then the next one goes through aiomqtt again, which yields to the loop,
    so the committer, the reads and the writes keep their turns. Private aiomqtt API
    (`_queue`), guarded: without it this is plain `client.messages`."""
    official = client.messages
    queue = getattr(client, "_queue", None)
    if not isinstance(queue, asyncio.Queue):
        async for m in official:
            yield m
        return
    while True:
        yield await official.__anext__()
        for _ in range(DRAIN_MAX):
            try:
                m = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            yield m


class UnknownDevice(Exception):
    """A command for a device id the gateway has no key for."""


class NotConnected(Exception):
    """The gateway is not connected to the broker right now."""


def make_client(cfg: MqttConfig) -> aiomqtt.Client:
    client = aiomqtt.Client(
        cfg.host, cfg.port,
        username=cfg.username or None, password=cfg.password or None,
        identifier=cfg.client_id, clean_session=False, keepalive=cfg.keepalive_s,
        max_inflight_messages=MAX_INFLIGHT, socket_options=[NODELAY],
        tls_context=tls.client_context(cfg.tls_ca) if cfg.tls_ca is not None else None,
    )
    # aiomqtt warns on every publish beyond 10 unconfirmed ones; acks are many by design.
    client.pending_calls_threshold = 100000
    if not _buffer_reads(client):
        log.warning("mqtt: unbuffered socket reads (paho/aiomqtt internals changed); slower ingest")
    paho = getattr(client, "_client", None)
    if not isinstance(paho, mqtt.Client) or not _coalesce_writes(paho):
        log.warning("mqtt: one send per packet (paho internals changed); slower ingest")
    return client


# aiomqtt's graceful disconnect (DISCONNECT, then wait for the socket to close) waits without
# a limit, and after a cancel it sometimes never completes: past this, drop the connection.
DISCONNECT_TIMEOUT_S = 2.0
_POLL_S = 0.01


@contextlib.asynccontextmanager
async def session(cfg: MqttConfig) -> AsyncIterator[aiomqtt.Client]:
    """`async with make_client(cfg)`, except that leaving is bounded and never hides why we
    leave: aiomqtt's __aexit__ may raise MqttError while a CancelledError is unwinding, which
    would turn a shutdown into a reconnect; here the original exception always wins."""
    client = make_client(cfg)
    try:
        await client.__aenter__()
    except BaseException:
        # Cancelled (or failed) half-way through the connect: the socket may be open, and
        # aiomqtt's keep-alive task with it; close it so nothing is left running.
        _drop_socket(client)
        raise
    try:
        yield client
    except BaseException:
        with contextlib.suppress(Exception):
            await _bounded_exit(client)
        raise
    await _bounded_exit(client)


async def _bounded_exit(client: aiomqtt.Client) -> None:
    leaving = asyncio.ensure_future(client.__aexit__(None, None, None))
    try:
        done, _ = await asyncio.wait({leaving}, timeout=DISCONNECT_TIMEOUT_S)
    finally:
        if not leaving.done():
            leaving.cancel()
            _drop_socket(client)
            log.warning("mqtt: no clean disconnect within %.1fs; connection dropped", DISCONNECT_TIMEOUT_S)
    if done:
        leaving.result()


def _drop_socket(client: aiomqtt.Client) -> None:
    """Close the paho socket the way paho does (its close callback unregisters it from the
    event loop). Private paho API, guarded: at worst the process exit closes it."""
    paho = getattr(client, "_client", None)
    close = getattr(paho, "_sock_close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


class Downlink:
    def __init__(self, registry: DeviceRegistry) -> None:
        self.registry = registry
        self._client: aiomqtt.Client | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.failed = 0

    @property
    def client(self) -> aiomqtt.Client | None:
        return self._client

    @client.setter
    def client(self, client: aiomqtt.Client | None) -> None:
        """The connected client (None while disconnected), set by the service once subscribed."""
        self._client = client

    async def _sign(self, st: DeviceState, t: str, fields: dict[str, Any]) -> bytes:
        b, n = await self.registry.next_command(st)
        m = dict(fields)
        m.update(t=t, d=st.device_id, b=b, n=n)
        return sign(m, st.key)

    async def send_command(self, device_id: str, t: str, fields: dict[str, Any]) -> None:
        """Sign and publish one command (QoS 1), waiting for the broker's PUBACK.

        Raises UnknownDevice, NotConnected, protocol MalformedMessage for bad fields, or
        aiomqtt.MqttError; a caller (API, CLI) reports these instead of losing a command.
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
        """Sign and hand a command to the MQTT client without waiting for PUBACK.

        For acks and time replies: losing one is harmless (the device asks again), and
        waiting would stall the ingest. False when not connected.
        """
        client = self.client
        if client is None:
            return False
        payload = await self._sign(st, t, fields)
        paho = getattr(client, "_client", None)
        if isinstance(paho, mqtt.Client):
            # Straight to paho: aiomqtt's publish would cost a task, an Event and a wait_for
            # per message only to learn of a PUBACK nobody waits for (aiomqtt ignores the
            # PUBACK of a mid it is not waiting on). Thousands of acks a second: it adds up.
            info = paho.publish(topics.down(st.device_id, t), payload, qos=1)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                self.sent += 1
                return True
            self._failed(aiomqtt.MqttCodeError(info.rc, "Could not publish message"))
            return True
        self._spawn(client.publish(topics.down(st.device_id, t), payload, qos=1))
        return True

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            self.sent += 1
        else:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        self.failed += 1
        if self.failed == 1 or self.failed % 1000 == 0:
            log.warning("publish to device failed (%d so far): %s", self.failed, exc)

    async def drain(self, wait_s: float = 2.0) -> None:
        """Wait briefly for commands handed to the client (at shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=wait_s)
        # Publishes handed straight to paho: give its socket writes a moment (polled: paho
        # has no completion event for them).
        paho = getattr(self.client, "_client", None)
        for _ in range(int(wait_s / _POLL_S)):
            if not (isinstance(paho, mqtt.Client) and paho.want_write()):
                break
            await asyncio.sleep(_POLL_S)

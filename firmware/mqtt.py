"""MQTT 3.1.1 client for the device: packet codec + a small asyncio client.

Runs unchanged on MicroPython 1.27 (asyncio streams) and CPython 3.11 (asyncio streams); the
simulator runs ~1,000 of these in one CPython process, so a client is two small tasks (a
reader and a ticker), one Event and one Lock.

Modelled on micropython-lib's umqtt.simple (byte-level packets, no framework) and on Peter
Hinch's mqtt_as (resilience). The resilience rules, written down:
- A TCP connection can die silently (Wi-Fi drop, NAT, broker crash): only the keepalive
  finds out. We send PINGREQ when we have sent or heard nothing for keepalive/2 and declare
  the link dead when that PINGREQ gets no PINGRESP within another keepalive/2. The broker
  drops us after 1.5 x keepalive without traffic, so we always talk before it gives up.
- QoS 1 messages stay in the in-flight window until their PUBACK. On every new connection
  (clean_session=0) they are re-sent with the same packet id and the DUP flag (3.1.1
  section 4.4), before anything new, so nothing is lost; duplicates are the receiver's
  business (the gateway dedupes by record id).
- The window is bounded (default 8) so a backlog cannot flood the broker or the heap.
- Every wait is bounded by the HAL clock (hal.ticks_ms / hal.sleep_ms), never by
  asyncio.sleep or time.time: the simulator accelerates the HAL clock and ESP32 has ticks.
- Writes from the reader task (PUBACK) and the caller (PUBLISH) share one lock: MicroPython
  streams assert on two concurrent drains of one socket.

RAM: this module's code lives in the device's heap, so it is kept small on purpose: one error
class (the protocol's, with MQTT codes), private const() names (folded away by mpy-cross),
short error details, and one wait loop for CONNACK, SUBACK and window slots.
"""

import asyncio

from protocol.errors import ProtocolError

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# Control packet types (high nibble of the first byte).
_CONNACK = const(2)
_PUBLISH = const(3)
_PUBACK = const(4)
_SUBACK = const(9)
_UNSUBACK = const(11)
_PINGRESP = const(13)

_MAX_PACKET = const(4096)         # largest incoming packet we buffer (v1 payloads are <= 1024 bytes)
_MAX_LENGTH = const(268435455)  # 4-byte remaining length limit of MQTT 3.1.1

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"


class MQTTError(ProtocolError):
    """Any MQTT-level failure; `code` is stable and machine-readable, args = (code, detail[, rc]).

    Codes: bad_length, bad_flags, malformed, unexpected, too_large (protocol violations by
    the peer), refused (CONNACK return code != 0, see ConnectRefused), sub_refused, timeout,
    dead (keepalive expired), closed (peer closed the stream), not_connected.
    """

    def __init__(self, code, detail="", *rc):
        super().__init__(detail, code, *rc)

    @property
    def rc(self):
        return self.args[2]


# ---------------------------------------------------------------------------------------
# Codec: bytes in, bytes out. Same bytes on CPython and MicroPython.

def encode_length(n):
    """Remaining Length: 7 bits per byte, continuation bit, at most 4 bytes."""
    if n < 0 or n > _MAX_LENGTH:
        raise ValueError("remaining length")
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _str(s):
    if type(s) is str:
        s = s.encode()
    return bytes((len(s) >> 8, len(s) & 0xFF)) + s


def _packet(first, body):
    return bytes((first,)) + encode_length(len(body)) + body


def publish_packet(topic, payload, qos=0, retain=False, dup=False, pid=0):
    """PUBLISH as a bytearray (so a resend can set the DUP bit in place)."""
    if qos > 1 or (qos == 0 and (dup or pid)) or (qos and not 0 < pid < 65536):
        raise ValueError("QoS, DUP or packet id")
    t = _str(topic)
    out = bytearray((0x30 | (qos << 1) | (8 if dup else 0) | (1 if retain else 0),))
    out += encode_length(len(t) + len(payload) + 2 * qos)
    out += t
    if qos:
        out += bytes((pid >> 8, pid & 0xFF))
    out += payload
    return out


def puback_packet(pid):
    return bytes((0x40, 2, pid >> 8, pid & 0xFF))


def decode_packet(first, body):
    """Decode what a broker may send a client. Returns a tuple led by the packet type:
        (CONNACK=2, session_present, rc)     (PUBACK=4, pid)      (PINGRESP=13,)
        (SUBACK=9, pid, [return codes])      (UNSUBACK=11, pid)
        (PUBLISH=3, topic, payload, qos, retain, dup, pid)   pid 0 for QoS 0
    Anything else, or a packet that breaks 3.1.1's rules, raises MQTTError."""
    kind = first >> 4
    n = len(body)
    if kind == _PUBLISH:
        qos = (first >> 1) & 3
        if qos == 3 or (qos == 0 and first & 8):
            raise MQTTError("bad_flags", "PUBLISH 0x%02x" % first)
        pos = 2 + ((body[0] << 8) | body[1]) if n >= 2 else n + 1
        end = pos + 2 * (qos > 0)
        if end > n:
            raise MQTTError("malformed", "PUBLISH too short")
        try:
            topic = bytes(body[2:pos]).decode()
        except UnicodeError:
            topic = ""
        pid = (body[pos] << 8) | body[pos + 1] if qos else 0
        if not topic or "+" in topic or "#" in topic or (qos and not pid):
            raise MQTTError("malformed", "PUBLISH topic or packet id")
        return (_PUBLISH, topic, bytes(body[end:]), qos, bool(first & 1), bool(first & 8), pid)
    want = (_CONNACK, _PUBACK, _UNSUBACK, _PINGRESP, _SUBACK)
    if kind not in want:
        raise MQTTError("unexpected", "packet type %d" % kind)
    if first != kind << 4:             # these packets have no flags
        raise MQTTError("bad_flags", "first byte 0x%02x" % first)
    if n < 3 if kind == _SUBACK else n != (0 if kind == _PINGRESP else 2):
        raise MQTTError("bad_length", "type %d, %d bytes" % (kind, n))
    if kind == _PINGRESP:
        return (_PINGRESP,)
    pid = (body[0] << 8) | body[1]
    if kind == _CONNACK:
        if body[0] & 0xFE or (body[0] and body[1]):
            raise MQTTError("malformed", "CONNACK flags")
        return (_CONNACK, bool(body[0]), body[1])
    if kind == _SUBACK:
        codes = list(body[2:])
        for c in codes:
            if c not in (0, 1, 2, 0x80):
                raise MQTTError("malformed", "SUBACK code 0x%02x" % c)
        return (_SUBACK, pid, codes)
    return (kind, pid)


async def read_packet(reader):
    """Read one packet from an asyncio stream -> (first byte, body, complete).

    A packet over _MAX_PACKET is read and thrown away so the stream stays in sync; it comes back
    with complete=False and only its first 64 body bytes, so the caller can still PUBACK it
    and count the rejection (rather than reconnect, get it redelivered, and loop forever)."""
    try:
        first = (await reader.readexactly(1))[0]
        n = 0
        for i in range(5):
            if i == 4:
                raise MQTTError("bad_length", "length > 4 bytes")
            b = (await reader.readexactly(1))[0]
            n |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                break
        if n > _MAX_PACKET:
            head = await reader.readexactly(64)
            left = n - 64
            while left:
                chunk = await reader.read(min(left, 256))
                if not chunk:
                    raise EOFError
                left -= len(chunk)
            return first, head, False
        return first, (await reader.readexactly(n) if n else b""), True
    except EOFError:  # CPython's IncompleteReadError is an EOFError too
        raise MQTTError("closed", "closed by the peer")


# ---------------------------------------------------------------------------------------
# The asyncio client.


class MQTTClient:
    """One device's MQTT session over a given asyncio stream pair.

    The object outlives connections: its in-flight list (QoS 1 PUBLISHes without PUBACK) is
    the client half of the persistent session and is re-sent, DUP set, on the next connect().
    Usage: connect(reader, writer) -> subscribe/publish -> loop { await wait(); await
    service() } until service() raises; then close() and connect() again on a new stream.
    Incoming packets are handled by the reader task synchronously (no coroutine per packet);
    only the PUBACK it owes is awaited.
    """

    def __init__(self, hal, client_id, user=None, password=None, keepalive_s=60, window=8,
                 on_message=None, tick_ms=1000):
        self.hal = hal                # ticks_ms(), ticks_diff(a, b), async sleep_ms(ms)
        self.client_id = client_id
        self.user = user
        self.password = password
        self.keepalive_s = keepalive_s
        self.window = window          # most unacked QoS 1 PUBLISHes at once
        self.on_message = on_message  # sync callable(topic, payload, retain, dup)
        self.tick_ms = tick_ms        # resolution of every timeout and of the keepalive
        self.will = None              # (topic, payload, qos, retain), read at connect()
        self.connected = False
        self.error = None             # why the current connection broke
        self.resent = 0               # PUBLISHes re-sent with DUP after a reconnect
        self.counters = {}            # odd but survivable input, by code
        self._inflight = []           # [pid, packet (bytearray), tag], oldest first
        self._pid = 0
        self._writer = None
        self._tasks = ()
        self._ev = asyncio.Event()    # "something changed": packet in, tick, wake()
        self._lock = asyncio.Lock()   # one writer at a time (see module doc)
        self._got = None              # CONNACK (session present, rc), then SUBACK codes
        self._last_rx = 0
        self._last_tx = 0
        self._ping_at = None          # ticks of the unanswered PINGREQ

    def inflight_count(self):
        return len(self._inflight)

    def inflight_tags(self):
        return [e[2] for e in self._inflight]

    def _count(self, code):
        self.counters[code] = self.counters.get(code, 0) + 1

    def _next_pid(self):
        while True:
            self._pid = self._pid % 65535 + 1
            for e in self._inflight:
                if e[0] == self._pid:
                    break
            else:
                return self._pid

    async def connect(self, reader, writer, clean=False, timeout_ms=10000):
        """CONNECT on a fresh stream pair; wait for CONNACK; re-send the in-flight window.
        Returns the broker's session-present flag; raises MQTTError (code refused, timeout...).
        The handshake's code is in firmware/mqttconn.py (loaded for it; the link unloads it)."""
        from firmware import mqttconn
        return await mqttconn.connect(self, reader, writer, clean, timeout_ms)

    def close(self):
        """Drop the connection at once, without DISCONNECT (so the broker sends our will)."""
        self.connected = False
        for t in self._tasks:
            t.cancel()
        self._tasks = ()
        w = self._writer
        self._writer = None
        if w is not None:
            try:
                w.close()
            except Exception:  # already broken: nothing left to release
                pass

    async def disconnect(self):
        """Clean goodbye: DISCONNECT (the broker discards the will), then close."""
        try:
            if self._writer is not None:
                await self._send(DISCONNECT_PACKET)
        finally:
            self.close()

    async def publish(self, topic, payload, qos=0, retain=False, tag=None):
        """QoS 0: send and forget. QoS 1: wait for a window slot, send, return the packet id;
        the message stays in the window (tag kept with it) until its PUBACK."""
        if not self.connected:
            raise MQTTError("not_connected")
        if qos == 0:
            await self._send(publish_packet(topic, payload, 0, retain))
            return 0
        if qos != 1:
            raise ValueError("QoS must be 0 or 1")
        await self._wait_for(_PUBACK, None)
        pid = self._next_pid()
        pkt = publish_packet(topic, payload, 1, retain, False, pid)
        self._inflight.append([pid, pkt, tag])  # before sending: a failed send is re-sent later
        await self._send(pkt)
        return pid

    async def subscribe(self, topic, qos=1, timeout_ms=10000):
        """SUBSCRIBE one filter; returns the granted QoS. A refusal (0x80) raises (code
        sub_refused). Code in firmware/mqttconn.py, as connect's."""
        from firmware import mqttconn
        return await mqttconn.subscribe(self, topic, qos, timeout_ms)

    async def wait(self):
        """Sleep until a packet arrives, a tick passes (tick_ms) or wake() is called."""
        await self._ev.wait()
        self._ev.clear()

    def wake(self):
        self._ev.set()

    async def service(self):
        """Keepalive duty; raises MQTTError/OSError when the connection is broken."""
        if self.error is not None:
            raise self.error
        if not self.connected:
            raise MQTTError("not_connected")
        half = self.keepalive_s * 500
        if not half:
            return
        hal = self.hal
        now = hal.ticks_ms()
        if self._ping_at is not None:
            if hal.ticks_diff(now, self._ping_at) >= half:
                raise MQTTError("dead", "no PINGRESP in %d ms" % half)
        elif hal.ticks_diff(now, self._last_tx) >= half or hal.ticks_diff(now, self._last_rx) >= half:
            self._ping_at = now
            await self._send(PINGREQ_PACKET)

    # -- internals

    async def _wait_for(self, what, timeout_ms):
        # what: _CONNACK (the CONNACK is in), _SUBACK (the SUBACK's codes are in), _PUBACK (a
        # window slot is free)
        t0 = self.hal.ticks_ms()
        while True:
            got = self._got
            if what == _PUBACK:
                if len(self._inflight) < self.window:
                    return
            elif type(got) is (tuple if what == _CONNACK else list):
                return
            if self.error is not None:
                raise self.error
            if self.connected:
                await self.service()
            if timeout_ms is not None and self.hal.ticks_diff(self.hal.ticks_ms(), t0) >= timeout_ms:
                raise MQTTError("timeout", "wait %d: %d ms" % (what, timeout_ms))
            await self.wait()

    async def _send(self, buf):
        w = self._writer
        if w is None:
            raise MQTTError("not_connected")
        async with self._lock:
            w.write(buf)
            await w.drain()
        self._last_tx = self.hal.ticks_ms()

    async def _ticker(self):
        while True:
            await self.hal.sleep_ms(self.tick_ms)
            self._ev.set()

    async def _rx_loop(self, reader):
        try:
            while True:
                first, body, complete = await read_packet(reader)
                self._last_rx = self.hal.ticks_ms()
                pid = self._handle(first, body, complete)
                first = body = None        # no stale packet in this long-lived frame
                if pid:                    # after handling: at-least-once, never at-most-once
                    await self._send(puback_packet(pid))
                self._ev.set()
        except Exception as e:  # the connection is over; the owner sees it in service()
            self.error = e
            self.connected = False
            self._ev.set()

    def _handle(self, first, body, complete):
        """One incoming packet; returns the packet id to PUBACK, or 0."""
        if not complete:               # oversize: skipped, PUBACKed if it was a QoS 1 PUBLISH
            self._count("too_large")
            if first >> 4 != _PUBLISH:
                raise MQTTError("too_large", "packet type %d" % (first >> 4))
            if (first >> 1) & 3 != 1:
                return 0
            tl = (body[0] << 8) | body[1]
            if 2 + tl + 2 > len(body):
                raise MQTTError("too_large", "topic too long")
            return (body[2 + tl] << 8) | body[3 + tl]
        p = decode_packet(first, body)
        kind = p[0]
        if kind == _PUBLISH:
            if p[3] == 2:
                raise MQTTError("unexpected", "QoS 2 PUBLISH")
            if self.on_message is not None:
                try:
                    self.on_message(p[1], p[2], p[4], p[5])
                except Exception:  # a bad handler must not kill the session
                    self._count("callback_error")
            return p[6]
        if kind == _PUBACK:
            for e in self._inflight:
                if e[0] == p[1]:
                    self._inflight.remove(e)
                    return 0
            self._count("unknown_puback")
        elif kind == _CONNACK:
            if self._got is not None:
                raise MQTTError("unexpected", "second CONNACK")
            self._got = (p[1], p[2])
        elif kind == _SUBACK:
            if self._got == p[1]:
                self._got = p[2]
            else:
                self._count("unknown_suback")
        elif kind == _PINGRESP:
            self._ping_at = None
        else:
            self._count("unexpected_unsuback")
        return 0

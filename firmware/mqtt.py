"""MQTT 3.1.1 client for the device: pure packet codec + a small asyncio client.

Runs unchanged on MicroPython 1.27 (uasyncio streams) and CPython 3.11 (asyncio streams); the
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
"""

try:
    import asyncio
except ImportError:  # pragma: no cover - very old MicroPython ports
    import uasyncio as asyncio  # type: ignore

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# Control packet types (high nibble of the first byte).
CONNECT = const(1)
CONNACK = const(2)
PUBLISH = const(3)
PUBACK = const(4)
SUBSCRIBE = const(8)
SUBACK = const(9)
UNSUBACK = const(11)
PINGREQ = const(12)
PINGRESP = const(13)
DISCONNECT = const(14)

MAX_PACKET = const(4096)   # largest incoming packet we buffer (v1 payloads are <= 1024 bytes)
_MAX_LENGTH = const(268435455)  # 4-byte remaining length limit of MQTT 3.1.1

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"

# CONNACK return codes (3.1.1 table 3.1).
CONNACK_REASONS = {
    0: "accepted",
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class MQTTError(Exception):
    """Any MQTT-level failure; `code` is stable and machine-readable.

    Codes: bad_length, bad_flags, malformed, unexpected, too_large (protocol violations by
    the peer), refused (CONNACK return code != 0, see ConnectRefused), timeout, dead
    (keepalive expired), closed (peer closed the stream), not_connected.
    Same args layout as protocol.errors (MicroPython exceptions take no new attributes).
    """

    def __init__(self, code, detail="", *extra):
        super().__init__(code, detail, *extra)

    @property
    def code(self):
        return self.args[0]

    @property
    def detail(self):
        return self.args[1]

    def __str__(self):
        if self.args[1]:
            return "%s: %s" % (self.args[0], self.args[1])
        return self.args[0]


class ConnectRefused(MQTTError):
    """The broker answered CONNACK with a non-zero return code (rc)."""

    def __init__(self, rc):
        super().__init__("refused", "CONNACK %d: %s" % (rc, CONNACK_REASONS.get(rc, "reserved code")), rc)

    @property
    def rc(self):
        return self.args[2]


# ---------------------------------------------------------------------------------------
# Pure codec: bytes in, bytes out. Same bytes on CPython and MicroPython.

def encode_length(n):
    """Remaining Length: 7 bits per byte, continuation bit, at most 4 bytes."""
    if n < 0 or n > _MAX_LENGTH:
        raise ValueError("remaining length out of range")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def decode_length(buf, pos):
    """-> (length, position after it), or None when buf ends inside the field."""
    n = 0
    shift = 0
    for i in range(4):
        if pos + i >= len(buf):
            return None
        b = buf[pos + i]
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos + i + 1
        shift += 7
    raise MQTTError("bad_length", "remaining length longer than 4 bytes")


def _str(s):
    if type(s) is str:
        s = s.encode("utf-8")
    if len(s) > 65535:
        raise ValueError("string longer than 65535 bytes")
    return bytes((len(s) >> 8, len(s) & 0xFF)) + s


def _packet(first, body):
    return bytes((first,)) + encode_length(len(body)) + body


def connect_packet(client_id, keepalive_s=60, clean=False, user=None, password=None,
                   will_topic=None, will_payload=b"", will_qos=0, will_retain=False):
    if keepalive_s < 0 or keepalive_s > 65535:
        raise ValueError("keepalive out of range")
    if will_qos < 0 or will_qos > 2:
        raise ValueError("bad will QoS")
    flags = 0
    if clean:
        flags |= 0x02
    payload = _str(client_id)
    if will_topic is not None:
        flags |= 0x04 | (will_qos << 3)
        if will_retain:
            flags |= 0x20
        payload += _str(will_topic) + _str(will_payload)
    if user is not None:
        flags |= 0x80
        payload += _str(user)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
    elif password is not None:
        raise ValueError("MQTT 3.1.1 needs a user name with a password")
    body = b"\x00\x04MQTT\x04" + bytes((flags, keepalive_s >> 8, keepalive_s & 0xFF)) + payload
    return _packet(0x10, body)


def publish_packet(topic, payload, qos=0, retain=False, dup=False, pid=0):
    """PUBLISH as a bytearray (so a resend can set the DUP bit in place)."""
    if qos < 0 or qos > 2:
        raise ValueError("bad QoS")
    if qos == 0 and (dup or pid):
        raise ValueError("QoS 0 has neither packet id nor DUP")
    if qos and not 0 < pid < 65536:
        raise ValueError("QoS > 0 needs a packet id 1..65535")
    first = 0x30 | (qos << 1)
    if dup:
        first |= 0x08
    if retain:
        first |= 0x01
    t = _str(topic)
    n = len(t) + len(payload) + (2 if qos else 0)
    out = bytearray((first,))
    out += encode_length(n)
    out += t
    if qos:
        out.append(pid >> 8)
        out.append(pid & 0xFF)
    out += payload
    return out


def puback_packet(pid):
    return bytes((0x40, 2, pid >> 8, pid & 0xFF))


def subscribe_packet(pid, topic, qos=1):
    if not 0 < pid < 65536:
        raise ValueError("SUBSCRIBE needs a packet id 1..65535")
    return _packet(0x82, bytes((pid >> 8, pid & 0xFF)) + _str(topic) + bytes((qos,)))


def split_packet(buf):
    """A complete packet at the start of buf -> (first byte, body, bytes used); None if short."""
    if not buf:
        return None
    r = decode_length(buf, 1)
    if r is None:
        return None
    n, pos = r
    if len(buf) < pos + n:
        return None
    return buf[0], bytes(buf[pos:pos + n]), pos + n


def _u16(body, pos):
    return (body[pos] << 8) | body[pos + 1]


def _fixed(first, want, body, size):
    if first != want:
        raise MQTTError("bad_flags", "first byte 0x%02x, expected 0x%02x" % (first, want))
    if len(body) != size:
        raise MQTTError("bad_length", "packet type %d with %d body bytes" % (first >> 4, len(body)))


def decode_packet(first, body):
    """Decode what a broker may send a client. Returns a tuple led by the packet type:
        (CONNACK, session_present, rc)       (PUBACK, pid)        (PINGRESP,)
        (SUBACK, pid, [return codes])        (UNSUBACK, pid)
        (PUBLISH, topic, payload, qos, retain, dup, pid)   pid 0 for QoS 0
    Anything else, or a packet that breaks 3.1.1's rules, raises MQTTError."""
    kind = first >> 4
    if kind == PUBLISH:
        qos = (first >> 1) & 3
        dup = bool(first & 0x08)
        if qos == 3:
            raise MQTTError("bad_flags", "PUBLISH with QoS 3")
        if qos == 0 and dup:
            raise MQTTError("bad_flags", "QoS 0 PUBLISH with DUP")
        if len(body) < 2:
            raise MQTTError("malformed", "PUBLISH without topic")
        tl = _u16(body, 0)
        pos = 2 + tl
        if pos + (2 if qos else 0) > len(body):
            raise MQTTError("malformed", "PUBLISH topic runs past the packet")
        try:
            topic = bytes(body[2:pos]).decode("utf-8")
        except UnicodeError:
            raise MQTTError("malformed", "topic is not UTF-8")
        if not topic or "+" in topic or "#" in topic:
            raise MQTTError("malformed", "PUBLISH topic empty or with wildcards")
        pid = 0
        if qos:
            pid = _u16(body, pos)
            pos += 2
            if pid == 0:
                raise MQTTError("malformed", "packet id 0")
        return (PUBLISH, topic, bytes(body[pos:]), qos, bool(first & 1), dup, pid)
    if kind == PUBACK or kind == UNSUBACK:
        _fixed(first, kind << 4, body, 2)
        return (kind, _u16(body, 0))
    if kind == CONNACK:
        _fixed(first, 0x20, body, 2)
        if body[0] & 0xFE:
            raise MQTTError("malformed", "CONNACK reserved flag bits set")
        if body[0] and body[1]:
            raise MQTTError("malformed", "session present with a refusal")
        return (CONNACK, bool(body[0]), body[1])
    if kind == PINGRESP:
        _fixed(first, 0xD0, body, 0)
        return (PINGRESP,)
    if kind == SUBACK:
        if first != 0x90:
            raise MQTTError("bad_flags", "first byte 0x%02x, expected 0x90" % first)
        if len(body) < 3:
            raise MQTTError("bad_length", "SUBACK without return codes")
        codes = list(body[2:])
        for c in codes:
            if c not in (0, 1, 2, 0x80):
                raise MQTTError("malformed", "SUBACK return code 0x%02x" % c)
        return (SUBACK, _u16(body, 0), codes)
    raise MQTTError("unexpected", "packet type %d is not sent to clients" % kind)


async def read_packet(reader, max_size=MAX_PACKET):
    """Read one packet from an asyncio stream -> (first byte, body, complete).

    An oversize packet is read and thrown away so the stream stays in sync; it comes back
    with complete=False and only its first 64 body bytes, so the caller can still PUBACK it
    and count the rejection (rather than reconnect, get it redelivered, and loop forever)."""
    try:
        first = (await reader.readexactly(1))[0]
        n = 0
        shift = 0
        for _ in range(4):
            b = (await reader.readexactly(1))[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
        else:
            raise MQTTError("bad_length", "remaining length longer than 4 bytes")
        if n > max_size:
            head = await reader.readexactly(64)
            left = n - 64
            while left:
                chunk = await reader.read(min(left, 256))
                if not chunk:
                    raise MQTTError("closed", "stream ended inside a packet")
                left -= len(chunk)
            return first, head, False
        body = await reader.readexactly(n) if n else b""
        return first, body, True
    except EOFError:  # CPython's IncompleteReadError is an EOFError too
        raise MQTTError("closed", "connection closed by the peer")


# ---------------------------------------------------------------------------------------
# The asyncio client.

class MQTTClient:
    """One device's MQTT session over a given asyncio stream pair.

    The object outlives connections: its in-flight list (QoS 1 PUBLISHes without PUBACK) is
    the client half of the persistent session and is re-sent, DUP set, on the next connect().
    Usage: connect(reader, writer) -> subscribe/publish -> loop { await wait(); await
    service() } until service() raises; then close() and connect() again on a new stream.
    """

    def __init__(self, hal, client_id, user=None, password=None, keepalive_s=60, window=8,
                 on_message=None, tick_ms=1000, max_packet=MAX_PACKET):
        self.hal = hal                # ticks_ms(), ticks_diff(a, b), async sleep_ms(ms)
        self.client_id = client_id
        self.user = user
        self.password = password
        self.keepalive_s = keepalive_s
        self.window = window          # most unacked QoS 1 PUBLISHes at once
        self.on_message = on_message  # sync callable(topic, payload, retain, dup)
        self.tick_ms = tick_ms        # resolution of every timeout and of the keepalive
        self.max_packet = max_packet
        self.will = None              # (topic, payload, qos, retain), read at connect()
        self.connected = False
        self.session_present = False
        self.error = None             # why the current connection broke
        self.resent = 0               # PUBLISHes re-sent with DUP after a reconnect
        self.counters = {}            # odd but survivable input, by code
        self._inflight = []           # [pid, packet (bytearray), tag], oldest first
        self._pid = 0
        self._reader = None
        self._writer = None
        self._tasks = []
        self._ev = asyncio.Event()    # "something changed": packet in, tick, wake()
        self._lock = asyncio.Lock()   # one writer at a time (see module doc)
        self._connack = None
        self._subacks = {}            # pid -> return codes (None while waiting)
        self._last_rx = 0
        self._last_tx = 0
        self._ping_at = None          # ticks of the unanswered PINGREQ

    # -- state

    def window_free(self):
        return self.window - len(self._inflight)

    def inflight_count(self):
        return len(self._inflight)

    def inflight_tags(self):
        return [e[2] for e in self._inflight]

    def _count(self, code):
        self.counters[code] = self.counters.get(code, 0) + 1

    def _next_pid(self):
        while True:
            self._pid = self._pid % 65535 + 1
            pid = self._pid
            if pid in self._subacks:
                continue
            for e in self._inflight:
                if e[0] == pid:
                    break
            else:
                return pid

    # -- connection

    async def connect(self, reader, writer, clean=False, timeout_ms=10000):
        """CONNECT on a fresh stream pair; wait for CONNACK; re-send the in-flight window.
        Returns the broker's session-present flag; raises ConnectRefused or MQTTError."""
        self.close()
        self._reader = reader
        self._writer = writer
        self.error = None
        self._connack = None
        self._subacks = {}
        self._ping_at = None
        self._last_rx = self._last_tx = self.hal.ticks_ms()
        self._tasks = [asyncio.create_task(self._rx_loop()), asyncio.create_task(self._ticker())]
        w = self.will
        if w is None:
            pkt = connect_packet(self.client_id, self.keepalive_s, clean, self.user, self.password)
        else:
            pkt = connect_packet(self.client_id, self.keepalive_s, clean, self.user, self.password,
                                 w[0], w[1], w[2], w[3])
        await self._send(pkt)
        await self._wait_for(self._have_connack, timeout_ms, "CONNACK")
        sp, rc = self._connack
        if rc:
            raise ConnectRefused(rc)
        self.session_present = sp
        self.connected = True
        # Same packet ids, DUP set, oldest first, before anything new (3.1.1 section 4.4).
        for e in self._inflight:
            e[1][0] |= 0x08
            await self._send(e[1])
            self.resent += 1
        return sp

    def _have_connack(self):
        return self._connack is not None

    def close(self):
        """Drop the connection at once, without DISCONNECT (so the broker sends our will)."""
        self.connected = False
        for t in self._tasks:
            t.cancel()
        self._tasks = []
        w = self._writer
        self._reader = self._writer = None
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

    # -- operations

    async def publish(self, topic, payload, qos=0, retain=False, tag=None):
        """QoS 0: send and forget. QoS 1: wait for a window slot, send, return the packet id;
        the message stays in the window (tag kept with it) until its PUBACK."""
        if not self.connected:
            raise MQTTError("not_connected", "publish while disconnected")
        if qos == 0:
            await self._send(publish_packet(topic, payload, 0, retain))
            return 0
        if qos != 1:
            raise ValueError("only QoS 0 and 1 are supported")
        await self._wait_for(self._window_open, None, "window slot")
        pid = self._next_pid()
        pkt = publish_packet(topic, payload, 1, retain, False, pid)
        self._inflight.append([pid, pkt, tag])  # before sending: a failed send is re-sent later
        await self._send(pkt)
        return pid

    def _window_open(self):
        return len(self._inflight) < self.window

    async def subscribe(self, topic, qos=1, timeout_ms=10000):
        """SUBSCRIBE one filter; returns the granted QoS. A refusal (0x80) raises."""
        pid = self._next_pid()
        self._subacks[pid] = None
        await self._send(subscribe_packet(pid, topic, qos))

        def done():
            return self._subacks.get(pid) is not None

        await self._wait_for(done, timeout_ms, "SUBACK")
        codes = self._subacks.pop(pid)
        if codes[0] == 0x80:
            raise MQTTError("sub_refused", "broker refused the subscription to " + topic)
        return codes[0]

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
            raise MQTTError("not_connected", "no connection")
        ka = self.keepalive_s * 1000
        if not ka:
            return
        now = self.hal.ticks_ms()
        half = ka // 2
        if self._ping_at is not None:
            if self.hal.ticks_diff(now, self._ping_at) >= half:
                raise MQTTError("dead", "no PINGRESP within %d ms" % half)
        elif (self.hal.ticks_diff(now, self._last_tx) >= half
              or self.hal.ticks_diff(now, self._last_rx) >= half):
            self._ping_at = now
            await self._send(PINGREQ_PACKET)

    # -- internals

    async def _wait_for(self, cond, timeout_ms, what):
        t0 = self.hal.ticks_ms()
        while not cond():
            if self.error is not None:
                raise self.error
            if self.connected:
                await self.service()
            if timeout_ms is not None and self.hal.ticks_diff(self.hal.ticks_ms(), t0) >= timeout_ms:
                raise MQTTError("timeout", "no %s within %d ms" % (what, timeout_ms))
            await self.wait()

    async def _send(self, pkt):
        w = self._writer
        if w is None:
            raise MQTTError("not_connected", "no connection")
        async with self._lock:
            w.write(pkt)
            await w.drain()
        self._last_tx = self.hal.ticks_ms()

    async def _ticker(self):
        while True:
            await self.hal.sleep_ms(self.tick_ms)
            self._ev.set()

    async def _rx_loop(self):
        try:
            while True:
                first, body, complete = await read_packet(self._reader, self.max_packet)
                self._last_rx = self.hal.ticks_ms()
                if complete:
                    await self._dispatch(decode_packet(first, body))
                else:
                    await self._oversize(first, body)
                self._ev.set()
        except Exception as e:  # the connection is over; the owner sees it in service()
            self.error = e
            self.connected = False
            self._ev.set()

    async def _dispatch(self, p):
        kind = p[0]
        if kind == PUBLISH:
            qos = p[3]
            if qos == 2:
                raise MQTTError("unexpected", "QoS 2 PUBLISH (we subscribe at QoS <= 1)")
            if self.on_message is not None:
                try:
                    self.on_message(p[1], p[2], p[4], p[5])
                except Exception:  # a bad handler must not kill the session
                    self._count("callback_error")
            if qos == 1:  # after handling: at-least-once, never at-most-once
                await self._send(puback_packet(p[6]))
        elif kind == PUBACK:
            pid = p[1]
            for i in range(len(self._inflight)):
                if self._inflight[i][0] == pid:
                    del self._inflight[i]
                    break
            else:
                self._count("unknown_puback")
        elif kind == CONNACK:
            if self._connack is not None:
                raise MQTTError("unexpected", "second CONNACK")
            self._connack = (p[1], p[2])
        elif kind == SUBACK:
            if p[1] in self._subacks:
                self._subacks[p[1]] = p[2]
            else:
                self._count("unknown_suback")
        elif kind == PINGRESP:
            self._ping_at = None
        else:
            self._count("unexpected_unsuback")

    async def _oversize(self, first, head):
        self._count("too_large")
        if first >> 4 != PUBLISH:
            raise MQTTError("too_large", "oversize packet of type %d" % (first >> 4))
        qos = (first >> 1) & 3
        if qos == 1:
            tl = _u16(head, 0)
            if 2 + tl + 2 > len(head):
                raise MQTTError("too_large", "oversize PUBLISH with a long topic")
            await self._send(puback_packet(_u16(head, 2 + tl)))

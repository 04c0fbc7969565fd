"""MQTT 3.1.1 packets: bytes in, bytes out, the same bytes on CPython and MicroPython.

The codec layer of the device's MQTT client (firmware/mqtt/session.py speaks the protocol with it):
encoders for what a client sends (CONNECT, PUBLISH, PUBACK, SUBSCRIBE, PINGREQ, DISCONNECT),
decode_packet for what a broker may send, and read_packet, the framing of an incoming stream.
Modelled on micropython-lib's umqtt.simple (byte-level, no framework). Byte-exact vectors, written
by hand from the specification: tests/firmware_link/link_packet_vectors.py.

Errors are MQTTError (a protocol.errors.ProtocolError) with a stable code: bad_length, bad_flags,
malformed, unexpected, too_large (the peer broke 3.1.1), refused (CONNACK return code, .rc),
sub_refused, timeout, dead (keepalive), closed (the peer closed the stream), not_connected. A
caller's mistake (QoS 2, packet id 0, a string over 65,535 bytes) is a ValueError.
"""

from protocol.errors import ProtocolError

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# Control packet types (high nibble of the first byte): public, the session compares with them.
CONNACK = const(2)
PUBLISH = const(3)
PUBACK = const(4)
SUBACK = const(9)
UNSUBACK = const(11)
PINGRESP = const(13)

_MAX_PACKET = const(4096)         # largest incoming packet we buffer (v1 payloads are <= 1024 bytes)
_MAX_LENGTH = const(268435455)  # 4-byte remaining length limit of MQTT 3.1.1

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"


class MQTTError(ProtocolError):
    """Any MQTT-level failure (codes in the module's docstring); args = (code, detail[, rc])."""

    def __init__(self, code, detail="", *rc):
        super().__init__(detail, code, *rc)

    @property
    def rc(self):
        return self.args[2]


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


# CONNACK return codes 1..5 (3.1.1 table 3.1), for the refusal's detail.
_REASONS = const(("unacceptable protocol version", "identifier rejected", "server unavailable",
                  "bad user name or password", "not authorized"))


def connect_refused(rc):
    """The error for a CONNACK with the non-zero return code rc: code "refused", .rc = rc."""
    why = _REASONS[rc - 1] if 0 < rc <= 5 else "reserved code"
    return MQTTError("refused", "CONNACK %d: %s" % (rc, why), rc)


def connect_packet(client_id, keepalive_s=60, clean=False, user=None, password=None, will=None):
    """CONNECT; will is None or (topic, payload, qos, retain), as Session.will."""
    flags = 2 if clean else 0
    payload = _str(client_id)
    if will is not None:
        flags |= 4 | (will[2] << 3) | (0x20 if will[3] else 0)
        payload += _str(will[0]) + _str(will[1])
    if user is not None:
        flags |= 0x80
        payload += _str(user)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
    elif password is not None:
        raise ValueError("password without user")
    return _packet(0x10, b"\x00\x04MQTT\x04" + bytes((flags, keepalive_s >> 8, keepalive_s & 0xFF))
                   + payload)


def subscribe_packet(pid, topic, qos=1):
    if not 0 < pid < 65536:
        raise ValueError("packet id out of range")
    return _packet(0x82, bytes((pid >> 8, pid & 0xFF)) + _str(topic) + bytes((qos,)))


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
    if kind == PUBLISH:
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
        return (PUBLISH, topic, bytes(body[end:]), qos, bool(first & 1), bool(first & 8), pid)
    want = (CONNACK, PUBACK, UNSUBACK, PINGRESP, SUBACK)
    if kind not in want:
        raise MQTTError("unexpected", "packet type %d" % kind)
    if first != kind << 4:             # these packets have no flags
        raise MQTTError("bad_flags", "first byte 0x%02x" % first)
    if n < 3 if kind == SUBACK else n != (0 if kind == PINGRESP else 2):
        raise MQTTError("bad_length", "type %d, %d bytes" % (kind, n))
    if kind == PINGRESP:
        return (PINGRESP,)
    pid = (body[0] << 8) | body[1]
    if kind == CONNACK:
        if body[0] & 0xFE or (body[0] and body[1]):
            raise MQTTError("malformed", "CONNACK flags")
        return (CONNACK, bool(body[0]), body[1])
    if kind == SUBACK:
        codes = list(body[2:])
        for c in codes:
            if c not in (0, 1, 2, 0x80):
                raise MQTTError("malformed", "SUBACK code 0x%02x" % c)
        return (SUBACK, pid, codes)
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

"""The MQTT 3.1.1 handshake, once per connection: CONNECT -> CONNACK (then the in-flight window
re-sent) and SUBSCRIBE -> SUBACK, with their packet encoders.

Apart from firmware/mqtt.py so the device holds this code only while a connection comes up:
MQTTClient.connect/subscribe import it, and Link._session unloads it with firmware.linkup after
the handshake (firmware.unload). Same bytes on CPython and MicroPython.
"""

import asyncio

from firmware.mqtt import MQTTError, _packet, _str

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_CONNACK = const(2)
_SUBACK = const(9)

# CONNACK return codes 1..5 (3.1.1 table 3.1), for the refusal's detail.
_REASONS = const(("unacceptable protocol version", "identifier rejected", "server unavailable",
                  "bad user name or password", "not authorized"))


def ConnectRefused(rc):  # noqa: N802 - was a class; an MQTTError with code "refused" and rc
    """The broker answered CONNACK with a non-zero return code rc."""
    why = _REASONS[rc - 1] if 0 < rc <= 5 else "reserved code"
    return MQTTError("refused", "CONNACK %d: %s" % (rc, why), rc)


def connect_packet(client_id, keepalive_s=60, clean=False, user=None, password=None, will=None):
    """CONNECT; will is None or (topic, payload, qos, retain), as MQTTClient.will."""
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


async def connect(c, reader, writer, clean, timeout_ms):
    """MQTTClient.connect: see there."""
    c.close()
    c._writer = writer
    c.error = None
    c._got = None
    c._ping_at = None
    c._last_rx = c._last_tx = c.hal.ticks_ms()
    c._tasks = (asyncio.create_task(c._rx_loop(reader)), asyncio.create_task(c._ticker()))
    await c._send(connect_packet(c.client_id, c.keepalive_s, clean, c.user, c.password, c.will))
    await c._wait_for(_CONNACK, timeout_ms)
    sp, rc = c._got
    if rc:
        raise ConnectRefused(rc)
    c.connected = True
    # Same packet ids, DUP set, oldest first, before anything new (3.1.1 section 4.4).
    for e in c._inflight:
        e[1][0] |= 0x08
        await c._send(e[1])
        c.resent += 1
    return sp


async def subscribe(c, topic, qos, timeout_ms):
    """MQTTClient.subscribe: see there."""
    pid = c._next_pid()
    c._got = pid
    await c._send(subscribe_packet(pid, topic, qos))
    await c._wait_for(_SUBACK, timeout_ms)
    code = c._got[0]
    c._got = None
    if code == 0x80:
        raise MQTTError("sub_refused", topic)
    return code

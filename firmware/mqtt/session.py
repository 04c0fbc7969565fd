"""The device's MQTT 3.1.1 session: the protocol over one asyncio stream pair at a time.

The middle layer of the MQTT client, as MQTT_base is in Peter Hinch's mqtt_as: below it the packet
codec (firmware/mqtt/packets.py), above it the connectivity (firmware/mqtt/client.py: Wi-Fi,
TCP/TLS, backoff and reconnect). Runs unchanged on MicroPython 1.27 and CPython 3.11 (asyncio
streams); the simulator runs ~1,000 of these in one CPython process, so a session is two small
tasks (a reader and a ticker), one Event and one Lock.

The rules, written down:
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
- Incoming QoS 1: handled first, PUBACKed after (at-least-once). QoS 2 is a protocol error (we
  subscribe at QoS 1). A packet over 4,096 bytes is read and thrown away, counted too_large and,
  if it was a QoS 1 PUBLISH, PUBACKed, so the broker does not redeliver it forever.
"""

import asyncio

from firmware.mqtt.packets import (
    CONNACK,
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    PINGRESP,
    PUBACK,
    PUBLISH,
    SUBACK,
    MQTTError,
    connect_packet,
    connect_refused,
    decode_packet,
    puback_packet,
    publish_packet,
    read_packet,
    subscribe_packet,
)


class Session:
    """One device's MQTT session, over one asyncio stream pair at a time.

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
        Returns the broker's session-present flag; raises MQTTError (code refused, timeout...)."""
        self.close()
        self._writer = writer
        self.error = None
        self._got = None
        self._ping_at = None
        self._last_rx = self._last_tx = self.hal.ticks_ms()
        self._tasks = (asyncio.create_task(self._rx_loop(reader)), asyncio.create_task(self._ticker()))
        await self._send(connect_packet(self.client_id, self.keepalive_s, clean, self.user, self.password,
                                        self.will))
        await self._wait_for(CONNACK, timeout_ms)
        sp, rc = self._got
        if rc:
            raise connect_refused(rc)
        self.connected = True
        # Same packet ids, DUP set, oldest first, before anything new (3.1.1 section 4.4).
        for e in self._inflight:
            e[1][0] |= 0x08
            await self._send(e[1])
            self.resent += 1
        return sp

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
                # MicroPython's Stream.close() does nothing (its socket closes in wait_closed()):
                # without this an ESP32 would leak a socket per reconnect.
                s = getattr(w, "s", None)
                if s is not None:
                    s.close()
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
        await self._wait_for(PUBACK, None)
        pid = self._next_pid()
        pkt = publish_packet(topic, payload, 1, retain, False, pid)
        self._inflight.append([pid, pkt, tag])  # before sending: a failed send is re-sent later
        await self._send(pkt)
        return pid

    async def subscribe(self, topic, qos=1, timeout_ms=10000):
        """SUBSCRIBE one filter; returns the granted QoS. A refusal (0x80) raises (code
        sub_refused)."""
        pid = self._next_pid()
        self._got = pid
        await self._send(subscribe_packet(pid, topic, qos))
        await self._wait_for(SUBACK, timeout_ms)
        code = self._got[0]
        self._got = None
        if code == 0x80:
            raise MQTTError("sub_refused", topic)
        return code

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
        # what: CONNACK (the CONNACK is in), SUBACK (the SUBACK's codes are in), PUBACK (a
        # window slot is free)
        t0 = self.hal.ticks_ms()
        while True:
            got = self._got
            if what == PUBACK:
                if len(self._inflight) < self.window:
                    return
            elif type(got) is (tuple if what == CONNACK else list):
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
            if first >> 4 != PUBLISH:
                raise MQTTError("too_large", "packet type %d" % (first >> 4))
            if (first >> 1) & 3 != 1:
                return 0
            tl = (body[0] << 8) | body[1]
            if 2 + tl + 2 > len(body):
                raise MQTTError("too_large", "topic too long")
            return (body[2 + tl] << 8) | body[3 + tl]
        p = decode_packet(first, body)
        kind = p[0]
        if kind == PUBLISH:
            if p[3] == 2:
                raise MQTTError("unexpected", "QoS 2 PUBLISH")
            if self.on_message is not None:
                try:
                    self.on_message(p[1], p[2], p[4], p[5])
                except Exception:  # a bad handler must not kill the session
                    self._count("callback_error")
            return p[6]
        if kind == PUBACK:
            for e in self._inflight:
                if e[0] == p[1]:
                    self._inflight.remove(e)
                    return 0
            self._count("unknown_puback")
        elif kind == CONNACK:
            if self._got is not None:
                raise MQTTError("unexpected", "second CONNACK")
            self._got = (p[1], p[2])
        elif kind == SUBACK:
            if self._got == p[1]:
                self._got = p[2]
            else:
                self._count("unknown_suback")
        elif kind == PINGRESP:
            self._ping_at = None
        else:
            self._count("unexpected_unsuback")
        return 0

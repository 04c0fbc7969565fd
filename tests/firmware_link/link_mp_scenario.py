"""The MQTT client's asyncio code on an in-memory stream pair, against an in-process scripted
broker. Runs unchanged under MicroPython 1.27 (wasm: no sockets) and CPython; main() returns
a dict of observations that the test compares with the expected ones.
"""

try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

from firmware.mqtt import packets as mqtt
from firmware.mqtt.session import Session


class Clock:
    """The HAL's time functions on the interpreter's own ms ticks."""

    def __init__(self):
        try:
            import time
            self._ticks = time.ticks_ms
            self._diff = time.ticks_diff
        except AttributeError:  # CPython
            import time
            self._ticks = lambda: int(time.monotonic() * 1000)
            self._diff = lambda a, b: a - b

    def ticks_ms(self):
        return self._ticks()

    def ticks_diff(self, a, b):
        return self._diff(a, b)

    async def sleep_ms(self, ms):
        await asyncio.sleep(ms / 1000)


class Pipe:
    """One direction of a TCP connection: the reading half of an asyncio stream."""

    def __init__(self):
        self.buf = bytearray()
        self.ev = asyncio.Event()
        self.eof = False

    def feed(self, data):
        self.buf += data
        self.ev.set()

    def close(self):
        self.eof = True
        self.ev.set()

    async def readexactly(self, n):
        while len(self.buf) < n:
            if self.eof:
                raise EOFError("eof")
            self.ev.clear()
            await self.ev.wait()
        out = bytes(self.buf[:n])
        self.buf = self.buf[n:]
        return out

    async def read(self, n):
        while not self.buf:
            if self.eof:
                return b""
            self.ev.clear()
            await self.ev.wait()
        out = bytes(self.buf[:n])
        self.buf = self.buf[n:]
        return out


class Writer:
    def __init__(self, pipe):
        self.pipe = pipe
        self.closed = False

    def write(self, data):
        if self.closed:
            raise OSError(32, "closed")
        self.pipe.feed(bytes(data))

    async def drain(self):
        await asyncio.sleep(0)

    def close(self):
        self.closed = True
        self.pipe.close()


class FakeBroker:
    """Reads what the client writes and answers like mosquitto would, minus withheld PUBACKs."""

    def __init__(self):
        self.seen = []            # (connection, first byte, body hex) in order
        self.conn = 0
        self.withhold_puback = False
        self.to_client = None

    def connect(self):
        """A new TCP connection: returns the client's (reader, writer)."""
        self.conn += 1
        up = Pipe()
        down = Pipe()
        self.to_client = down
        asyncio.create_task(self._serve(up, Writer(down), self.conn))
        return down, Writer(up)

    def cut(self):
        self.to_client.close()

    async def _serve(self, r, w, conn):
        try:
            while True:
                first, body, _ = await mqtt.read_packet(r)
                self.seen.append((conn, first, bytes(body)))
                kind = first >> 4
                if kind == 1:
                    w.write(b"\x20\x02\x01\x00" if conn > 1 else b"\x20\x02\x00\x00")
                elif kind == 8:
                    w.write(b"\x90\x03" + bytes(body[:2]) + b"\x01")
                elif kind == 3 and (first >> 1) & 3 == 1 and not self.withhold_puback:
                    tl = (body[0] << 8) | body[1]
                    w.write(b"\x40\x02" + bytes(body[2 + tl:4 + tl]))
                elif kind == 12:
                    w.write(b"\xd0\x00")
        except Exception:
            pass

    def send(self, pkt):
        self.to_client.feed(pkt)


async def until(cond, limit_ms=3000):
    clock = Clock()
    t0 = clock.ticks_ms()
    while not cond():
        if clock.ticks_diff(clock.ticks_ms(), t0) > limit_ms:
            raise AssertionError("timed out")
        await asyncio.sleep(0.005)


def _pubs(broker, conn):
    return [mqtt.decode_packet(f, b) for (n, f, b) in broker.seen if n == conn and f >> 4 == 3]


def _hex(b):
    import binascii
    return binascii.hexlify(bytes(b)).decode()


async def main():
    out = {}
    got = []
    broker = FakeBroker()
    c = Session(Clock(), "dev-1", user="dev-1", password="pw", keepalive_s=30, window=2,
                        on_message=lambda t, p, r, d: got.append((t, bytes(p), d)), tick_ms=20)
    c.will = ("hcp/1/up/dev-1/status", b"off", 1, True)
    r, w = broker.connect()
    out["session_present_1"] = await c.connect(r, w)
    out["connect_bytes"] = _hex(bytes((broker.seen[0][1],)) + mqtt.encode_length(len(broker.seen[0][2]))
                                + broker.seen[0][2])
    out["granted"] = await c.subscribe("hcp/1/down/dev-1/+", 1)
    # Window of 2: with PUBACKs held back, a third publish waits until a slot frees.
    broker.withhold_puback = True
    await c.publish("hcp/1/up/dev-1/rec", b"r0", 1, False, 0)
    await c.publish("hcp/1/up/dev-1/rec", b"r1", 1, False, 1)
    third = asyncio.create_task(c.publish("hcp/1/up/dev-1/rec", b"r2", 1, False, 2))
    await asyncio.sleep(0.1)
    out["blocked_at_window"] = [c.inflight_count(), len(_pubs(broker, 1))]
    broker.withhold_puback = False
    broker.send(mqtt.puback_packet(_pubs(broker, 1)[0][6]))
    await until(lambda: len(_pubs(broker, 1)) == 3)
    broker.send(mqtt.puback_packet(_pubs(broker, 1)[1][6]))
    await until(lambda: c.inflight_count() == 0)
    await third
    out["pubs"] = [(p[1], p[2].decode(), p[3], p[5], p[6]) for p in _pubs(broker, 1)]
    # A QoS 1 command from the broker: delivered, then PUBACKed.
    broker.send(bytes(mqtt.publish_packet("hcp/1/down/dev-1/ack", b"cmd", 1, False, False, 77)))
    await until(lambda: any(f == 0x40 for (_, f, _) in broker.seen))
    out["got"] = [(t, p.decode(), d) for (t, p, d) in got]
    out["puback_sent"] = [_hex(b) for (_, f, b) in broker.seen if f == 0x40]
    # An oversize PUBLISH is skipped and PUBACKed; the stream stays in sync.
    broker.send(bytes(mqtt.publish_packet("hcp/1/down/dev-1/x", b"z" * 5000, 1, False, False, 78)))
    broker.send(bytes(mqtt.publish_packet("hcp/1/down/dev-1/y", b"after", 0)))
    await until(lambda: len(got) == 2)
    out["after_oversize"] = got[1][1].decode()
    out["counters"] = c.counters
    # Connection lost with a PUBLISH unacked: re-sent with DUP and the same id on reconnect.
    broker.withhold_puback = True
    await c.publish("hcp/1/up/dev-1/rec", b"lost", 1, False, "L")
    broker.cut()
    await until(lambda: c.error is not None)
    try:
        await c.service()
        out["service_after_cut"] = "no error"
    except mqtt.MQTTError as e:
        out["service_after_cut"] = e.code
    out["tags_in_flight"] = c.inflight_tags()
    broker.withhold_puback = False
    r, w = broker.connect()
    out["session_present_2"] = await c.connect(r, w)
    await until(lambda: c.inflight_count() == 0)
    out["resent"] = [(p[2].decode(), p[5], p[6]) for p in _pubs(broker, 2)]
    out["lost_pid"] = [p[6] for p in _pubs(broker, 1) if p[2] == b"lost"]
    await c.disconnect()
    out["last_packet"] = "%02x" % broker.seen[-1][1]
    return out

"""The whole device image running: firmware + link + MQTT client + protocol, under MicroPython
1.27 (wasm) or CPython, on the host HAL and a manual virtual clock.

bench/firmware_memory.py (and so tests/firmware/test_fw_memory.py) imports this driver before
it takes its heap baseline; the firmware and the protocol are imported only when the device
boots, so they land on the measured side. The wasm build has no sockets, so the link's TCP
connection is an in-memory stream pair to a stand-in broker + gateway (StandIn) that answers
like mosquitto and the gateway would: CONNACK, SUBACK, PINGRESP, PUBACK, and a signed `ack`
for every `rec`. The gateway side also sends the commands (paired, time, invite) over MQTT,
signed with the device key, so every press travels the real path:
    button -> app -> journal -> link -> MQTT -> stand-in -> signed ack -> link -> journal.ack
Its per-connection state (two stream buffers, one task) is counted in the measured heap; it is
about what a real TCP stream object costs on the device.

Time: the device's clock is the host HAL's manual VirtualClock, moved only by this driver.
hal.sleep_ms is replaced by a sleeper woken when the driver moves the clock past its due time
(the wasm asyncio runs ready tasks until none is ready before it returns to JS, so a task that
re-arms a zero sleep would spin forever).
"""

try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

import json

from fw_root import SCAN, WALL, check, make_root

_SETTLE_YIELDS = 40        # a press's whole round trip takes 1-3 yields; more means it is stuck

# What a hall's window system sends: Chinese item names and case numbers, a Chinese clerk name.
# The device signs, verifies and shows such text all day, so the measured run does too.
ITEMS = ("不动产登记", "社会保障卡补办", "营业执照变更登记", "居民身份证换领", "机动车驾驶证审验",
         "个体工商户设立登记", "医疗保险关系转移接续", "住房公积金提取", "出入境证件办理",
         "税务登记信息变更", "残疾人证核发", "婚姻登记")
CLERK = "张晓梅"


class Pipe:
    """One direction of a TCP connection: the reading half of an asyncio stream."""

    def __init__(self):
        self.buf = b""
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
        out = self.buf[:n]
        self.buf = self.buf[n:]
        return out

    async def read(self, n):
        while not self.buf:
            if self.eof:
                return b""
            self.ev.clear()
            await self.ev.wait()
        return await self.readexactly(min(n, len(self.buf)))


class Writer:
    def __init__(self, pipe):
        self.pipe = pipe

    def write(self, data):
        if self.pipe.eof:
            raise OSError(32, "closed")
        self.pipe.feed(bytes(data))

    async def drain(self):
        pass

    def close(self):
        self.pipe.close()


class Sleeper:
    """hal.sleep_ms on a manual clock: a sleeping task wakes when advance() passes its due time."""

    def __init__(self, clock):
        self.clock = clock
        self.waiting = []          # [due ms, Event]

    async def sleep_ms(self, ms):
        ev = asyncio.Event()
        self.waiting.append([self.clock.now() + ms, ev])
        await ev.wait()

    def advance(self, ms):
        self.clock.advance(ms)
        now = self.clock.now()
        keep = []
        for w in self.waiting:
            if w[0] <= now:
                w[1].set()
            else:
                keep.append(w)
        self.waiting = keep


class StandIn:
    """Broker + gateway for one device: the packets mosquitto sends, the commands and the signed
    acks the gateway sends. Imports only modules the device has loaded already."""

    def __init__(self):
        self.key = None            # the device key, set by the driver once the firmware booted
        self.device = ""
        self.boot = 0
        self.n = 0                 # the gateway's command counter in this boot
        self.pid = 0
        self.recs = 0
        self.hello = 0
        self.to_dev = None         # Writer to the device, while connected

    # -- the Net the link opens
    def is_up(self):
        return True

    def rssi(self):
        return -55

    async def open(self, host, port):
        up = Pipe()
        down = Pipe()
        self.to_dev = Writer(down)
        asyncio.create_task(self._serve(up, self.to_dev))
        return down, Writer(up)

    # -- the broker
    async def _serve(self, r, w):
        from firmware.mqtt import packets as mqtt
        try:
            while True:
                first, body, _ = await mqtt.read_packet(r)
                kind = first >> 4
                if kind == 1:
                    w.write(b"\x20\x02\x00\x00")
                elif kind == 8:
                    w.write(b"\x90\x03" + body[:2] + b"\x01")
                elif kind == 12:
                    w.write(b"\xd0\x00")
                elif kind == 3:
                    qos = (first >> 1) & 3
                    tl = (body[0] << 8) | body[1]
                    pos = 2 + tl + (2 if qos else 0)
                    if qos:
                        w.write(b"\x40\x02" + body[2 + tl:pos])
                    self._gateway(json.loads(body[pos:]))
        except Exception as e:   # the device closed the connection
            if not isinstance(e, (EOFError, OSError)) and getattr(e, "code", "") != "closed":
                raise

    # -- the gateway
    def _gateway(self, m):
        t = m["t"]
        if t == "hello":
            self.hello += 1
            self.boot = m["b"]
            self.n = 0
            self.command({"t": "paired", "win": "W01", "clerk": CLERK})
        elif t == "treq":
            self.command({"t": "time", "w": WALL, "u": m["u"]})
        elif t == "rec":
            self.recs += 1
            self.command({"t": "ack", "a": [[m["rb"], m["rs"]]]})

    def command(self, m):
        from firmware.mqtt import packets as mqtt
        from protocol import messages, topics
        self.n += 1
        m["d"] = self.device
        m["b"] = self.boot
        m["n"] = self.n
        self.pid = self.pid % 65535 + 1
        self.to_dev.write(mqtt.publish_packet(topics.down(self.device, m["t"]),
                                              messages.sign(m, self.key), 1, False, False, self.pid))


class ImageRun:
    """One evaluator, its link connected to the stand-in, pressed through every record kind;
    the stand-in acks each record as the gateway would."""

    def __init__(self, root):
        from firmware.hal.host import HostHal, VirtualClock
        from firmware.main import Firmware
        make_root(root)
        self.gw = StandIn()
        clock = VirtualClock()
        self.sleeper = Sleeper(clock)
        # the host HAL's event recorder is test instrumentation (the ESP32 HAL has none):
        # keep it to a few entries so the heap measured is the firmware's
        self.hal = HostHal(root=root, clock=clock, durable=False, max_events=8, net=self.gw)
        self.hal.sleep_ms = self.sleeper.sleep_ms
        self.fw = Firmware(self.hal)
        self.gw.device = self.fw.cfg.device_id
        link = self.fw.start_link()
        check(link is not None, "the link is installed")
        self.link = link
        self.gw.key = link.key
        self.task = asyncio.create_task(link.run())
        self.k = 0
        self.inv = 0

    async def settle(self, cond):
        for _ in range(_SETTLE_YIELDS):
            if cond():
                return
            await asyncio.sleep(0)
        check(cond(), "the device did not settle (link %s, journal %d, in flight %d)" % (
            self.link.client.last_error, self.fw.journal.depth(), self.link.inflight()))

    def _delivered(self):
        return self.fw.journal.depth() == 0 and self.link.inflight() == 0

    async def start(self):
        app = self.fw.app
        await self.settle(lambda: self.link.connected and app.state == "idle" and app.clock.synced)

    async def invite(self):
        self.inv += 1
        inv = "inv-%d" % self.inv
        self.gw.command({"t": "invite", "i": inv, "case": "琼政办%08d" % self.inv,
                         "item": ITEMS[self.inv % len(ITEMS)], "cd": 60})
        app = self.fw.app
        await self.settle(lambda: app.inv == inv)

    def advance(self, ms):
        self.sleeper.advance(ms)
        self.fw.step()

    async def presses(self, n):
        hal = self.hal
        for _ in range(n):
            self.k += 1
            k = self.k
            m = k % 10
            if m < 6:
                await self.invite()
            hal.press(k % 5)                   # down, scanned, up, debounce, scanned
            self.advance(SCAN)
            hal.release(k % 5)
            self.advance(60)
            if m == 6:
                self.sleeper.advance(1000)     # the next press falls in the cooldown: extra
            else:
                self.advance(8100)
            if m == 9:
                await self.invite()
                self.advance(61000)            # countdown runs out: unrated
            await self.settle(self._delivered)

    async def finish(self):
        await self.settle(self._delivered)
        fw = self.fw
        link = self.link
        check(fw.app.lost == 0, "no press lost")
        check(link.rejected == {}, "no command rejected: %r" % (link.rejected,))
        check(link.client.reconnects == 0, "one connection: %r" % (link.client.errors,))
        total = 0
        for kind in fw.app.counts:
            total += fw.app.counts[kind]
        check(self.gw.recs == total and link.records_acked == total,
              "every record sent once and acked once: %d %d %d" % (total, self.gw.recs, link.records_acked))
        out = {"presses": self.k, "records": total, "counts": fw.app.counts,
               "journal": fw.journal.stats(), "sent": link.records_sent, "acked": link.records_acked}
        self.task.cancel()
        link.close()
        await asyncio.sleep(0)
        fw.journal.close()
        return out

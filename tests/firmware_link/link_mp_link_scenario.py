"""firmware.link.Link on MicroPython (and CPython): host HAL, the real journal on the
interpreter's filesystem, and an in-process broker+gateway that PUBACKs and answers each `rec`
with an `ack` command signed by the device key. main(root) returns observations."""

try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

import gc
import os

from link_mp_scenario import Pipe, Writer

from firmware.clock import Clock
from firmware.hal.host import HostHal, VirtualClock
from firmware.journal import Journal
from firmware.link import Link
from firmware.mqtt import packets as mqtt
from protocol import messages, topics
from protocol.auth import Key

SECRET = "5a" * 32
DEV = "dev-1"
BOOT = 3


class App:
    def __init__(self, hal):
        self.clock = Clock(hal)
        self.safe = False
        self.links = []
        self.commands = []

    def on_link(self, up):
        self.links.append(up)

    def on_command(self, m):
        self.commands.append(m["t"])

    def state_name(self):
        return "idle"


class Net:
    def __init__(self, gw):
        self.gw = gw

    def is_up(self):
        return True

    def rssi(self):
        return -60

    async def open(self, host, port):
        return self.gw.connect()


class BrokerGateway:
    def __init__(self):
        self.key = Key(SECRET)
        self.up = []              # decoded uplink messages in arrival order
        self.n = 0
        self.peak = 0
        self.inflight = 0

    def connect(self):
        up = Pipe()
        down = Pipe()
        asyncio.create_task(self._serve(up, Writer(down)))
        return down, Writer(up)

    async def _serve(self, r, w):
        try:
            await self._loop(r, w)
        except mqtt.MQTTError:  # the link closed the connection: the test is over
            pass

    async def _loop(self, r, w):
        while True:
            first, body, _ = await mqtt.read_packet(r)
            kind = first >> 4
            if kind == 1:
                w.write(b"\x20\x02\x00\x00")
            elif kind == 8:
                w.write(b"\x90\x03" + bytes(body[:2]) + b"\x01")
            elif kind == 3:
                p = mqtt.decode_packet(first, body)
                m = messages.decode(p[2], self.key, p[1])
                self.up.append(m)
                if p[3] == 1:
                    w.write(mqtt.puback_packet(p[6]))
                if m["t"] == "rec":
                    self.n += 1
                    ack = {"t": "ack", "d": DEV, "b": BOOT, "n": self.n, "a": [[m["rb"], m["rs"]]]}
                    w.write(mqtt.publish_packet(topics.down(DEV, "ack"), messages.sign(ack, self.key),
                                                1, False, False, self.n))
            elif kind == 12:
                w.write(b"\xd0\x00")
            await asyncio.sleep(0)


async def main(root):
    try:
        os.mkdir(root)
    except OSError:
        pass
    gw = BrokerGateway()
    hal = HostHal(root=root, clock=VirtualClock(speed=1), net=Net(gw))
    j = Journal(hal).open()
    j.begin(BOOT)
    for i in range(20):
        j.append("walkup", "s", "", 0, 100 + i)
    app = App(hal)
    cfg = {"device_id": DEV, "hb_s": 180, "cfg": 1, "broker": {"host": "x", "port": 1, "password": "pw"}}
    key = Key(SECRET)
    gc.collect()
    before = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0
    link = Link(hal, cfg, key, BOOT, j, app)
    gc.collect()
    link_heap = (gc.mem_alloc() - before) if hasattr(gc, "mem_alloc") else 0
    task = asyncio.create_task(link.run())
    peak = 0
    for _ in range(2000):
        peak = max(peak, link.inflight())
        if j.depth() == 0 and link.records_acked == 20:
            break
        await asyncio.sleep(0.002)
    task.cancel()
    link.close()
    await asyncio.sleep(0)
    recs = [m for m in gw.up if m["t"] == "rec"]
    return {
        "first_types": [m["t"] for m in gw.up[:3]],
        "status": [m["s"] for m in gw.up if m["t"] == "status"],
        "rec_order": [m["rs"] for m in recs],
        "depth": j.depth(),
        "acked": link.records_acked,
        "peak_ok": peak <= 8,
        "links": app.links,
        "rejected": link.rejected,
        "link_heap": link_heap,
        "n_unique": len(set([m["n"] for m in gw.up])) == len(gw.up),
    }

"""The link's rare work: its construction (init, once per boot), and between connections and
bringing the next one up: the last connection's error noted, a jittered backoff, the Wi-Fi wait,
then TCP (bounded in HAL time), CONNECT with the will, SUBSCRIBE to the commands, status online,
hello. Steps 1-3 and 5 of "One connection" in docs/firmware_link.md.

Link.__init__ (through firmware.rare) and Link._session import this module for the call and
unload it right after, so its bytecode is not in the device's RAM while connected.
"""

import asyncio
import random

import firmware
from firmware.link import _get
from firmware.mqtt import MQTTClient, MQTTError
from protocol import topics
from protocol.auth import ReplayWindow

try:
    from micropython import const
except ImportError:          # CPython
    def const(x):
        return x

_WIFI_MIN_MS = const(4000)   # a Wi-Fi association takes seconds: do not restart it sooner


def init(link, hal, cfg, key, boot, journal, app):
    """Link.__init__ (once per boot): its configuration, counters and MQTT client."""
    link.hal = hal
    link.cfg = cfg
    link.key = key
    link.boot = boot
    link.journal = journal
    link.app = app
    dev = _get(cfg, "device_id")
    link.device = dev
    broker = _get(cfg, "broker") or {}
    link.host = broker.get("host", "127.0.0.1")
    link.port = broker.get("port", 1883)
    link.fw = firmware.VERSION
    link.keepalive_s = _get(cfg, "keepalive_s", 60)
    # State visible to the app, the heartbeat and the tests.
    link.connected = False
    link.reconnects = 0
    link.conn_no = 0                 # connections attempted in this boot ("c" of status)
    link.rejected = {}               # dropped commands by error code
    link.errors = {}                 # broken connections by error code
    link.last_error = ""
    link.records_sent = 0
    link.records_acked = 0
    link.ack_timeouts = 0
    link._n = 0                      # per-boot message counter ("n" of every message)
    link._replay = ReplayWindow()
    link._sent = {}                  # (rb, rs) -> True: published on this connection, no ack yet
    link._bad = {}                   # (rb, rs) the protocol refuses to sign: kept, counted, skipped
    link._more = True                # the journal may hold records not yet sent
    link._attempt = 0                # failed attempts since the last good connection
    link._ack_at = 0
    link._hb_at = 0
    link._treq_at = 0
    link._t_status = topics.up(dev, "status")
    link._t_rec = topics.up(dev, "rec")
    link._client = MQTTClient(hal, dev, user=dev, password=broker.get("password"),
                              keepalive_s=link.keepalive_s, window=link.window,
                              on_message=link._on_message)


async def connect(link, ended):
    """ended: the exception that ended the last connection (None before the first one)."""
    if ended is not None:
        note_error(link, ended)
        link.reconnects += 1
        await link.hal.sleep_ms(backoff_ms(link))
    await _wait_net(link)
    c = link._client
    c.keepalive_s = link.keepalive_s
    c.window = link.window
    reader, writer = await _open(link)
    link.conn_no += 1
    c.will = (link._t_status, link._sign("status", {"s": "offline", "c": link.conn_no}), 1, True)
    await c.connect(reader, writer, False, link.connect_timeout_ms)
    reader = writer = None
    # Records still in the window are being re-sent (DUP) by the client; every other unacked
    # record goes again, oldest first.
    link._resend_unacked()
    await c.subscribe(topics.device_sub(link.device), 1, link.connect_timeout_ms)
    await c.publish(link._t_status, link._sign("status", {"s": "online", "c": link.conn_no}), 1, True)
    hello = link._sign("hello", {
        "fw": link.fw, "up": link._uptime(), "rst": link._rst(), "cfg": _get(link.cfg, "cfg", 0),
        "jd": link.journal.depth(), "safe": bool(getattr(link.app, "safe", False)),
    })
    await c.publish(topics.up(link.device, "hello"), hello, 1)
    link.connected = True
    link._attempt = 0
    link._tell_app(True)


async def _open(link):
    """hal.net.open() bounded by connect_timeout_ms of HAL time: on an ESP32 a TCP connect to a
    host that does not answer would otherwise wait for the stack's TCP timeout."""
    task = asyncio.create_task(link.hal.net.open(link.host, link.port))
    left = link.connect_timeout_ms
    while True:
        await asyncio.sleep(0)           # let the open run (an in-memory one ends here)
        if task.done():
            return await task
        if left <= 0:
            task.cancel()
            raise MQTTError("timeout", "TCP connect %d ms" % link.connect_timeout_ms)
        await link.hal.sleep_ms(100)
        left -= 100


def note_error(link, e):
    code = getattr(e, "code", None)
    if type(code) is not str:
        code = "oserror" if isinstance(e, OSError) else "error"
    link.errors[code] = link.errors.get(code, 0) + 1
    link.last_error = "%s: %s" % (code, e)
    link.hal.log("link: connection %d ended: %s" % (link.conn_no, link.last_error))


def backoff_ms(link):
    """Full jitter (AWS architecture blog): uniform in [min, min(max, min * 2^attempt)], so a
    hall of devices that lost the broker together does not come back in lockstep."""
    lo = link.backoff_min_ms
    hi = min(link.backoff_max_ms, lo << min(link._attempt, 16))
    link._attempt += 1
    return lo + (((hi - lo) * random.getrandbits(10)) >> 10)


async def _wait_net(link):
    net = link.hal.net
    while not net.is_up():
        connect = getattr(net, "connect", None)
        if connect is not None:
            try:
                connect()
            except Exception as e:
                note_error(link, e)
        wait = max(backoff_ms(link), _WIFI_MIN_MS)
        while wait > 0 and not net.is_up():
            await link.hal.sleep_ms(250)
            wait -= 250

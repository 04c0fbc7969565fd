"""Bringing one connection up: TCP (bounded in HAL time), CONNECT with the will, SUBSCRIBE to the
commands, status online, hello. Steps 1-3 of "One connection" in docs/firmware_link.md.

Once-per-connection code: Link._session imports this module for the handshake and unloads it
right after (firmware.unload), so its bytecode is not in the device's RAM while connected.
"""

try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio  # type: ignore

from firmware.link import _get
from firmware.mqtt import MQTTError
from protocol import topics


async def connect(link):
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
    link._sent = {}
    for tag in c.inflight_tags():
        if tag is not None:
            link._sent[tag] = True
    link._more = True
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

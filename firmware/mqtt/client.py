"""The device's MQTT client: a session (firmware/mqtt/session.py) that keeps itself connected.

The top layer, as MQTTClient over MQTT_base in Peter Hinch's mqtt_as: wait for Wi-Fi, open TCP
(TLS when the config carries the broker's CA) bounded by connect_timeout_ms of HAL time, CONNECT
with the owner's will, let the owner set up its subscriptions and announcements, serve the
connection until it breaks, note why, back off with full jitter, and go again, forever. The
owner (firmware/link.py) only says what to do on each connection:

    owner.will(conn_no)   -> (topic, payload, qos, retain) for this connection's CONNECT
    await owner.up()      after CONNACK: subscribe, announce (raises: the connection is dropped)
    await owner.service() each time something happened while connected (packet, tick, wake())
    owner.down()          after a connection whose up() began has ended (even if up() failed)
"""

import asyncio
import random

from firmware.mqtt.packets import MQTTError
from firmware.mqtt.session import Session

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_WIFI_MIN_MS = const(4000)   # a Wi-Fi association takes seconds: do not restart it sooner


class Client(Session):
    # Tunables the simulator and tests shorten; the device keeps the defaults.
    connect_timeout_ms = 10000       # TCP (and TLS) connect, CONNACK, SUBACK
    backoff_min_ms = 1000
    backoff_max_ms = 60000

    def __init__(self, hal, client_id, host, port, user=None, password=None, ca=None, keepalive_s=60,
                 window=8, on_message=None, tick_ms=1000):
        super().__init__(hal, client_id, user, password, keepalive_s, window, on_message, tick_ms)
        self.host = host
        self.port = port
        self.ca = ca                 # the broker's CA (PEM): TLS with the certificate checked
        self.online = False          # connected and the owner's up() done
        self.conn_no = 0             # connections attempted in this boot
        self.reconnects = 0
        self.errors = {}             # broken connections by error code
        self.last_error = ""
        self._attempt = 0            # failed attempts since the last good connection

    async def run(self, owner):
        ended = None
        while True:
            started = False                  # owner.up() has begun: owner.down() follows, whatever happens
            try:
                if ended is not None:
                    self._note(ended)
                    self.reconnects += 1
                    await self.hal.sleep_ms(self.backoff_ms())
                await self._wait_net()
                reader, writer = await self._open()
                self.conn_no += 1
                self.will = owner.will(self.conn_no)
                await self.connect(reader, writer, False, self.connect_timeout_ms)
                reader = writer = None
                started = True
                await owner.up()
                self.online = True
                self._attempt = 0
                while True:
                    await self.service()
                    await owner.service()
                    await self.wait()
            except Exception as e:  # any failure ends this connection, never the client
                ended = e
            finally:
                self.close()
                self.online = False
                if started:
                    owner.down()

    def backoff_ms(self):
        """Full jitter (AWS architecture blog): uniform in [min, min(max, min * 2^attempt)], so a
        hall of devices that lost the broker together does not come back in lockstep."""
        lo = self.backoff_min_ms
        hi = min(self.backoff_max_ms, lo << min(self._attempt, 16))
        self._attempt += 1
        return lo + (((hi - lo) * random.getrandbits(10)) >> 10)

    def _note(self, e):
        code = getattr(e, "code", None)
        if type(code) is not str:
            code = "oserror" if isinstance(e, OSError) else "error"
        self.errors[code] = self.errors.get(code, 0) + 1
        self.last_error = "%s: %s" % (code, e)
        self.hal.log("mqtt: connection %d ended: %s" % (self.conn_no, self.last_error))

    async def _wait_net(self):
        net = self.hal.net
        while not net.is_up():
            connect = getattr(net, "connect", None)
            if connect is not None:
                try:
                    connect()
                except Exception as e:
                    self._note(e)
            wait = max(self.backoff_ms(), _WIFI_MIN_MS)
            while wait > 0 and not net.is_up():
                await self.hal.sleep_ms(250)
                wait -= 250

    async def _open(self):
        """hal.net.open() bounded by connect_timeout_ms of HAL time: on an ESP32 a TCP connect to a
        host that does not answer would otherwise wait for the stack's TCP timeout."""
        net = self.hal.net
        if self.ca:
            task = asyncio.create_task(net.open(self.host, self.port, self.ca))
        else:
            task = asyncio.create_task(net.open(self.host, self.port))
        left = self.connect_timeout_ms
        while True:
            await asyncio.sleep(0)           # let the open run (an in-memory one ends here)
            if task.done():
                return await task
            if left <= 0:
                task.cancel()
                raise MQTTError("timeout", "TCP connect %d ms" % self.connect_timeout_ms)
            await self.hal.sleep_ms(100)
            left -= 100

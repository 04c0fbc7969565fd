"""The link: moves the journal out to the gateway and its commands in, over MQTT.

On each connection (firmware/mqtt/client.py keeps one up: Wi-Fi, TCP/TLS, backoff, reconnect):
    will: status offline (retained) -> SUBSCRIBE commands -> status online (retained) -> hello
    -> treq if the clock is unsynced -> { backlog within the window, heartbeat } until it breaks
    -> app.on_link(False)

Delivery rule: a journal record leaves the journal only on the gateway's signed `ack`, which
the gateway sends after its commit is durable. Until then it is re-sent after every
reconnect (and after _ACK_TIMEOUT_MS without any ack), so delivery is at-least-once and the
gateway dedupes by record id "<device>:<rb>:<rs>". A PUBACK only frees a window slot.

Commands are trusted only after protocol.messages.decode (schema, topic, HMAC), our boot,
and the replay window on n. Everything else is counted in `rejected` by error code and
dropped; nothing a peer sends can raise out of run().

All time comes from the HAL (ticks_ms/ticks_diff/sleep_ms): the simulator accelerates it.
"""

from firmware.mqtt.client import Client
from firmware.version import VERSION
from protocol import messages, topics
from protocol.auth import ReplayWindow
from protocol.errors import ProtocolError

try:
    from micropython import const
except ImportError:          # CPython
    def const(x):
        return x

_MAX_UNACKED = const(64)         # records sent but not yet acked by the gateway
_ACK_TIMEOUT_MS = const(60000)   # no ack for this long: send the unacked ones again
_TREQ_EVERY_MS = const(60000)    # repeat treq while the clock is unsynced


def _get(cfg, name, default=None):
    # cfg is firmware.config.Config on the device; a plain dict is accepted too (tests, tools)
    if type(cfg) is dict:
        return cfg.get(name, default)
    return getattr(cfg, name, default)


class Link:
    def __init__(self, hal, cfg, key, boot, journal, app):
        self.hal = hal
        self.cfg = cfg
        self.key = key
        self.boot = boot
        self.journal = journal
        self.app = app
        dev = _get(cfg, "device_id")
        self.device = dev
        broker = _get(cfg, "broker") or {}
        self.fw = VERSION
        self.client = Client(hal, dev, broker.get("host", "127.0.0.1"), broker.get("port", 1883), user=dev,
                             password=broker.get("password"), ca=broker.get("ca"),
                             keepalive_s=_get(cfg, "keepalive_s", 60), on_message=self._on_message)
        # State visible to the app, the heartbeat and the tests.
        self.connected = False           # up, subscribed and announced
        self.rejected = {}               # dropped commands by error code
        self.records_sent = 0
        self.records_acked = 0
        self.ack_timeouts = 0
        self._n = 0                      # per-boot message counter ("n" of every message)
        self._replay = ReplayWindow()
        self._sent = {}                  # (rb, rs) -> True: published on this connection, no ack yet
        self._bad = {}                   # (rb, rs) the protocol refuses to sign: kept, counted, skipped
        self._more = True                # the journal may hold records not yet sent
        self._ack_at = 0
        self._hb_at = 0
        self._treq_at = 0
        self._t_status = topics.up(dev, "status")
        self._t_rec = topics.up(dev, "rec")

    # -- the app's side -------------------------------------------------------------------

    def kick(self):
        """The app appended a record: send it now if the window allows."""
        self._more = True
        self.client.wake()

    def inflight(self):
        return self.client.inflight_count()

    def close(self):
        self.client.close()

    async def run(self):
        await self.client.run(self)

    # -- the client's owner: one connection ------------------------------------------------

    def will(self, conn_no):
        return (self._t_status, self._sign("status", {"s": "offline", "c": conn_no}), 1, True)

    async def up(self):
        c = self.client
        # Records still in the window are being re-sent (DUP) by the session; every other unacked
        # record goes again, oldest first.
        self._resend_unacked()
        await c.subscribe(topics.device_sub(self.device), 1, c.connect_timeout_ms)
        await c.publish(self._t_status, self._sign("status", {"s": "online", "c": c.conn_no}), 1, True)
        hello = self._sign("hello", {
            "fw": self.fw, "up": self._uptime(), "rst": self._rst(), "cfg": _get(self.cfg, "cfg", 0),
            "jd": self.journal.depth(), "safe": bool(getattr(self.app, "safe", False)),
        })
        await c.publish(topics.up(self.device, "hello"), hello, 1)
        self.connected = True
        self._tell_app(True)
        now = self.hal.ticks_ms()
        self._hb_at = now
        self._ack_at = now
        if not self._synced():
            await self._treq(now)

    async def service(self):
        hal = self.hal
        c = self.client
        await self._fill()
        now = hal.ticks_ms()
        if hal.ticks_diff(now, self._hb_at) >= _get(self.cfg, "hb_s", 180) * 1000:
            self._hb_at = now
            await c.publish(topics.up(self.device, "hb"), self._hb(), 0)
        if not self._synced() and hal.ticks_diff(now, self._treq_at) >= _TREQ_EVERY_MS:
            await self._treq(now)
        if self._sent and hal.ticks_diff(now, self._ack_at) >= _ACK_TIMEOUT_MS:
            # The gateway may have lost what the broker accepted
            self._resend_unacked()
            self._ack_at = now
            self.ack_timeouts += 1

    def down(self):
        self.connected = False
        self._tell_app(False)

    def _resend_unacked(self):
        """Forget every record sent but not acked, except those still in the session's window
        (which the session re-sends itself), so _fill() sends them again, oldest first."""
        self._sent = {}
        for tag in self.client.inflight_tags():
            if tag is not None:
                self._sent[tag] = True
        self._more = True

    async def _fill(self):
        """Publish unsent journal records, oldest first, while the window has room."""
        c = self.client
        while self._more and c.inflight_count() < c.window and len(self._sent) < _MAX_UNACKED:
            want = len(self._sent) + len(self._bad) + c.window - c.inflight_count()
            recs = self.journal.pending(want)
            progress = False
            for r in recs:
                if c.inflight_count() >= c.window or len(self._sent) >= _MAX_UNACKED:
                    break
                key = (r["rb"], r["rs"])
                if key in self._sent or key in self._bad:
                    continue
                try:
                    payload = self._sign("rec", r)
                except ProtocolError as e:
                    self._bad[key] = True
                    self._reject("bad_record")
                    self.hal.log("link: record %d:%d cannot be sent: %s" % (key[0], key[1], e))
                    continue
                if not self._sent:
                    self._ack_at = self.hal.ticks_ms()
                self._sent[key] = True
                await c.publish(self._t_rec, payload, 1, False, key)
                self.records_sent += 1
                progress = True
            if len(recs) < want:
                self._more = False       # all of the journal is out; kick() or an ack re-arms
            if not progress:
                break

    # -- messages -------------------------------------------------------------------------

    def _sign(self, t, fields):
        self._n += 1
        fields["t"] = t
        fields["d"] = self.device
        fields["b"] = self.boot
        fields["n"] = self._n
        return messages.sign(fields, self.key)

    def _uptime(self):
        clock = getattr(self.app, "clock", None)
        if clock is not None and hasattr(clock, "uptime"):
            return clock.uptime()
        return self.hal.ticks_ms()

    def _synced(self):
        clock = getattr(self.app, "clock", None)
        return bool(clock is not None and getattr(clock, "synced", False))

    def _rst(self):
        try:
            return str(self.hal.reset_cause())[:16]
        except Exception:
            return ""

    def _hb(self):
        try:
            rssi = self.hal.net.rssi()
        except Exception:
            rssi = -127
        rssi = max(-127, min(0, rssi))
        st = "?"
        try:
            st = (self.app.state_name() or "?")[:12]
        except Exception:
            pass
        return self._sign("hb", {
            "up": self._uptime(), "heap": max(0, self.hal.mem_free()), "rssi": rssi,
            "jd": self.journal.depth(), "fw": self.fw, "rc": self.client.reconnects, "rst": self._rst(),
            "sync": self._synced(), "st": st,
        })

    async def _treq(self, now):
        self._treq_at = now
        payload = self._sign("treq", {"u": self._uptime()})
        await self.client.publish(topics.up(self.device, "treq"), payload, 1)

    # -- commands -------------------------------------------------------------------------

    def _on_message(self, topic, payload, retain, dup):
        try:
            m = messages.decode(payload, self.key, topic)
        except ProtocolError as e:
            self._reject(e.code)
            return
        except Exception:  # e.g. MemoryError in json on the device: still never fatal
            self._reject("malformed")
            return
        if m["d"] != self.device:
            self._reject("wrong_device")
            return
        if m["b"] != self.boot:
            self._reject("wrong_boot")
            return
        if not self._replay.check(m["n"]):
            self._reject("replay")
            return
        if m["t"] == "ack":
            for pair in m["a"]:
                rb = pair[0]
                rs = pair[1]
                try:
                    if self.journal.ack(rb, rs):
                        self.records_acked += 1
                except Exception as e:  # a flash error: the record stays pending and is re-sent
                    self._reject("journal_error")
                    self.hal.log("link: journal.ack(%d, %d) failed: %r" % (rb, rs, e))
                    continue
                self._sent.pop((rb, rs), None)
            self._ack_at = self.hal.ticks_ms()
            self._more = True
            self.client.wake()
            return
        try:
            self.app.on_command(m)
        except Exception as e:
            self._reject("app_error")
            self.hal.log("link: app.on_command(%s) failed: %r" % (m["t"], e))

    # -- bookkeeping ----------------------------------------------------------------------

    def _reject(self, code):
        self.rejected[code] = self.rejected.get(code, 0) + 1

    def _tell_app(self, up):
        try:
            self.app.on_link(up)
        except Exception as e:
            self.hal.log("link: app.on_link(%s) failed: %r" % (up, e))

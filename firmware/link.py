"""Link manager: keeps the device connected to the hall broker and moves the journal out.

    loop: wait for Wi-Fi -> TCP -> CONNECT (will: status offline, retained) -> SUBSCRIBE
          commands -> status online (retained) -> hello -> treq if the clock is unsynced
          -> { backlog within the window, heartbeat, keepalive } until the connection breaks
          -> app.on_link(False) -> jittered exponential backoff -> loop

Delivery rule: a journal record leaves the journal only on the gateway's signed `ack`, which
the gateway sends after its commit is durable. Until then it is re-sent after every
reconnect (and after _ACK_TIMEOUT_MS without any ack), so delivery is at-least-once and the
gateway dedupes by record id "<device>:<rb>:<rs>". A PUBACK only frees a window slot.

Commands are trusted only after protocol.messages.decode (schema, topic, HMAC), our boot,
and the replay window on n. Everything else is counted in `rejected` by error code and
dropped; nothing a peer sends can raise out of run().

All time comes from the HAL (ticks_ms/ticks_diff/sleep_ms): the simulator accelerates it.
"""

import firmware
from protocol import messages, topics
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
    # Tunables the simulator and tests shorten are class attributes: the device never changes
    # them, so no instance stores them and the constructor's bytecode stays short. The others
    # are private consts above (folded into the code: no name in the device's heap).
    window = 8                       # unacked QoS 1 PUBLISHes on the wire
    connect_timeout_ms = 10000       # TCP connect, CONNACK, SUBACK
    backoff_min_ms = 1000
    backoff_max_ms = 60000

    def __init__(self, hal, cfg, key, boot, journal, app):
        # Once per boot: the body is firmware/linkup.py's init, loaded for it and unloaded after
        # (so the constructor's bytecode does not stay in the device's RAM).
        firmware.rare("linkup", "init", self, hal, cfg, key, boot, journal, app)

    # -- the app's side -------------------------------------------------------------------

    def kick(self):
        """The app appended a record: send it now if the window allows."""
        self._more = True
        self._client.wake()

    def inflight(self):
        return self._client.inflight_count()

    def close(self):
        self._client.close()

    # -- main loop ------------------------------------------------------------------------

    async def run(self):
        ended = None
        while True:
            try:
                await self._session(ended)
            except Exception as e:  # any failure ends this connection, never the link
                ended = e
            finally:
                self._client.close()
                if self.connected:
                    self.connected = False
                    self._tell_app(False)

    async def _session(self, ended):
        # Between connections (the last one's error noted, backoff, Wi-Fi wait) and the handshake
        # (TCP, CONNECT, SUBSCRIBE, status online, hello) the code is in firmware/linkup.py and
        # firmware/mqttconn.py, loaded for it and unloaded after.
        from firmware import linkup
        try:
            await linkup.connect(self, ended)
        finally:
            linkup = None
            firmware.unload("firmware.linkup", "firmware.mqttconn")
        hal = self.hal
        c = self._client
        now = hal.ticks_ms()
        self._hb_at = now
        self._ack_at = now
        if not self._synced():
            await self._treq(now)
        while True:
            await c.service()
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
            await c.wait()

    def _resend_unacked(self):
        """Forget every record sent but not acked, except those still in the client's window
        (which the client re-sends itself), so _fill() sends them again, oldest first."""
        self._sent = {}
        for tag in self._client.inflight_tags():
            if tag is not None:
                self._sent[tag] = True
        self._more = True

    async def _fill(self):
        """Publish unsent journal records, oldest first, while the window has room."""
        c = self._client
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
            "jd": self.journal.depth(), "fw": self.fw, "rc": self.reconnects, "rst": self._rst(),
            "sync": self._synced(), "st": st,
        })

    async def _treq(self, now):
        self._treq_at = now
        payload = self._sign("treq", {"u": self._uptime()})
        await self._client.publish(topics.up(self.device, "treq"), payload, 1)

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
            self._client.wake()
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

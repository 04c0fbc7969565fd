"""Firmware scenarios that run unchanged under MicroPython 1.27 (wasm) and CPython 3.11.

The test files call these directly under CPython and ship this file (with fw_root.py) to the
MicroPython runner. Each scenario builds devices on a directory root with the real boot path
(firmware.main.Firmware on the host HAL), drives virtual buttons on a virtual clock, and
raises AssertionError (via check) on the first wrong thing it sees.
"""

import os

from fw_root import SCAN, WALL, check, make_root


class Device:
    """One evaluator on a root directory, booted through the real boot path."""

    def __init__(self, root, cause="power-on", start_ms=0, max_events=200):
        # imported here, not at the top: the memory bench imports this driver before it
        # takes its baseline, and the firmware must land on the measured side
        from firmware.hal.host import HostHal, VirtualClock
        from firmware.main import Firmware
        self.root = root
        self.hal = HostHal(root=root, clock=VirtualClock(start_ms=start_ms), reset_cause=cause,
                           durable=False, max_events=max_events)
        self.fw = Firmware(self.hal)
        self.app = self.fw.app
        self.journal = self.fw.journal
        self.worst_latency = 0

    def now(self):
        return self.hal.clock.now()

    def run(self, ms):
        steps = ms // SCAN
        hal = self.hal
        fw = self.fw
        for _ in range(steps):
            hal.clock.advance(SCAN)
            fw.step()

    def press(self, i, hold=80, settle=60):
        """Press and release button i; checks the feedback came within 50 ms (HAL clock)."""
        t0 = self.now()
        n_before = len(self.hal.events)
        self.hal.press(i)
        self.run(hold)
        self.hal.release(i)
        self.run(settle)
        self._check_feedback(t0, n_before)

    def bouncy_press(self, i):
        """A press whose contacts bounce on the way down and up: one press, one record."""
        t0 = self.now()
        n_before = len(self.hal.events)
        hal = self.hal
        for _ in range(3):
            hal.press(i)
            self.run(SCAN)
            hal.release(i)
            self.run(SCAN)
        hal.press(i)
        self.run(200)
        for _ in range(3):
            hal.release(i)
            self.run(SCAN)
            hal.press(i)
            self.run(SCAN)
        hal.release(i)
        self.run(100)
        self._check_feedback(t0, n_before)

    def _check_feedback(self, t0, n_before):
        evs = self.hal.events[n_before:] if n_before < len(self.hal.events) else []
        first = None
        for e in evs:
            if e[1] == "tone" and e[2]:
                first = e[0]
                break
        check(first is not None, "no beep after the press at %d" % t0)
        lat = first - t0
        if lat > self.worst_latency:
            self.worst_latency = lat
        check(lat <= 50, "feedback %d ms after the press" % lat)

    def cmd(self, msg):
        return self.app.on_command(msg, self.fw.clock.uptime())

    def invite(self, inv, cd=60):
        return self.cmd({"t": "invite", "i": inv, "case": "C-1", "item": "item", "cd": cd})

    def kinds(self, limit=100):
        return [(r["k"], r["g"], r["i"]) for r in self.journal.pending(limit)]

    def ack_all(self):
        n = 0
        while True:
            recs = self.journal.pending(16)
            if not recs:
                return n
            for r in recs:
                check(self.journal.ack(r["rb"], r["rs"]), "ack %d:%d refused" % (r["rb"], r["rs"]))
                n += 1

    def close(self):
        self.journal.close()


def scenario_lifecycle(root):
    """pair -> invite -> press -> journal -> ack -> empty; timeout, cooldown extras, unpaired
    presses, offline presses, walk-ups, duplicates, reboot keeps pairing and never reuses ids."""
    make_root(root)
    d = Device(root)
    app = d.app
    check(app.state_name() == "unpaired", "fresh device is unpaired")
    check(d.fw.boot == 1, "first boot is 1")
    d.press(4)                                     # unpaired: counted, not a rating
    check(d.kinds() == [("unpaired", "vd", "")], "unpaired press journaled: %r" % d.kinds())
    check(d.hal.led_state == (True, False), "red light while unpaired")
    d.cmd({"t": "paired", "win": "W03", "clerk": "Li Na"})
    check(app.state_name() == "idle", "paired -> idle")
    check(d.hal.text == "W03\nLi Na", "window and clerk shown: %r" % d.hal.text)
    d.cmd({"t": "time", "w": WALL, "u": 0})
    check(d.fw.clock.synced, "clock synced by the time command")
    # invited -> rated -> thanks, extras during the cooldown
    d.invite("inv-1")
    check(app.state_name() == "invited", "invite -> invited")
    check(d.hal.text.startswith("Please rate 6"), "countdown shown: %r" % d.hal.text)
    d.run(2000)
    d.bouncy_press(3)                              # default order: index 3 is "d" (不满意)
    check(app.state_name() == "thanks", "rated -> thanks")
    d.press(0)
    d.press(1)
    check(app.state_name() == "thanks", "extras keep the cooldown")
    d.run(8000)
    check(app.state_name() == "idle", "cooldown over -> idle")
    recs = d.journal.pending(20)
    check([(r["k"], r["g"], r["i"]) for r in recs][1:] ==
          [("rated", "d", "inv-1"), ("extra", "vs", "inv-1"), ("extra", "s", "inv-1")],
          "rated + two extras, bounces swallowed: %r" % recs)
    rated = recs[1]
    check(rated["w"] >= WALL + 2 and rated["w"] <= WALL + 4, "rated carries wall time: %d" % rated["w"])
    check(recs[0]["w"] == 0, "the press before the time sync has w=0")
    check(rated["u"] > 2000, "uptime recorded: %d" % rated["u"])
    # a re-sent invite for a rated case cannot rate twice
    check(not d.invite("inv-1"), "finished invitation refused")
    check(app.state_name() == "idle", "still idle after a duplicate invite")
    # walk-up
    d.press(2)
    check(d.kinds()[-1] == ("walkup", "bs", ""), "walk-up press: %r" % d.kinds()[-1:])
    d.run(8100)
    # timeout -> unrated
    d.invite("inv-2", cd=5)
    d.run(5100)
    check(app.state_name() == "idle", "countdown over -> idle")
    check(d.kinds()[-1] == ("unrated", "", "inv-2"), "timeout -> unrated: %r" % d.kinds()[-1:])
    # cancel: no record
    depth = d.journal.depth()
    d.invite("inv-3")
    check(d.cmd({"t": "cancel", "i": "inv-3"}), "cancel applies")
    check(d.journal.depth() == depth and app.state_name() == "idle", "cancel leaves no record")
    # a new invite while one is open closes the old one as unrated
    d.invite("inv-4")
    d.invite("inv-5")
    check(d.kinds()[-1] == ("unrated", "", "inv-4"), "superseded invitation is unrated")
    d.press(1)
    check(d.kinds()[-1] == ("rated", "s", "inv-5"), "second invitation rated")
    d.run(8100)
    # offline: presses still journaled and answered
    app.on_link(False, d.fw.clock.uptime())
    check("(offline)" in d.hal.text, "offline marker shown")
    d.invite("inv-6")
    d.press(0)
    d.run(8100)
    d.press(4)
    app.on_link(True, d.fw.clock.uptime())
    check(d.kinds()[-2:] == [("rated", "vs", "inv-6"), ("walkup", "vd", "")], "offline presses kept")
    # ack -> journal empty
    total = d.journal.depth()
    check(total == 10, "10 records pending, got %d" % total)
    ids = [(r["rb"], r["rs"]) for r in d.journal.pending(100)]
    check(ids == [(1, k) for k in range(1, 11)], "ids 1:1..1:10 in order: %r" % ids)
    check(d.ack_all() == 10 and d.journal.depth() == 0, "journal empty after acks")
    check(not d.journal.ack(1, 3), "second ack of the same record is refused")
    check(not d.journal.ack(9, 9), "ack of an unknown record is refused")
    d.press(0)                                     # a record after the acks
    latency = d.worst_latency
    d.close()
    # reboot: pairing kept, boot 2, ids continue
    d2 = Device(root, cause="soft")
    check(d2.app.state_name() == "idle", "reboot comes back paired")
    check(d2.fw.boot == 2, "boot counter 2")
    check([(r["rb"], r["rs"]) for r in d2.journal.pending(5)] == [(1, 11)], "unacked record survives")
    d2.press(1)
    d2.run(8100)
    ids = [(r["rb"], r["rs"]) for r in d2.journal.pending(5)]
    check(ids == [(1, 11), (2, 1)], "new boot numbers its records from 2:1: %r" % ids)
    d2.cmd({"t": "unpaired"})
    check(d2.app.state_name() == "unpaired", "unpaired command")
    d2.close()
    d3 = Device(root, cause="soft")
    check(d3.app.state_name() == "unpaired", "unpairing survives a reboot")
    d3.close()
    return {"records": 12, "worst_latency_ms": latency}


def scenario_walkup_ignore_and_config(root):
    make_root(root, walkup="ignore", buttons=["vd", "d", "bs", "s", "vs"])
    d = Device(root)
    d.cmd({"t": "paired", "win": "W01", "clerk": ""})
    d.press(0)
    check(d.journal.depth() == 0 and d.app.ignored == 1, "walkup=ignore: counted, no record")
    check(any("ignored" in line for line in d.hal.logs), "ignored press is logged")
    d.invite("inv-a")
    d.press(0)
    check(d.kinds() == [("rated", "vd", "inv-a")], "reversed button order: left is vd")
    d.run(8100)
    ok = d.cmd({"t": "config", "cfg": {"walkup": "accept", "cooldown_s": 2, "pins": [1], "debounce_ms": 1}})
    check(ok and d.fw.cfg.walkup == "accept" and d.fw.cfg.cooldown_s == 2, "config applied")
    check(d.fw.cfg.debounce_ms == 50, "out-of-range debounce rejected")
    d.press(4)
    d.run(2100)
    check(d.app.state_name() == "idle", "new cooldown in force")
    check(d.kinds()[-1] == ("walkup", "vs", ""), "walk-ups accepted after config")
    d.close()
    d2 = Device(root, cause="soft")
    check(d2.fw.cfg.walkup == "accept" and d2.fw.cfg.cooldown_s == 2, "config persisted")
    check(d2.fw.cfg.buttons == ("vd", "d", "bs", "s", "vs"), "button order persisted")
    d2.close()
    return {}


def scenario_safe_mode(root):
    make_root(root)
    # power cuts never lead to safe mode
    for _ in range(5):
        d = Device(root, cause="power-on")
        check(not d.fw.safe, "power-on boots do not count as failures")
        d.close()
    # a boot's reset cause says how the previous boot ended: the third watchdog reset in a
    # row, before any boot ran 30 s healthy, means three failed boots -> safe mode
    for k in range(2):
        d = Device(root, cause="wdt")
        check(not d.fw.safe, "failed boot %d not yet safe" % (k + 1))
        d.run(1000)
        d.close()
    d = Device(root, cause="wdt")
    check(d.fw.safe and d.app.state_name() == "safe", "safe mode after 3 failed boots")
    d.press(0)
    check(d.journal.depth() == 0 and d.app.ignored == 1, "no rating in safe mode")
    check(not d.invite("inv-x"), "no invitation in safe mode")
    check(d.cmd({"t": "paired", "win": "W09", "clerk": ""}), "pairing works in safe mode")
    d.run(31000)
    d.close()
    d = Device(root, cause="power-on")
    check(d.fw.safe, "a power cycle does not leave safe mode")
    d.cmd({"t": "reboot", "why": "maintenance"})
    d.run(600)
    check(d.app.reboot_due(d.fw.clock.uptime()), "reboot scheduled")
    d.close()
    d = Device(root, cause="soft")
    check(not d.fw.safe and d.app.state_name() == "idle", "authenticated reboot leaves safe mode")
    d.run(30100)
    check(d.fw.healthy, "healthy after 30 s")
    d.close()
    d = Device(root, cause="wdt")
    check(d.fw.boot_fails == 0, "a healthy boot resets the failure count")
    boots = d.fw.boot
    d.close()
    # over serial (a technician): clear() keeps the boot number and leaves safe mode
    for _ in range(3):
        Device(root, cause="wdt").close()
    d = Device(root, cause="wdt")
    check(d.fw.safe, "safe again after 3 more failed boots")
    from firmware.bootstate import BootState
    BootState(d.hal).clear()
    d.close()
    d = Device(root, cause="power-on")
    check(not d.fw.safe and d.fw.boot == boots + 5, "serial clear() leaves safe mode, ids go on")
    d.close()
    return {"boots": boots}


def _fill(root, n, acked):
    make_root(root)
    d = Device(root)
    d.cmd({"t": "paired", "win": "W01", "clerk": ""})
    d.cmd({"t": "time", "w": WALL, "u": 0})
    for k in range(n):
        d.invite("inv-%d" % k)
        d.press(k % 5)
        d.run(8100)
    recs = d.journal.pending(100)
    for r in recs[:acked]:
        d.journal.ack(r["rb"], r["rs"])
    want = [(r["rb"], r["rs"], r["k"], r["g"], r["i"], r["w"], r["u"]) for r in d.journal.pending(100)]
    d.close()
    return want


def _files(root):
    names = os.listdir(root + "/data")
    seg = [n for n in names if n[0] == "j"][0]
    ack = [n for n in names if n[0] == "a"][0]
    return root + "/data/" + seg, root + "/data/" + ack


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _after_cut(root, want, what):
    """Boot on a damaged journal: every complete record kept, ids continue above all of them."""
    d = Device(root, cause="power-on")
    got = [(r["rb"], r["rs"], r["k"], r["g"], r["i"], r["w"], r["u"]) for r in d.journal.pending(100)]
    check(got == want, "%s: kept %r, want %r" % (what, got, want))
    boot = d.fw.boot
    d.invite("inv-after")
    d.press(0)
    got2 = d.journal.pending(100)
    last = got2[-1]
    check((last["rb"], last["rs"]) == (boot, 1), "%s: new record %d:%d" % (what, last["rb"], last["rs"]))
    seen = {}
    for r in got2:
        key = (r["rb"], r["rs"])
        check(key not in seen, "%s: id %r twice" % (what, key))
        seen[key] = 1
    d.close()
    return boot


def scenario_power_cut(root, n=4, acked=1, step=1):
    """Cut or corrupt the last record (and the last ack entry) at every byte offset."""
    want = _fill(root, n, acked)
    seg, ack = _files(root)
    seg0 = _read(seg)
    ack0 = _read(ack)
    boot0 = _read(root + "/data/boot.a"), _read(root + "/data/boot.b")
    rec = 64
    check(len(seg0) == n * rec, "segment holds %d records" % n)
    last_boot = 0
    cases = 0
    for k in range(0, rec, step):
        # torn write: the file ends k bytes into the last record
        _write(seg, seg0[: (n - 1) * rec + k])
        _write(ack, ack0)
        last_boot = max(last_boot, _after_cut(root, want[:-1], "cut at +%d" % k))
        # same length, byte k garbled (a write that did not finish its block)
        b = bytearray(seg0)
        b[(n - 1) * rec + k] ^= 0x5A
        _write(seg, b)
        _write(ack, ack0)
        last_boot = max(last_boot, _after_cut(root, want[:-1], "byte +%d garbled" % k))
        cases += 2
    # a torn ack entry: the ack is lost, the record is pending again (sent again, deduped upstream)
    first = _fill(root + "x", n, 2)
    seg, ack = _files(root + "x")
    ack0 = _read(ack)
    seg0 = _read(seg)
    for k in range(0, 12, step):
        _write(seg, seg0)
        _write(ack, ack0[: 12 + k])
        d = Device(root + "x", cause="power-on")
        got = [(r["rb"], r["rs"]) for r in d.journal.pending(100)]
        check(got == [(1, 2)] + [(w[0], w[1]) for w in first][:], "ack cut at +%d: %r" % (k, got))
        d.close()
        cases += 1
    # both boot slots are kept apart: a torn boot-state write falls back to the other slot
    _write(root + "/data/boot.a", boot0[0][:7])
    d = Device(root, cause="power-on")
    check(d.fw.boot > last_boot, "boot number still grows with a torn slot")
    d.close()
    return {"cases": cases, "last_boot": last_boot}


class MemoryRun:
    """A device pressed many times through invite/rated/extra/walk-up/unrated, acked in
    batches of 20 as the link would. The caller measures the heap between presses() calls
    (under the wasm MicroPython the GC only runs when the program yields to JS, so the
    measuring code awaits in between)."""

    def __init__(self, root):
        make_root(root)
        # the host HAL's event recorder is test instrumentation (the ESP32 HAL has none):
        # keep it to a few entries so the heap measured is the firmware's
        self.d = Device(root, max_events=8)
        self.d.cmd({"t": "paired", "win": "W01", "clerk": "Clerk"})
        self.d.cmd({"t": "time", "w": WALL, "u": 0})
        self.k = 0
        self.inv = 0

    def presses(self, n):
        d = self.d
        hal = d.hal
        fw = d.fw
        for _ in range(n):
            self.k += 1
            k = self.k
            m = k % 10
            if m < 6:
                self.inv += 1
                d.invite("inv-%d" % self.inv)
            hal.press(k % 5)                   # down, scanned, up, debounce, scanned
            hal.clock.advance(SCAN)
            fw.step()
            hal.release(k % 5)
            hal.clock.advance(60)
            fw.step()
            if m == 6:
                hal.clock.advance(1000)        # the next press falls in the cooldown: extra
            else:
                hal.clock.advance(8100)
                fw.step()
            if m == 9:
                self.inv += 1
                d.invite("inv-%d" % self.inv)
                hal.clock.advance(61000)
                fw.step()                      # countdown runs out: unrated
            if k % 20 == 0:
                d.ack_all()

    def finish(self):
        d = self.d
        d.ack_all()
        check(d.app.lost == 0, "no press lost")
        check(d.journal.depth() == 0, "everything acked")
        total = 0
        for kind in d.app.counts:
            total += d.app.counts[kind]
        out = {"presses": self.k, "records": total, "counts": d.app.counts, "journal": d.journal.stats()}
        d.close()
        return out

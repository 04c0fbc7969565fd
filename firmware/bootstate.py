"""Boot counter and failed-boot counter, kept in two alternating slots on flash.

The boot counter is part of every record id ("<device>:<boot>:<seq>"), so it must never go
back: each write goes to the slot holding the older state, and a slot torn by a power cut
fails its CRC, leaving the other one. The journal's highest boot is a second floor.

A boot counts as failed until the app has run healthy for 30 s. Power-on boots do not
count (a citizen pulling the plug must never push the device towards safe mode), and only an
authenticated gateway `reboot` or a serial call to clear() resets the count once in safe mode.

Boot-only code: firmware.main imports this module for boot() (the whole boot order, below) and
for the two rare writes later (mark_healthy() once, clear() on the gateway's reboot), and unloads
it in between so its bytecode does not sit in the device's RAM. Each use starts from the slots on
flash.
"""

import binascii
import struct

try:
    from micropython import const
except ImportError:          # CPython
    def const(x):
        return x

_SAFE_AFTER = const(3)          # this many failed boots in a row -> safe mode
_FMT = const("<4sIII")         # magic, boot, failed boots before this one, healthy flag
_MAGIC = const(b"HCPB")
_SIZE = const(20)              # struct size 16 + crc 4
_SLOTS = const(("data/boot.a", "data/boot.b"))


def _decode(data):
    if data is None or len(data) != _SIZE:
        return None
    if binascii.crc32(data[:16]) != struct.unpack("<I", data[16:])[0]:
        return None
    magic, boot, fails, healthy = struct.unpack(_FMT, data[:16])
    if magic != _MAGIC:
        return None
    return boot, fails, healthy


class BootState:
    def __init__(self, hal):
        self.hal = hal
        self.boot = 0
        self.fails = 0
        self.healthy = False
        self.safe = False
        self._slot = 0             # slot that holds the newest state

    def _read(self):
        best = None
        for i in range(2):
            try:
                with open(self.hal.path(_SLOTS[i]), "rb") as f:
                    s = _decode(f.read())
            except OSError:
                s = None
            if s is not None and (best is None or s[0] > best[0]):
                best = s
                self._slot = i
        return best

    def _write(self, healthy):
        slot = 1 - self._slot
        body = struct.pack(_FMT, _MAGIC, self.boot, self.fails, 1 if healthy else 0)
        with open(self.hal.path(_SLOTS[slot]), "wb") as f:
            f.write(body)
            f.write(struct.pack("<I", binascii.crc32(body)))
            self.hal.fsync(f)
        self._slot = slot
        self.healthy = healthy

    def begin(self, reset_cause, floor=0):
        """Start a boot: new durable boot number (> every earlier one and > floor), safe-mode verdict."""
        prev = self._read()
        boot = floor
        fails = 0
        if prev is not None:
            pboot, pfails, phealthy = prev[0], prev[1], prev[2]
            if pboot > boot:
                boot = pboot
            if phealthy:
                fails = 0
            elif reset_cause == "power-on":
                fails = pfails                # a power cut says nothing about the firmware
            else:
                fails = pfails + 1
        self.boot = boot + 1
        self.fails = fails
        self.safe = fails >= _SAFE_AFTER
        self._write(False)
        return self.boot

    def load(self):
        """The newest state on flash (boot, fails, healthy, safe), as begin() left it."""
        s = self._read()
        if s is not None:
            self.boot = s[0]
            self.fails = s[1]
            self.healthy = bool(s[2])
            self.safe = self.fails >= _SAFE_AFTER
        return self

    def mark_healthy(self):
        """Called once the app has run healthy for 30 s (firmware.main): this boot did not fail."""
        self.load()
        if not self.healthy and not self.safe:
            self.fails = 0
            self._write(True)

    def clear(self):
        """Maintenance (gateway reboot command, or serial: BootState(hal).clear()): forget
        failed boots, leave safe mode at the next boot. Keeps the current boot number."""
        self.load()
        self.fails = 0
        self._write(True)


def load_config(hal):
    """/config.json -> firmware.config.Config; ConfigError when the device cannot run on it."""
    import json

    from firmware import fsutil  # boot-time: firmware.rare unloads it after boot()
    from firmware.config import FILE, Config, ConfigError
    data = fsutil.read_atomic(hal.path(FILE))
    if data is None:
        raise ConfigError("config.json not found: flash the device with flash.py")
    try:
        raw = json.loads(data)
    except ValueError:
        raise ConfigError("config.json is not valid JSON")
    if type(raw) is not dict:
        raise ConfigError("config.json is not a JSON object")
    return Config(raw)


def boot(fw, hal):
    """Firmware.__init__'s boot order: config -> HAL setup -> feedback, clock -> journal scan ->
    boot number incremented and durable (above every record's) -> app -> buttons."""
    from firmware import VERSION
    from firmware.app import App
    from firmware.buttons import Buttons
    from firmware.clock import Clock
    from firmware.feedback import Feedback
    from firmware.journal import Journal
    fw.cfg = load_config(hal)              # ConfigError: nothing to run without it
    for w in fw.cfg.warnings:
        hal.log(w)
    hal.setup(fw.cfg)
    fw.feedback = Feedback(hal)            # "booting" light from here on
    fw.clock = Clock(hal)
    fw.journal = Journal(hal).open()
    state = BootState(hal)
    fw.boot = state.begin(hal.reset_cause(), floor=fw.journal.max_rb)
    fw.safe = state.safe
    fw.boot_fails = state.fails
    fw.journal.begin(fw.boot)
    if fw.safe:
        hal.log("boot %d: safe mode after %d failed boots" % (fw.boot, fw.boot_fails))
    fw.app = App(hal, fw.cfg, fw.journal, fw.clock, fw.clear_failed_boots, fw.feedback,
                 safe=fw.safe, now=fw.clock.uptime())
    fw.buttons = Buttons(hal, fw.cfg)
    fw._on_press = fw.app.on_button        # bound once: no allocation per scan
    hal.log("firmware %s boot %d (%s) journal %d pending" % (
        VERSION, fw.boot, hal.reset_cause(), fw.journal.depth()))


def start_link(fw):
    """Firmware.start_link: the link's object (its key from the config's secret), wired to the app."""
    try:
        from firmware.link import Link
    except ImportError as e:
        fw.hal.log("no link (%s): journaling offline only" % e)
        return None
    from protocol.auth import Key
    fw.link = Link(fw.hal, fw.cfg, Key(fw.cfg.secret), fw.boot, fw.journal, fw.app)
    fw.app.on_record = fw.link.kick
    return fw.link

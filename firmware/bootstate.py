"""Boot counter and failed-boot counter, kept in two alternating slots on flash.

The boot counter is part of every record id ("<device>:<boot>:<seq>"), so it must never go
back: each write goes to the slot holding the older state, and a slot torn by a power cut
fails its CRC, leaving the other one. The journal's highest boot is a second floor.

A boot counts as failed until the app has run healthy for 30 s. Power-on boots do not
count (a citizen pulling the plug must never push the device towards safe mode), and only an
authenticated gateway `reboot` or a serial call to clear() resets the count once in safe mode.
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


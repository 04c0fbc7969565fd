"""The window and clerk this device is bound to (一码一账号), kept on flash in data/pair.json.

The gateway sets it with `paired` and clears it with `unpaired`; the device shows it while idle and
keeps it across reboots. Written atomically (firmware/fsutil.py).
"""

import json

from firmware import fsutil

try:
    from micropython import const
except ImportError:          # CPython
    def const(x):
        return x

_FILE = const("data/pair.json")


class Pairing:
    def __init__(self, hal):
        self.hal = hal
        self.win = ""
        self.clerk = ""

    def load(self):
        data = fsutil.read_atomic(self.hal.path(_FILE))
        if data is None:
            return self
        try:
            p = json.loads(data)
            self.win = p.get("win", "")
            self.clerk = p.get("clerk", "")
        except (ValueError, AttributeError):
            self.hal.log("pairing: file unreadable, starting unpaired")
        return self

    def set(self, win, clerk):
        """Bind to win and clerk ("" and "" unbinds). True when that changed anything."""
        if win == self.win and clerk == self.clerk:
            return False
        self.win = win
        self.clerk = clerk
        body = json.dumps({"win": win, "clerk": clerk}).encode()
        fsutil.write_atomic(self.hal, self.hal.path(_FILE), body)
        return True

    def label(self):
        """What the display shows while idle: the window, and the clerk below it."""
        if self.clerk:
            return self.win + "\n" + self.clerk
        return self.win

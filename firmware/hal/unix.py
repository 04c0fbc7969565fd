"""Unix HAL: the unchanged firmware as a real MicroPython process on the 32-bit unix port.

Real sockets (asyncio streams, TLS through the tls module as on the ESP32), the port's monotonic
and wall clocks, the current directory as flash. Buttons, LEDs, buzzer and display are virtual:
whoever runs the process drives them over a control channel (simulator/mpy/device.py, a TCP
connection to 127.0.0.1), the way a test jig would wire GPIOs. Only this file and that runner
know they are not on an ESP32.

What the control side sees: every LED, tone and display change as one line, "o <what> <value>";
what it can do: press, release and tap buttons, take the Wi-Fi down and up.
"""

import asyncio
import gc
import sys
import time

from firmware.hal.buttons import VirtualButtons


class Reboot(BaseException):
    """Raised by reboot(): the process ends and its runner starts it again (a reset). A
    BaseException, so the firmware's crash handlers (except Exception) let it through."""


class UnixNet:
    """The device's Wi-Fi: up or cut by the control side; TCP (and TLS) through asyncio."""

    def __init__(self):
        self.up = True
        self._socks = []

    def is_up(self):
        return self.up

    def rssi(self):
        return -55 if self.up else -127

    async def open(self, host, port, ca=None):
        if not self.up:
            raise OSError(113, "wifi down")
        ctx = None
        if ca:
            from firmware.hal import tlsctx
            ctx = tlsctx.client(ca)
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
        # The firmware holds one connection at a time and closes the last before the next: the
        # few most recent sockets are all a cut has to close (closing a closed one is harmless).
        self._socks = self._socks[-3:] + [writer.s]
        return reader, writer

    def cut(self):
        """Wi-Fi lost: every open connection dies at once, as on the device."""
        self.up = False
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass
        self._socks = []

    def restore(self):
        self.up = True


class UnixHal(VirtualButtons):
    platform = "unix"
    root = "."

    def __init__(self, uid=b"\x0a\x1b\x2c\x3d\x4e\x5f", reset_cause="power-on", out=None):
        self.uid = uid
        self._reset_cause = reset_cause
        self.out = out                      # the control channel's writer (or None)
        self.net = UnixNet()
        self.has_display = True
        VirtualButtons.__init__(self)       # pressed and released over the control channel
        self.led_state = (False, False)
        self.tone_hz = 0
        self.text = ""
        self.wdt_timeout = 0
        self.cfg = None

    def setup(self, cfg):
        self.cfg = cfg                      # pins and Wi-Fi are virtual: nothing to configure

    # -- time --------------------------------------------------------------------------------
    ticks_ms = staticmethod(time.ticks_ms)
    ticks_diff = staticmethod(time.ticks_diff)
    ticks_add = staticmethod(time.ticks_add)

    def time(self):
        return time.time()

    async def sleep_ms(self, ms):
        await asyncio.sleep_ms(ms)

    def ntp(self):
        return None                         # the gateway's time command sets the clock

    # -- files: the current directory is the flash ---------------------------------------------
    def path(self, name):
        return name

    def fsync(self, f):
        f.flush()                           # in the kernel: survives a kill -9 of the process

    # -- feedback outputs (reported over the control channel) -----------------------------------
    def _emit(self, what, value):
        if self.out is not None:
            self.out.write(b"o %s %s\n" % (what, value))

    def led(self, red, green):
        if (red, green) != self.led_state:
            self.led_state = (red, green)
            self._emit(b"led", b"%d%d" % (red, green))

    def tone(self, hz):
        if hz != self.tone_hz:
            self.tone_hz = hz
            self._emit(b"tone", b"%d" % hz)

    def show(self, text):
        if text != self.text:
            self.text = text
            self._emit(b"show", text.replace("\n", "|").encode())

    # -- system --------------------------------------------------------------------------------
    def unique_id(self):
        return self.uid

    def reset_cause(self):
        return self._reset_cause

    def mem_free(self):
        return gc.mem_free()

    def mem_alloc(self):
        return gc.mem_alloc()

    def wdt_start(self, timeout_ms):
        self.wdt_timeout = timeout_ms       # no hardware watchdog: the runner watches the process

    def wdt_feed(self):
        pass

    def reboot(self, why="reboot"):
        raise Reboot(why)

    def log(self, text):
        sys.stdout.write(text)
        sys.stdout.write("\n")


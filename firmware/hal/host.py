"""Host HAL: virtual pins, LEDs, buzzer and display, a directory as flash, a controllable clock.

Used by the simulator (CPython) and by the tests (CPython and the wasm MicroPython), so
CPython-only modules are imported lazily, inside the methods that only CPython reaches.
Feedback outputs are recorded with the HAL clock's time, so a test can check that a press
got its light and beep within 50 ms.
"""

import gc
import os
import sys

from firmware.hal.buttons import VirtualButtons

try:
    from micropython import const
except ImportError:          # CPython
    def const(x):
        return x

_TICKS_MASK = const(0x3FFFFFFF)  # MicroPython's ticks wrap at 2^30; the host wraps the same way
_TICKS_HALF = const(0x20000000)
_CPYTHON = sys.implementation.name == "cpython"


class Reboot(BaseException):
    """Raised by reboot(): the device restarts. A BaseException, so the firmware's crash handlers
    (except Exception) let it through to whoever runs the device."""


def _real_ms():
    if _CPYTHON:
        import time
        return int(time.monotonic() * 1000)
    import time
    return time.ticks_ms()


class VirtualClock:
    """Milliseconds since the device started. speed 0: manual (advance() moves it);
    speed s > 0: real time times s (the simulator's accelerated clock)."""

    def __init__(self, speed=0, start_ms=0, wall_s=1767225600):
        self.speed = speed
        self.ms = start_ms
        self._real0 = _real_ms()
        self.wall_s = wall_s      # host wall time at ms 0 (what the device's RTC would say)

    def now(self):
        if self.speed:
            d = _real_ms() - self._real0
            if not _CPYTHON:
                d = d & _TICKS_MASK
            return self.ms + int(d * self.speed)
        return self.ms

    def advance(self, ms):
        self.ms += ms

    def set(self, ms):
        self.ms = ms


class HostHal(VirtualButtons):
    platform = "host"

    def __init__(self, root=".", clock=None, uid=b"\x0a\x1b\x2c\x3d\x4e\x5f", reset_cause="power-on",
                 display=True, durable=True, max_events=200, net=None, echo=False):
        self.root = root.rstrip("/")
        self.clock = clock if clock is not None else VirtualClock()
        self.uid = uid
        self._reset_cause = reset_cause
        self.has_display = display
        self.durable = durable              # fsync on CPython; tests of speed may turn it off
        self.max_events = max_events
        if net is None and _CPYTHON:       # MicroPython here (wasm) has no sockets: no net
            from firmware.hal.hostnet import HostNet
            net = HostNet()
        self.net = net
        self.echo = echo
        VirtualButtons.__init__(self)
        # Recorded outputs: (ms, what, value), the last max_events of them.
        self.events = []
        self.led_state = (False, False)
        self.tone_hz = 0
        self.text = ""
        self.logs = []
        self.wdt_timeout = 0
        self.wdt_feeds = 0
        self.last_feed = None

    # -- time ------------------------------------------------------------------------------
    def ticks_ms(self):
        return self.clock.now() & _TICKS_MASK

    def ticks_diff(self, a, b):
        return ((a - b + _TICKS_HALF) & _TICKS_MASK) - _TICKS_HALF

    def ticks_add(self, a, d):
        return (a + d) & _TICKS_MASK

    def time(self):
        return self.clock.wall_s + self.clock.now() // 1000

    async def sleep_ms(self, ms):
        import asyncio
        if self.clock.speed:
            await asyncio.sleep(ms / 1000 / self.clock.speed)
        else:
            self.clock.advance(ms)     # manual clock under asyncio: sleeping moves virtual time
            await asyncio.sleep(0)

    def ntp(self):
        return None                    # the host has no NTP; the gateway's time command sets the clock

    # -- files -----------------------------------------------------------------------------
    def path(self, name):
        return self.root + "/" + name

    def fsync(self, f):
        f.flush()
        if _CPYTHON and self.durable:
            os.fsync(f.fileno())

    # -- feedback outputs ------------------------------------------------------------------
    def _record(self, what, value):
        ev = self.events
        if len(ev) >= self.max_events:
            ev.pop(0)
        ev.append((self.clock.now(), what, value))

    def led(self, red, green):
        if (red, green) != self.led_state:
            self.led_state = (red, green)
            self._record("led", (red, green))

    def tone(self, hz):
        if hz != self.tone_hz:
            self.tone_hz = hz
            self._record("tone", hz)

    def show(self, text):
        if self.has_display and text != self.text:
            self.text = text
            self._record("show", text)

    def events_since(self, ms):
        return [e for e in self.events if e[0] >= ms]

    # -- system ----------------------------------------------------------------------------
    def unique_id(self):
        return self.uid

    def reset_cause(self):
        return self._reset_cause

    def mem_free(self):
        if hasattr(gc, "mem_free"):
            return gc.mem_free()
        return 90000                   # CPython: a stand-in for the ESP32's free heap at boot

    def mem_alloc(self):
        if hasattr(gc, "mem_alloc"):
            return gc.mem_alloc()
        return 0

    def wdt_start(self, timeout_ms):
        self.wdt_timeout = timeout_ms
        self.last_feed = self.clock.now()

    def wdt_feed(self):
        self.wdt_feeds += 1
        self.last_feed = self.clock.now()

    def wdt_expired(self):
        """True when a started watchdog has not been fed in time (the simulator then reboots)."""
        return bool(self.wdt_timeout) and self.clock.now() - self.last_feed > self.wdt_timeout

    def reboot(self, why="reboot"):
        raise Reboot(why)

    def log(self, text):
        logs = self.logs
        if len(logs) >= self.max_events:
            logs.pop(0)
        logs.append(text)
        if self.echo:
            print(text)

    def setup(self, cfg):
        self.cfg = cfg                     # pins and Wi-Fi are virtual: nothing to configure

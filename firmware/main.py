"""Boot sequence and the asyncio wiring of the evaluator.

Boot order matters: config, journal scan, then the new boot number is made durable before
anything can create a record; the app starts only after that. Firmware.step() is one
synchronous scan + tick (tests and the simulator's virtual time call it directly); run_async()
adds the watchdog, NTP, the link task and the 10 ms loop. /main.py calls run().
"""

from firmware import config
from firmware.app import App
from firmware.bootstate import BootState
from firmware.buttons import Buttons
from firmware.clock import Clock
from firmware.feedback import Feedback
from firmware.journal import Journal
from firmware.version import VERSION

try:
    from micropython import const
except ImportError:          # CPython
    def const(x):
        return x

_SCAN_MS = const(10)          # button scan + tick period: feedback within ~10 ms of a press
_HEALTHY_MS = const(30000)    # a boot counts as failed until the loop has run this long
_WDT_MS = const(8000)
_NTP_RETRY_MS = const(3600000)


class Firmware:
    def __init__(self, hal):
        """Boot: config -> HAL setup -> feedback, clock -> journal scan -> boot number incremented
        and durable (above every record's) -> app -> buttons. ConfigError: nothing to run."""
        self.hal = hal
        self.healthy = False
        self.link = None
        self._ntp_at = 0
        self.cfg = config.load(hal)
        for w in self.cfg.warnings:
            hal.log(w)
        hal.setup(self.cfg)
        self.feedback = Feedback(hal)            # "booting" light from here on
        self.clock = Clock(hal)
        self.journal = Journal(hal).open()
        state = BootState(hal)
        self.boot = state.begin(hal.reset_cause(), floor=self.journal.max_rb)
        self.safe = state.safe
        self.boot_fails = state.fails
        self.journal.begin(self.boot)
        if self.safe:
            hal.log("boot %d: safe mode after %d failed boots" % (self.boot, self.boot_fails))
        self.app = App(hal, self.cfg, self.journal, self.clock, self.clear_failed_boots, self.feedback,
                       safe=self.safe, now=self.clock.uptime())
        self.buttons = Buttons(hal, self.cfg)
        self._on_press = self.app.on_button      # bound once: no allocation per scan
        hal.log("firmware %s boot %d (%s) journal %d pending" % (
            VERSION, self.boot, hal.reset_cause(), self.journal.depth()))

    def step(self):
        """One scan: buttons, app tick, health. Returns the uptime it ran at."""
        now = self.clock.uptime()
        self.buttons.scan(now, self._on_press)
        self.app.tick(now)
        if not self.healthy and now >= _HEALTHY_MS:
            self.healthy = True
            boot = BootState(self.hal)
            boot.mark_healthy()
            self.boot_fails = boot.fails
        return now

    def clear_failed_boots(self):
        """The gateway's reboot command: forget failed boots (leaves safe mode at the next boot)."""
        BootState(self.hal).clear()
        self.boot_fails = 0

    def start_link(self):
        """Create the link (its key from the config's secret), wired to the app; None when
        firmware/link.py is not installed (the device then journals offline only)."""
        try:
            from firmware.link import Link
        except ImportError as e:
            self.hal.log("no link (%s): journaling offline only" % e)
            return None
        from protocol.auth import Key
        self.link = Link(self.hal, self.cfg, Key(self.cfg.secret), self.boot, self.journal, self.app)
        self.app.on_record = self.link.kick
        return self.link

    async def run_async(self):
        import asyncio
        hal = self.hal
        hal.wdt_start(_WDT_MS)
        link = self.start_link()
        if link is not None:
            asyncio.create_task(link.run())
        while True:
            now = self.step()
            if self.app.reboot_due(now):
                hal.log("rebooting on the gateway's command")
                self.journal.close()
                hal.reboot("command")
            hal.wdt_feed()                     # only a loop that got here is healthy
            if (not self.clock.synced and now >= self._ntp_at
                    and hal.net is not None and hal.net.is_up()):
                self._ntp_at = now + _NTP_RETRY_MS
                w = hal.ntp()
                if w:
                    self.clock.set_ntp(w, now)
            await hal.sleep_ms(_SCAN_MS)


def run():
    """Device entry point (/main.py). A crash reboots; a bad config stops at the REPL."""
    import asyncio
    import sys

    from firmware.config import ConfigError
    if sys.platform == "esp32":
        from firmware.hal.esp32 import Esp32Hal as Hal
    else:
        from firmware.hal.unix import UnixHal as Hal
    hal = Hal()
    try:
        fw = Firmware(hal)
    except ConfigError as e:
        hal.log("cannot start: %s" % e)
        return
    try:
        asyncio.run(fw.run_async())
    except Exception as e:                     # a bug: reboot, the boot counts as failed
        hal.log("main loop crashed: %r" % (e,))
        hal.reboot("main loop crashed")

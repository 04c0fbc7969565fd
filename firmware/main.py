"""Boot sequence and the asyncio wiring of the evaluator.

Boot order matters: config, journal scan, then the new boot number is made durable before
anything can create a record; the app starts only after that. Firmware.step() is one
synchronous scan + tick (tests and the simulator's virtual time call it directly); run_async()
adds the watchdog, NTP, the link task and the 10 ms loop. /main.py calls run().
"""

from firmware import rare

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
        self.hal = hal
        self.healthy = False
        self.link = None
        self._ntp_at = 0
        # The boot order (config, journal, durable boot number, app) is boot-only code: it lives
        # in firmware/bootstate.py, which is unloaded once it has run.
        rare("bootstate", "boot", self, hal)

    def step(self):
        """One scan: buttons, app tick, health. Returns the uptime it ran at."""
        now = self.clock.uptime()
        self.buttons.scan(now, self._on_press)
        self.app.tick(now)
        if not self.healthy and now >= _HEALTHY_MS:
            self.healthy = True
            boot = rare("bootstate", "BootState", self.hal)
            boot.mark_healthy()
            self.boot_fails = boot.fails
        return now

    def clear_failed_boots(self):
        """The gateway's reboot command: forget failed boots (leaves safe mode at the next boot)."""
        rare("bootstate", "BootState", self.hal).clear()
        self.boot_fails = 0

    def start_link(self):
        """Create the link task's object; None when firmware/link.py is not installed. Once per
        boot: the code is firmware.bootstate.start_link."""
        return rare("bootstate", "start_link", self)

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
        from firmware.hal.host import HostHal as Hal
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

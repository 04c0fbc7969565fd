"""Device time: uptime that survives the ticks wrap, and wall time from the gateway or NTP.

A record carries u (uptime ms at the press) always and w (Unix seconds) only when the clock
has been set; w=0 means "not synced", and the gateway reconstructs from u and the boot.
"""


class Clock:
    def __init__(self, hal):
        self.hal = hal
        self._last = hal.ticks_ms()
        self._uptime = 0
        self._offset = 0           # wall ms = uptime ms + offset
        self.synced = False
        self.source = ""           # "gateway" or "ntp"
        self.synced_at = 0         # uptime ms of the last sync

    def uptime(self):
        """Monotonic ms since boot; call often enough (< 6 days apart) to see every wrap."""
        now = self.hal.ticks_ms()
        self._uptime += self.hal.ticks_diff(now, self._last)
        self._last = now
        return self._uptime

    def set_wall(self, w, u, now):
        """The gateway's `time` command: wall w (s) answering our treq sent at uptime u.

        Half the round trip is added, as in SNTP; an unsolicited or implausible u (0, or in
        the future) means "w is now".
        """
        wall_ms = w * 1000
        if 0 < u <= now:
            wall_ms += (now - u) // 2
        self._offset = wall_ms - now
        self.synced = True
        self.source = "gateway"
        self.synced_at = now

    def set_ntp(self, w, now):
        self._offset = w * 1000 - now
        self.synced = True
        self.source = "ntp"
        self.synced_at = now

    def wall(self, now):
        """Unix seconds at uptime now, or 0 when the clock was never set."""
        if not self.synced:
            return 0
        return (now + self._offset) // 1000

"""Button scan with debounce: a press is taken at its first edge, the next press of that
button only after the button was seen released for debounce_ms.

Taking the first edge keeps feedback immediate; the release rule swallows contact bounce on
both press and release, however long the citizen holds the button. An IRQ latch in the HAL
catches taps shorter than one scan. Nothing here allocates per scan.
"""


class Buttons:
    def __init__(self, hal, cfg):
        self.hal = hal
        self.cfg = cfg                     # debounce_ms read per scan: a config command applies at once
        n = hal.button_count()
        self.n = n
        self._down = bytearray(n)          # 1 while a press is in progress
        self._up_since = [0] * n           # uptime when the button was first seen released
        self.presses = 0
        self.bounces = 0                   # edges swallowed by the debounce

    def settled(self, i):
        """True when button i's next press will be taken (its last one has been released for
        debounce_ms): a test jig waits for this instead of guessing the timing."""
        return not self._down[i]

    def scan(self, now, on_press):
        """Read every button once; call on_press(index, now) for each new press."""
        hal = self.hal
        for i in range(self.n):
            edge = hal.take_edge(i)
            level = hal.button_down(i)
            if not self._down[i]:
                if edge or level:
                    self._down[i] = 1
                    self._up_since[i] = -1 if level else now
                    self.presses += 1
                    on_press(i, now)
            elif level:
                if edge:
                    self.bounces += 1
                self._up_since[i] = -1
            else:
                if edge:
                    self.bounces += 1
                    self._up_since[i] = now
                elif self._up_since[i] < 0:
                    self._up_since[i] = now
                elif now - self._up_since[i] >= self.cfg.debounce_ms:
                    self._down[i] = 0

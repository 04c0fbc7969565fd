"""Five virtual buttons for the HALs without GPIOs (host, unix): a level and an edge latch per
button, as the ESP32 HAL's pins and falling-edge IRQ give them. press/release/tap are the test jig's
side; button_count/button_down/take_edge the firmware's (firmware/buttons.py scans them)."""

try:
    from micropython import const
except ImportError:          # CPython
    def const(x):
        return x

_N_BUTTONS = const(5)


class VirtualButtons:
    def __init__(self):
        self._level = bytearray(_N_BUTTONS)
        self._edge = bytearray(_N_BUTTONS)

    def press(self, i):
        self._level[i] = 1
        self._edge[i] = 1

    def release(self, i):
        self._level[i] = 0

    def tap(self, i):
        """A press shorter than one scan: only the IRQ edge latch sees it."""
        self._edge[i] = 1

    def button_count(self):
        return _N_BUTTONS

    def button_down(self, i):
        return self._level[i] == 1

    def take_edge(self, i):
        e = self._edge[i]
        self._edge[i] = 0
        return e == 1

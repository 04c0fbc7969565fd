"""The hardware boundary. `load()` picks the ESP32 HAL on the device, the host HAL elsewhere.

Both expose the same attributes (see docs/firmware.md, "HAL"); firmware code above this
package never imports machine, network or CPython-only modules.
"""

import sys


class Reboot(Exception):
    """Raised by the host HAL's reboot(): the simulator catches it and starts the device again."""


def load(**kw):
    if sys.platform == "esp32":
        from firmware.hal.esp32 import Esp32Hal
        return Esp32Hal(**kw)
    from firmware.hal.host import HostHal
    return HostHal(**kw)

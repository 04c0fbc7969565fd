"""Firmware of the five-button evaluator: the same code on the ESP32, in the simulator and in tests.

Only firmware/hal/ knows where it runs; everything else talks to a HAL object.
"""

VERSION = "0.1.0"


def unload(*names):
    """Drop modules so their bytecode leaves the heap (their interned names stay). The next import
    loads them again; nothing long-lived may keep a reference to them, their functions or classes.

    The rare-work modules (bootstate, cfgcheck, jmaint, appcmd, linkup) are unloaded after each
    use, and with them firmware.fsutil, which only they and the boot-time config load use."""
    import sys
    for name in names:
        sys.modules.pop(name, None)
        parent = sys.modules.get(name.rpartition(".")[0])
        leaf = name.rpartition(".")[2]
        if parent is not None and leaf in parent.__dict__:
            delattr(parent, leaf)

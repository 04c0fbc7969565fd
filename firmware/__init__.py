"""Firmware of the five-button evaluator: the same code on the ESP32, in the simulator and in tests.

Only firmware/hal/ knows where it runs; everything else talks to a HAL object.
"""

import sys

VERSION = "0.1.0"


def rare(module, name, *args):
    """firmware.<module>.<name>(*args) as rare work: the module is imported for the call and
    unloaded right after, with firmware.fsutil (only rare work uses it), so their bytecode does not
    stay in the device's RAM. What the call returns keeps working without the module."""
    path = "firmware." + module
    __import__(path)
    try:
        return getattr(sys.modules[path], name)(*args)
    finally:
        unload(path, "firmware.fsutil")


def unload(*names):
    """Drop modules so their bytecode leaves the heap (their interned names stay). The next import
    loads them again; nothing long-lived may keep a reference to them, their functions or classes.

    The rare-work modules (bootstate, cfgcheck, jmaint, appcmd, linkup, mqttconn) are unloaded
    after each use (rare() above, and the link's connection set-up)."""
    for name in names:
        sys.modules.pop(name, None)
        parent = sys.modules.get(name.rpartition(".")[0])
        leaf = name.rpartition(".")[2]
        if parent is not None and leaf in parent.__dict__:
            delattr(parent, leaf)

"""Firmware of the five-button evaluator: the same code on the ESP32, in the simulator and in tests.

Only firmware/hal/ knows where it runs; everything else talks to a HAL object.
"""

VERSION = "0.1.0"


def unload(name):
    """Drop a module so its bytecode leaves the heap (its interned names stay). The next import
    loads it again; nothing may keep a reference to it, its functions or its classes."""
    import sys
    sys.modules.pop(name, None)
    parent = sys.modules.get(name.rpartition(".")[0])
    leaf = name.rpartition(".")[2]
    if parent is not None and leaf in parent.__dict__:
        delattr(parent, leaf)

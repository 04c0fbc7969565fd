"""Wire protocol v1 of the haochaping rating stack.

One source for the device (MicroPython 1.27) and the gateway (CPython 3.11): only the
subset of Python both run is used here. See docs/protocol.md for the specification.
"""

VERSION = 1

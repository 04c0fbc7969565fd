"""Wire protocol v1 of the haochaping rating stack.

One source for the device (MicroPython 1.27) and the gateway (CPython 3.11): only the
subset of Python both run is used here. See docs/protocol.md for the specification.
The protocol version is protocol.messages.VERSION.

No code here on purpose: flash.py does not upload a docstring-only __init__.py, and MicroPython
imports the directory as a package without it (one module file fewer in the device's heap).
"""

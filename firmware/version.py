"""The firmware's version: what the device reports as `fw` (hello, heartbeat) and what flash.py
prints on its label, one identifier.

This file holds the release. Every build of the firmware (flash.py's upload set, the frozen image's
manifest) replaces it with one that adds a digest of the device's source files, e.g.
"0.2.0+3f2a9c1d04" (flashtool/fwid.py, the one place it is computed). Run from a checkout, the
device reports the release alone.
"""

VERSION = "0.2.0"

# The evaluator's firmware frozen into a MicroPython image: bytecode, constant strings and interned
# names stay in flash and run in place, so the device's RAM holds only its objects (the figures:
# docs/firmware.md, "Memory and size").
#
# ESP32 (hall IT's image, under ESP-IDF; recipe in docs/firmware.md, "The frozen image"):
#     make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=<repo>/firmware/manifest.py
# Unix port (the tests, the simulator's hall, the memory bench): scripts/build_micropython.sh
# includes this file with port="unix", which adds the unix HAL.
#
# What is frozen is exactly what flash.py would upload (flashtool/bundle.py, sources()), plus a
# generated firmware/version.py carrying the identifier flash.py's label shows (flashtool/fwid.py).
# A manifest is Python run by CPython at build time; relative paths are from this directory.
import os
import sys

options.defaults(port="esp32")  # noqa: F821 - manifest API
if options.port == "esp32":  # noqa: F821
    include("$(PORT_DIR)/boards/manifest.py")  # noqa: F821 - the stock image's frozen modules

_REPO = os.path.abspath("..")
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
import pathlib  # noqa: E402

from flashtool import bundle, fwid  # noqa: E402

_root = pathlib.Path(_REPO)
_files = bundle.sources(_root, unix=options.port == "unix")  # noqa: F821
_gen = _root / "build" / "frozen" / options.port  # noqa: F821
(_gen / "firmware").mkdir(parents=True, exist_ok=True)
_version = fwid.version_module(fwid.fw_id(_root, _files))
_vpath = _gen / "firmware" / "version.py"
if not _vpath.exists() or _vpath.read_bytes() != _version:
    _vpath.write_bytes(_version)
for _dev_path in sorted(_files):
    _rel = _dev_path.lstrip("/")
    if _rel != fwid.VERSION_PATH:
        module(_rel, base_path=_REPO)  # noqa: F821
module(fwid.VERSION_PATH, base_path=str(_gen))  # noqa: F821

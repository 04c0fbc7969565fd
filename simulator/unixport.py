"""The 32-bit unix MicroPython 1.27 that scripts/build_micropython.sh builds: where its binaries are,
the heap size of a classic ESP32, the device's .mpy set, and running code under it.

Two binaries (both with TLS: `tls`, micropython-lib's `ssl`; asyncio frozen):
- micropython-plain: the firmware comes from the device's flash directory as the .mpy set that
  flash.py uploads (compiled by flashtool.bundle, the same bytes);
- micropython-frozen: the firmware is frozen in (firmware/manifest.py), as in hall IT's ESP32 image.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import threading
from dataclasses import dataclass

REPO = pathlib.Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "micropython"
BUILDS = ("frozen", "mpy")
SETUP_HINT = "run `bash scripts/setup.sh` (it builds the unix MicroPython into .cache/micropython/)"

# A classic ESP32 (ESP32-WROOM-32, no PSRAM) gives MicroPython's GC heap 111,168 B, of which
# 91,088 B are free after boot (micropython.mem_info() and gc.mem_free() on an "ESP32 module",
# github.com/micropython/micropython issue 7043). The unix port itself holds ~3 KB of its heap
# before the firmware (the runtime, asyncio's import, the simulator's runner), so the runs get
# 94 KB: ~91 KB free at the point where the ESP32's figure was taken.
ESP32_FREE_HEAP = 91088
HEAPSIZE = "94K"


class UnixPortUnavailable(RuntimeError):
    """The unix MicroPython has not been built."""


_checked = False
_check_lock = threading.Lock()


def ensure_built() -> None:
    """Run scripts/build_micropython.sh once per process: a second or two when nothing changed,
    a relink of the frozen binary when the firmware did (so no run uses a stale frozen image)."""
    global _checked
    with _check_lock:
        if _checked:
            return
        r = subprocess.run(["bash", str(REPO / "scripts" / "build_micropython.sh")], capture_output=True,
                           text=True, timeout=1800)
        if r.returncode != 0:
            raise UnixPortUnavailable("building the unix MicroPython failed: %s; %s"
                                      % ((r.stderr or r.stdout).strip()[-500:], SETUP_HINT))
        _checked = True


def binary(build: str) -> pathlib.Path:
    """The interpreter for build "frozen" (firmware frozen in) or "mpy" (the .mpy set on flash)."""
    ensure_built()
    path = CACHE / ("micropython-frozen" if build == "frozen" else "micropython-plain")
    if not os.access(path, os.X_OK):
        raise UnixPortUnavailable(f"{path} is missing; {SETUP_HINT}")
    return path


_mpy_lock = threading.Lock()


def mpy_set() -> pathlib.Path:
    """A directory with the device's .mpy set as flash.py uploads it (flashtool.bundle.build), plus
    the unix HAL: what the plain interpreter imports the firmware from. Built once per firmware."""
    from flashtool import bundle, fwid

    out = CACHE / "mpy-set" / fwid.fw_id(REPO, bundle.sources(unix=True)).replace("+", "-")
    with _mpy_lock:
        if not (out / ".done").exists():
            tmp = out.with_name(out.name + ".tmp")
            b = bundle.build(compiled=True, unix=True)
            for dev_path, data in b.files.items():
                if dev_path.startswith(("/firmware/", "/protocol/")):
                    p = tmp / dev_path.lstrip("/")
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_bytes(data)
            (tmp / ".done").write_text(b.fw)
            os.replace(tmp, out)
    return out


def install_mpy_set(flash: pathlib.Path) -> None:
    """Put the .mpy set into a device's flash directory (firmware/, protocol/), as a provision does."""
    src = mpy_set()
    for f in src.rglob("*.mpy"):
        dst = flash / f.relative_to(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists() or dst.read_bytes() != f.read_bytes():
            dst.write_bytes(f.read_bytes())


@dataclass(frozen=True)
class UnixResult:
    stdout: str
    stderr: str
    returncode: int


def run_unix(code: str, *, build: str = "frozen", cwd: pathlib.Path | None = None, heapsize: str = HEAPSIZE,
             timeout: float = 60, path: tuple[str, ...] = ()) -> UnixResult:
    """Run code under the unix MicroPython (-X heapsize) and return its output. path: directories
    put first on sys.path (e.g. the repo root, to import firmware/ and protocol/ from source)."""
    prefix = "import sys\n" + "".join(f"sys.path.insert(0, {p!r})\n" for p in reversed(path))
    r = subprocess.run([str(binary(build)), "-X", f"heapsize={heapsize}", "-c", prefix + code],
                       capture_output=True, text=True, timeout=timeout, cwd=cwd)
    return UnixResult(r.stdout, r.stderr, r.returncode)

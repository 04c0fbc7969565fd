"""Run code under real MicroPython 1.27 (the npm WebAssembly port) from CPython.

Each call starts one node process (simulator/mpy/run.mjs), copies the repo's protocol/ and
firmware/ sources into MicroPython's in-memory filesystem at the same paths as on the device
(/protocol/..., /firmware/...), runs the code and returns its output.

Differences from an ESP32 that callers must know (measured on 1.27.0, pyscript variant):
- no socket, machine, network, ssl modules; hashlib has only sha256;
- the heap grows on demand (gc.mem_free() reports ~134 MB): measure with gc.mem_alloc();
- OSError numbers are emscripten's (ENOENT is 44, not 2): compare with errno.ENOENT;
- no asyncio.run: pass is_async=True and end the code with a top-level ``await main()``;
  asyncio.wait_for(asyncio.sleep(...)) fails with "coroutine expected";
- a running program cannot be interrupted, so the timeout kills node.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().parent / "mpy" / "run.mjs"
PACKAGE_DIR = REPO_ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
SETUP_HINT = "run `bash scripts/setup.sh` from the repo root (installs node, npm and node_modules)"


@dataclass(frozen=True)
class MPResult:
    stdout: str
    stderr: str
    returncode: int


class MicroPythonError(Exception):
    """An uncaught Python exception inside MicroPython; ``traceback`` is MicroPython's text."""

    def __init__(self, stdout: str, stderr: str, *, exc_type: str = "", traceback: str = "") -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.exc_type = exc_type
        self.traceback = traceback or stderr
        super().__init__(f"MicroPython raised {exc_type or 'an exception'}:\n{self.traceback}")


class MicroPythonTimeout(TimeoutError):
    """The program ran past the timeout and node was killed; output up to then is kept."""

    def __init__(self, timeout: float, stdout: str, stderr: str) -> None:
        self.stdout = stdout
        self.stderr = stderr
        tail = stdout[-1000:]
        super().__init__(f"MicroPython did not finish within {timeout} s; stdout tail:\n{tail}")


class MicroPythonUnavailable(RuntimeError):
    """node or the npm MicroPython package is missing."""


class MicroPythonRunnerError(RuntimeError):
    """run.mjs itself failed (not the Python program)."""


class RunMicroPython(Protocol):
    """The type of run_micropython, for fixtures and callers that receive it as a value."""

    def __call__(
        self,
        code: str,
        *,
        files: dict[str, bytes | str] | None = None,
        tree: Iterable[Path | str] = ("protocol", "firmware"),
        timeout: float = 60,
        is_async: bool = False,
        cwd_fs: str = "/",
    ) -> MPResult: ...


def node_executable() -> str:
    node = os.environ.get("HCP_NODE") or shutil.which("node")
    if not node:
        raise MicroPythonUnavailable(f"node is not installed; {SETUP_HINT}")
    return node


def check_runtime() -> str:
    """Raise MicroPythonUnavailable with a setup hint unless node and the package are present."""
    node = node_executable()
    for needed in (PACKAGE_DIR / "micropython.mjs", PACKAGE_DIR / "micropython.wasm", RUNNER):
        if not needed.is_file():
            raise MicroPythonUnavailable(f"{needed} is missing; {SETUP_HINT}")
    return node


def _tree_files(trees: Iterable[Path | str]) -> dict[str, bytes]:
    """Every .py under each tree, keyed by its device path (/protocol/codec.py).

    Relative trees are taken from the repo root; a tree inside the repo keeps its repo-relative
    path, one outside it is mounted under its own name. Missing trees are skipped (git does not
    keep empty directories, and a fresh checkout may not have firmware/ yet).
    """
    out: dict[str, bytes] = {}
    for t in trees:
        root = Path(t) if Path(t).is_absolute() else REPO_ROOT / t
        root = root.resolve()
        if not root.is_dir():
            continue
        try:
            mount = "/" + root.relative_to(REPO_ROOT).as_posix()
        except ValueError:
            mount = "/" + root.name
        for f in sorted(root.rglob("*.py")):
            if "__pycache__" in f.parts:
                continue
            out[f"{mount}/{f.relative_to(root).as_posix()}"] = f.read_bytes()
    return out


def _fs_path(path: str, cwd_fs: str) -> str:
    p = path if path.startswith("/") else f"{cwd_fs.rstrip('/')}/{path}"
    return os.path.normpath(p)


def run_micropython(
    code: str,
    *,
    files: dict[str, bytes | str] | None = None,
    tree: Iterable[Path | str] = ("protocol", "firmware"),
    timeout: float = 60,
    is_async: bool = False,
    cwd_fs: str = "/",
) -> MPResult:
    """Run ``code`` under MicroPython 1.27 and return its output.

    ``files`` are extra files for the in-memory FS (absolute, or relative to ``cwd_fs``); they are
    written after the source trees, so they can override a module. With ``is_async`` the code runs
    via runPythonAsync and must await at top level (``await main()``). Raises MicroPythonError for
    an uncaught exception, MicroPythonTimeout when node had to be killed. SystemExit(n) is not an
    error: it returns ``returncode == n``.
    """
    node = check_runtime()
    fs_files = _tree_files(tree)
    for path, content in (files or {}).items():
        fs_files[_fs_path(path, cwd_fs)] = content.encode() if isinstance(content, str) else content
    status_r, status_w = os.pipe()
    job: dict[str, Any] = {
        "code": code,
        "files": {p: base64.b64encode(b).decode("ascii") for p, b in fs_files.items()},
        "is_async": is_async,
        "cwd": cwd_fs,
        "status_fd": status_w,
    }
    try:
        proc = subprocess.Popen(
            [node, str(RUNNER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(status_w,),
            cwd=REPO_ROOT,  # node resolves the package from REPO_ROOT/node_modules
        )
    finally:
        os.close(status_w)  # only the child holds the write end: EOF once it exits
    try:
        try:
            out_b, err_b = proc.communicate(json.dumps(job).encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out_b, err_b = proc.communicate()
            raise MicroPythonTimeout(timeout, _text(out_b), _text(err_b)) from None
        status_raw = _read_all(status_r)
    finally:
        os.close(status_r)
    stdout, stderr = _text(out_b), _text(err_b)
    try:
        status: dict[str, Any] = json.loads(status_raw) if status_raw else {}
    except ValueError:
        status = {}
    kind = status.get("status")
    if kind == "exception":
        raise MicroPythonError(stdout, stderr, exc_type=str(status.get("type", "")),
                               traceback=str(status.get("traceback", "")))
    if kind in ("ok", "exit"):
        return MPResult(stdout, stderr, proc.returncode)
    detail = status.get("error") or stderr[-2000:] or f"exit code {proc.returncode}"
    raise MicroPythonRunnerError(f"run.mjs failed: {detail}")


def _text(b: bytes) -> str:
    return b.decode("utf-8", errors="replace")


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)

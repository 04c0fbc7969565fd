"""Shared fixtures: a real mosquitto per test and the real MicroPython 1.27 runner.

Logic lives in simulator/ and tests/harness/; this file only wires it into pytest. Importing
``harness`` works because pytest puts this directory (tests/) on sys.path for its conftest.
"""

from __future__ import annotations

import sys
from pathlib import Path

# pytest puts tests/ on sys.path (this conftest is not in a package), where tests/protocol,
# tests/gateway, tests/firmware and tests/simulator are namespace-package candidates. The editable
# install's finder runs only after sys.path is searched, so without the repo root on sys.path
# "import protocol" gets tests/protocol ("cannot import name ... (unknown location)"). With it,
# the real packages win: a regular package anywhere on sys.path beats a namespace portion.
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402
from harness.mqtt import TEST_USERS  # noqa: E402

from simulator.broker import Mosquitto, standard_acl  # noqa: E402
from simulator.micropython import (  # noqa: E402
    MicroPythonUnavailable,
    RunMicroPython,
    check_runtime,
    run_micropython,
)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A started broker: users gateway/gwpass, dev-a/pa, dev-b/pb and the standard ACL (~20 ms)."""
    with Mosquitto(tmp_path / "mosquitto", users=TEST_USERS, acl=standard_acl()) as b:
        yield b


@pytest.fixture(scope="session")
def mpy_runtime() -> None:
    """Fail (never skip) when node or the npm MicroPython package is missing."""
    try:
        check_runtime()
    except MicroPythonUnavailable as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def mpy(mpy_runtime: None) -> RunMicroPython:
    """``run_micropython``: run code under real MicroPython 1.27 (WebAssembly under node)."""
    return run_micropython

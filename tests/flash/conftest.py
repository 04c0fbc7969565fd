"""Fixtures for flash.py tests: a virtual serial board and a registration server (both real)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# flashtool may not be in the installed package list yet (pyproject include): use the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flash_support import RegistryServer  # noqa: E402

from simulator.serial_device import VirtualSerialDevice  # noqa: E402


@pytest.fixture
def vdev(tmp_path: Path) -> Iterator[VirtualSerialDevice]:
    """A fresh virtual board (unique id 0a1b2c3d4e5f) with its filesystem mirrored to tmp_path."""
    with VirtualSerialDevice(uid="0a1b2c3d4e5f", state_dir=tmp_path / "board", exec_timeout=10) as dev:
        yield dev


@pytest.fixture
def registry() -> Iterator[RegistryServer]:
    server = RegistryServer().start()
    yield server
    server.stop()

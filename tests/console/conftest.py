"""Fixtures for the web console's HTTP-level tests (both store backends: HCP_STORE)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).parent))

from console_support import App, running_console  # noqa: E402


@pytest.fixture
async def app(tmp_path: Path, store_url: str) -> AsyncIterator[App]:
    """The gateway's aiohttp app with the console, on a seeded store; accounts admin, liaison
    (department A), super, viewer, admin_b (department B), admin_h2 (hall-2), password PASSWORD."""
    async with running_console(tmp_path, store_url) as a:
        yield a

"""Fixtures for the hall-admin tests: a real SQLite store with devices, windows and clerks."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# The repo root first (see tests/conftest.py), then this directory for adm_support.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).parent))

from adm_support import Store, open_store  # noqa: E402


@pytest.fixture
async def store(tmp_path: Path, store_url: str) -> AsyncIterator[Store]:
    """gateway.db in tmp_path, migrated, with devices dev-1..dev-3, windows A01..A03,
    clerks zhang/li/wang; hall open every day around the clock unless a test changes it."""
    s = await open_store(tmp_path, store_url)
    try:
        yield s
    finally:
        await s.db.close()

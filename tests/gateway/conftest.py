"""Fixtures for the gateway tests: a real broker, a real SQLite file, the real gateway process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The repo root first: otherwise tests/protocol/ (no __init__) shadows the real `protocol`
# package as a namespace package under the editable install's path hook.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).parent))

from gw_support import GatewayEnv, make_env  # noqa: E402


@pytest.fixture
def gw_env(tmp_path: Path, store_url: str) -> Iterator[GatewayEnv]:
    """Broker + registered devices dev-a, dev-b + a started gateway (batch_ms 5)."""
    env = make_env(tmp_path, ["dev-a", "dev-b"], store_url=store_url)
    try:
        env.gateway.start()
        yield env
    finally:
        env.gateway.terminate()
        env.broker.stop()


@pytest.fixture
def gw_env_factory(tmp_path: Path, store_url: str) -> Iterator[object]:
    """make_env(...) with cleanup; the test starts the gateway itself."""
    made: list[GatewayEnv] = []

    def factory(device_ids: list[str], **kw: object) -> GatewayEnv:
        kw.setdefault("store_url", store_url)
        env = make_env(tmp_path, device_ids, **kw)  # type: ignore[arg-type]
        made.append(env)
        return env

    yield factory
    for env in made:
        env.gateway.terminate()
        env.broker.stop()

"""The group committer's batch window counts from the oldest queued record's arrival.

Records that arrived while the previous batch was committing have already waited; holding
them for a whole window again made every round trip a commit plus a window (measured in
bench/ingest.py: ~5 ms of each ~10 ms cycle, the largest single cost of the closed loop).
The store step is replaced by a slow stand-in here so the timing is deterministic: this
tests the scheduling policy only (the real batch transaction is covered by test_gw_ingest).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from gateway import timesync
from gateway.config import parse_config
from gateway.ingest import Ingest, PendingRecord
from gateway.mqtt import Downlink
from gateway.registry import DeviceState
from protocol.auth import Key

WINDOW_MS = 200
COMMIT_S = 0.3


class SlowStore(Ingest):
    """Ingest whose batch transaction takes COMMIT_S and records when each one started."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.started: list[tuple[float, list[str]]] = []

    async def _store(self, batch: list[PendingRecord]) -> int:
        self.started.append((time.monotonic(), [p.rid for p in batch]))
        await asyncio.sleep(COMMIT_S)
        return len(batch)


def _rec(st: DeviceState, seq: int) -> dict[str, Any]:
    return {"t": "rec", "d": st.device_id, "b": 1, "n": seq, "k": "walkup", "rb": 1, "rs": seq,
            "g": "s", "i": "", "w": 0, "u": seq * 1000, "v": 1}


async def test_records_that_waited_during_a_commit_are_not_held_for_another_window(tmp_path: Path) -> None:
    cfg = parse_config({"store": {"path": str(tmp_path / "gw.db")},
                        "ingest": {"batch_ms": WINDOW_MS, "batch_max": 500}}, tmp_path)
    st = DeviceState("dev-1", "00" * 32, Key("00" * 32))
    ingest = SlowStore(cfg, None, None, timesync.Anchors(), Downlink(None))  # type: ignore[arg-type]
    committer = asyncio.create_task(ingest.run_committer())
    try:
        t0 = time.monotonic()
        ingest._on_rec(st, _rec(st, 1), 0)
        await asyncio.sleep(WINDOW_MS / 1000 + 0.05)  # first batch is committing now
        assert [rids for _, rids in ingest.started] == [["dev-1:1:1"]]
        ingest._on_rec(st, _rec(st, 2), 0)             # arrives during that commit
        await asyncio.sleep(COMMIT_S + 0.1)
        assert [rids for _, rids in ingest.started] == [["dev-1:1:1"], ["dev-1:1:2"]]
        first, second = ingest.started[0][0] - t0, ingest.started[1][0] - t0
        # The first record waited its window; the second had waited ~250 ms by the time the
        # first commit ended (t ~ 0.5 s) and goes at once, not a window later (t ~ 0.7 s).
        assert first == pytest.approx(WINDOW_MS / 1000, abs=0.08)
        assert second < WINDOW_MS / 1000 + COMMIT_S + 0.08, ingest.started
        # A record arriving to an idle committer still gets its full window.
        await asyncio.sleep(COMMIT_S)
        t3 = time.monotonic()
        ingest._on_rec(st, _rec(st, 3), 0)
        await asyncio.sleep(WINDOW_MS / 1000 + 0.1)
        assert ingest.started[2][1] == ["dev-1:1:3"]
        assert ingest.started[2][0] - t3 == pytest.approx(WINDOW_MS / 1000, abs=0.08)
    finally:
        committer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await committer

"""Push runs against the real stand-in: delivery, dedupe after a lost ack, per-record
rejection, policies per record kind, resume after restart."""

from __future__ import annotations

from up_support import Seeder, fast_settings

from gateway.store.db import Database
from gateway.uplink import state
from gateway.uplink.push import push_once
from simulator.platform import PlatformStandIn


async def test_push_delivers_every_record_once(gwdb: Database, seeder: Seeder,
                                               platform: PlatformStandIn) -> None:
    ids = await seeder.records("hcp-dev1", "2025-03-03", 120)
    report = await push_once(gwdb, fast_settings(platform.url))
    assert report.ok and report.accepted == 120 and report.batches == 3
    assert platform.accepted_ids() == sorted(ids)
    assert await state.status_counts(gwdb) == {"acked": 120}
    again = await push_once(gwdb, fast_settings(platform.url))
    assert again.ok and again.batches == 0
    assert platform.stats()["received_total"] == 120

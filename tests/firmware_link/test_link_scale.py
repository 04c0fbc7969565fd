"""Many links in one CPython process (the simulator runs up to 1,000): N devices connect to a
real mosquitto, each sends 2 records that a gateway stand-in acks; reports heap per link
(tracemalloc) and the time to get everyone connected and drained."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parent)]
from link_testkit import GATEWAY, SECRET, GatewayStub, StubApp, make_hal, make_journal, until  # noqa: E402

from firmware.link import Link  # noqa: E402
from protocol.auth import Key  # noqa: E402
from simulator.broker import Mosquitto, standard_acl  # noqa: E402

N = int(os.environ.get("HCP_LINK_SCALE_N", "200"))


class AckAll(GatewayStub):
    """Acks every record of every device (the stub's own ack() is for one device)."""

    async def _on(self, msg: Any) -> None:
        from protocol import messages, topics

        payload = bytes(msg.payload)
        dev = str(msg.topic).split("/")[3]
        m = messages.decode(payload, self.key, str(msg.topic))
        self.received.append((str(msg.topic), m, bool(msg.retain)))
        if m["t"] == "rec":
            self.n += 1
            ack = {"t": "ack", "d": dev, "b": 1, "n": self.n, "a": [[m["rb"], m["rs"]]]}
            assert self._client is not None
            await self._client.publish(topics.down(dev, "ack"), messages.sign(ack, self.key), qos=1)


@pytest.mark.slow
async def test_many_links_in_one_process(tmp_path: Path) -> None:
    ids = ["dev-%03d" % i for i in range(N)]
    users = {GATEWAY[0]: GATEWAY[1], **{d: "pw" for d in ids}}
    with Mosquitto(tmp_path / "mosq", users=users, acl=standard_acl()) as broker:
        gw = await AckAll(broker.port).start()
        links: list[Link] = []
        journals = []
        tasks = []
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        t0 = time.monotonic()
        try:
            for d in ids:
                hal = make_hal(tmp_path / d)
                hal.durable = False          # no fsync: measure the link, not the disk
                j = make_journal(hal, 1)
                journals.append(j)
                cfg = {"device_id": d, "secret": SECRET, "hb_s": 180, "cfg": 1,
                       "broker": {"host": broker.host, "port": broker.port, "password": "pw"}}
                link = Link(hal, cfg, Key(SECRET), 1, j, StubApp(hal))
                link.client.backoff_min_ms = 200
                links.append(link)
                tasks.append(asyncio.create_task(link.run()))
            await until(lambda: all(lk.connected for lk in links), 60, "all connected")
            t_conn = time.monotonic() - t0
            per_link = (tracemalloc.get_traced_memory()[0] - base) / N
            tracemalloc.stop()                # it slows everything down several times
            t1 = time.monotonic()
            for j, lk in zip(journals, links, strict=True):
                j.append("walkup", "s", "", 0, 1)
                j.append("walkup", "vs", "", 0, 2)
                lk.kick()
            await until(lambda: all(j.depth() == 0 for j in journals), 60, "all records acked")
            t_drain = time.monotonic() - t1
            print("\n%d links: connected in %.2f s (under tracemalloc), %d records sent and acked in %.2f s, "
                  "~%.0f bytes heap per device (HAL, journal, app stub, link, client, streams, tasks)"
                  % (N, t_conn, 2 * N, t_drain, per_link))
            assert sum(lk.records_acked for lk in links) == 2 * N
            assert all(lk.client.reconnects == 0 for lk in links)
        finally:
            tracemalloc.stop()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for lk in links:
                lk.close()
            for j in journals:
                j.close()
            await gw.stop()

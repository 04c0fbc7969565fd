"""Benchmark: N buffered ratings (default 100,000) pushed to the platform stand-in.

    .venv/bin/python bench/push.py [--records 100000] [--batch-size 500] [--rate 20]

Seeds a fresh gateway store (all migrations) with N rated records and their invitations,
starts the stand-in as its own process (`python -m simulator.platform`, SQLite file),
runs one push (the same Pusher the gateway uses), checks the platform holds every record
exactly once, and prints records/s. Exit 1 if anything is missing or doubled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.store import Store, open_store  # noqa: E402
from gateway.store.api import Tx  # noqa: E402
from gateway.uplink.push import Pusher  # noqa: E402
from gateway.uplink.settings import UplinkSettings  # noqa: E402
from simulator.netutil import free_port, wait_port  # noqa: E402

DAY_MS = 1741_000_000_000   # 2025-03-03 around 19:06 UTC; records spread over the following days
CHUNK = 20_000


async def seed(store: Store, n: int, devices: int = 20) -> None:
    """n rated records, each with its invitation, pending upload (through the store's
    repositories; invitations in bulk through the unit's connection, as bench/console.py)."""
    from gateway import bindings, uscc
    from gateway.devices import add_device
    await store.write(lambda tx: [add_device(tx, "hcp-bench%02d" % d, "00" * 32, "1.0", "bench", 0)
                                  for d in range(devices)])
    dept = uscc.complete("11540102MB0000001")
    for d in range(devices):
        await bindings.add_window(store, "W%02d" % d, dept, "W%02d" % d, "bench")
        await bindings.add_staff(store, "clerk%02d" % d, "clerk%02d" % d, "bench")
        await bindings.pair(store, "hcp-bench%02d" % d, "W%02d" % d, "clerk%02d" % d, "bench", at_ms=1000)
    ids = {d: (await store.read(lambda tx, d=d: tx.bindings.active_for_device("hcp-bench%02d" % d)))
           for d in range(devices)}
    for lo in range(0, n, CHUNK):
        def unit(tx: Tx, lo: int = lo, hi: int = min(n, lo + CHUNK)) -> None:
            invs, recs = [], []
            for i in range(lo, hi):
                d = i % devices
                b = ids[d]
                assert b is not None
                dev, seq = "hcp-bench%02d" % d, i // devices + 1
                rid, inv, t = "%s:1:%d" % (dev, seq), "inv%d" % i, DAY_MS + i * 2000
                grade = ("vs", "s", "bs", "d", "vd")[i % 5]
                invs.append((inv, dev, b.window_id, b.staff_account, b.id, "CASE%08d" % i, "T0001", "换领",
                             "", 1 + i % 2, 60, "rated", t - 60000, t + 60000, t, rid, grade, "bench"))
                recs.append({"record_id": rid, "device_id": dev, "rb": 1, "rs": seq, "kind": "rated",
                             "grade": grade, "invitation_id": inv, "device_wall_s": t // 1000,
                             "uptime_ms": seq * 1000, "pressed_at_ms": t, "time_source": "device",
                             "received_at_ms": t + 40, "msg_boot": 1, "binding_id": b.id,
                             "window_id": b.window_id, "staff_account": b.staff_account, "flags": ""})
            tx.raw.executemany(  # type: ignore[attr-defined]
                "INSERT INTO invitations (id, device_id, window_id, staff_account, binding_id, case_no,"
                " task_code, task_name, dept_code, applicant_type, countdown_s, status, created_ms,"
                " expires_ms, closed_ms, record_id, grade, created_by) VALUES (%s)" % ",".join("?" * 18),
                invs)
            tx.records.insert_many(recs)
        await store.write(unit)


def stats(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url + "/admin/stats", timeout=30) as r:
        result: dict[str, object] = json.loads(r.read())
        return result


async def bench(args: argparse.Namespace, work: Path) -> int:
    store = await open_store(str(work / "gateway.sqlite"))
    t0 = time.monotonic()
    await seed(store, args.records)
    print("seeded %d records in %.1f s" % (args.records, time.monotonic() - t0), flush=True)
    port = free_port()
    # Started once, before the timed part: a blocking Popen here is harmless.
    proc = subprocess.Popen([sys.executable, "-m", "simulator.platform", "--port", str(port),  # noqa: ASYNC220
                             "--db", str(work / "platform.sqlite")], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port("127.0.0.1", port, time.monotonic() + 20, proc)
        url = "http://127.0.0.1:%d" % port
        settings = UplinkSettings(url=url, area_code="540102", batch_size=args.batch_size,
                                  max_batches_per_second=args.rate)
        pusher = Pusher(store, settings)
        t0 = time.monotonic()
        report = await pusher.run()
        elapsed = time.monotonic() - t0
        await pusher.close()
        held = stats(url)
    finally:
        proc.terminate()
        proc.wait(10)
        await store.close()
    rate = report.acked / elapsed if elapsed else 0.0
    print("pushed %d records in %d batches of %d (limit %.0f batches/s): %.1f s, %.0f records/s"
          % (report.acked, report.batches, args.batch_size, args.rate, elapsed, rate))
    print("platform holds %s records, received %s in total, %s rejected"
          % (held["accepted"], held["received_total"], held["rejected"]))
    ok = report.ok and held["accepted"] == args.records and held["received_total"] == args.records
    print("OK" if ok else "FAILED: not every record delivered exactly once")
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--rate", type=float, default=20.0, help="max batches per second")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hcp-bench-push-"))
    try:
        return asyncio.run(bench(args, work))
    finally:
        if not args.keep:
            for f in sorted(work.iterdir()):
                f.unlink()
            os.rmdir(work)


if __name__ == "__main__":
    sys.exit(main())

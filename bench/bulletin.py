"""How fast are quarterly bulletins over a year of a district?

Loads a year (2025) of a district into a fresh store — the district centre and 8 town
centres, 20 departments, 100 windows and clerks, >= 400,000 ratings (each with its
invitation, its case in the feed and its platform acknowledgement), ~4% invitations never
rated (their default ratings uploaded), ~5% cases never invited — bulk-loaded through the
store's repositories (not the ingest path: that is bench/ingest.py's subject). Then, on the
same store, times

    baseline    one grouped full scan of the ratings table
                (SELECT window_id, grade, count(*) FROM records GROUP BY window_id, grade)
    bulletins   the 2025-Q2 bulletin by department and by hall (gateway.bulletin.make_bulletin:
                every query, the charts' trend included, in one read unit of work)

and prints each as milliseconds and as a ratio to the baseline measured in the same run
(best of --repeat). Goal: each bulletin <= 1 s and <= 3x the baseline.

    .venv/bin/python bench/bulletin.py [--ratings 400000] [--backend sqlite|postgresql|both]
                                       [--repeat 5] [--seed 1]

PostgreSQL: a server of its own in a temporary directory (tests/harness/postgres.py, as the
tests start it), stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from gateway import bindings, org, uscc  # noqa: E402
from gateway.bulletin import make_bulletin  # noqa: E402
from gateway.config import Config, parse_config  # noqa: E402
from gateway.devices import add_device  # noqa: E402
from gateway.periods import parse_period  # noqa: E402
from gateway.store import Store, open_store  # noqa: E402
from gateway.store.api import Tx  # noqa: E402
from gateway.store.rows import CaseRow, NewInvitation  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
CHUNK = 20_000
GRADES = (("vs", 0.95), ("s", 0.035), ("bs", 0.01), ("d", 0.004), ("vd", 0.001))


def _dept(i: int) -> str:
    return uscc.complete("11370303%09d" % (100 + i))


async def build(store: Store, cfg: Config, n_ratings: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    default = cfg.hall
    t_org = int(dt.datetime(2024, 12, 1, tzinfo=TZ).timestamp() * 1000)
    halls = ["centre"] + ["town-%d" % k for k in range(1, 9)]
    for h in halls[1:]:
        await org.add_hall(store, default, h, org.HallSpec(name=h + "便民服务中心", kind="town"), "bench",
                           at_ms=t_org)
    for i in range(20):
        await org.add_department(store, default, _dept(i), "部门%02d" % i, None, "bench", at_ms=t_org)
    windows = []
    await store.write(lambda tx: [add_device(tx, "bd-%03d" % k, "ab" * 32, "b", "bench",
                                             t_org) for k in range(100)])
    for k in range(100):
        hall = None if k < 76 else halls[1 + (k - 76) % 8]
        dept = _dept(k % 20)
        wid = "W%03d" % k
        await org.add_window(store, default, wid, dept, "窗口%03d" % k, hall, "bench", at_ms=t_org)
        await org.add_staff(store, "c%03d" % k, "工作人员%03d" % k, dept, "bench", at_ms=t_org)
        b = await bindings.pair(store, "bd-%03d" % k, wid, "c%03d" % k, "bench", at_ms=t_org + 1000)
        assert b.created is not None
        windows.append((wid, "c%03d" % k, "bd-%03d" % k, hall, dept, b.created.id))
    # Working days of 2025, opening hours 08:30-17:30.
    days = [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(365)]
    days = [d for d in days if d.weekday() < 5]
    # Busier windows at the centre (the first 76), as in the seed.
    weights = [8.0 if k < 76 else 1.0 for k in range(100)]
    counts = {"records": 0, "invitations": 0, "cases": 0, "uplink": 0}
    seq = {w[2]: 0 for w in windows}
    pending: dict[str, list[Any]] = {"records": [], "invitations": [], "cases": [], "uplink": [],
                                     "outcomes": []}
    grade_codes = [g for g, _ in GRADES]
    grade_w = [w for _, w in GRADES]

    async def flush() -> None:
        recs, invs, cases, ups, outs = (pending[k] for k in ("records", "invitations", "cases", "uplink",
                                                             "outcomes"))
        batch = "bench%d" % counts["uplink"]
        now = int(dt.datetime(2026, 1, 5, tzinfo=TZ).timestamp() * 1000)

        def unit(tx: Tx) -> None:
            for n, (inv_id, status, closed, rid, grade) in zip(invs, outs, strict=True):
                tx.invitations.insert(n)     # one pending invitation per device at a time
                if status == "expired":
                    tx.invitations.expire(inv_id, "bench")
                else:
                    tx.invitations.set_outcome(inv_id, status, closed, None, rid, grade)
            tx.records.insert_many(recs)
            tx.cases.insert_many(cases)
            tx.uplink.mark_sent(batch, "x", [(u, f, i) for u, f, i, _ in ups], now)
            tx.uplink.apply_results(batch, [(a, "accepted", u) for u, _, _, a in ups], [], (len(ups), 0, 0),
                                    now,
                                    None)
        await store.write(unit)
        counts["records"] += len(recs)
        counts["invitations"] += len(invs)
        counts["cases"] += len(cases)
        counts["uplink"] += len(ups)
        for v in pending.values():
            v.clear()

    made = 0
    case_no = 0
    # Day after day, in time order within the day, as a hall's systems write them.
    per_day = n_ratings / len(days) / 0.91
    plan: list[tuple[int, tuple[Any, ...]]] = []
    day_i = -1
    while made < n_ratings:
        if not plan:
            day_i += 1
            day = days[day_i % len(days)]
            base = int(dt.datetime.combine(day, dt.time(8, 30), TZ).timestamp() * 1000)
            plan = sorted(((base + rng.randint(0, 9 * 3600_000 - 600_000), rng.choices(windows, weights)[0])
                           for _ in range(int(per_day) + 1)), reverse=True)
        accepted, w = plan.pop()
        wid, clerk, dev, hall, dept, bid = w
        case_no += 1
        cno = "BC%08d" % case_no
        pending["cases"].append(CaseRow(cno, hall, wid, clerk, "", dept, "T%d" % (case_no % 40), "事项",
                                        "finished", accepted, accepted + 300_000, accepted, accepted,
                                        "bench"))
        r = rng.random()
        if r < 0.05:
            continue                                 # never invited
        created = accepted + 310_000
        inv = "bi%08d" % case_no
        pending["invitations"].append(NewInvitation(inv, dev, wid, clerk, bid, cno, "T%d" % (case_no % 40),
                                                    "事项",
                                                    dept, 1, 60, created, created + 90_000, "bench",
                                                    hall_id=hall))
        if r < 0.09:                                 # never rated: expired, its default uploaded
            pending["outcomes"].append((inv, "expired", 0, "", None))
            pending["uplink"].append(("inv:" + inv, 1, inv, created + 100_000))
        else:
            seq[dev] += 1
            rid = "%s:1:%d" % (dev, seq[dev])
            pressed = created + rng.randint(3_000, 40_000)
            grade = rng.choices(grade_codes, grade_w)[0]
            pending["records"].append({
                "record_id": rid, "device_id": dev, "rb": 1, "rs": seq[dev], "kind": "rated", "grade": grade,
                "invitation_id": inv, "device_wall_s": pressed // 1000, "uptime_ms": seq[dev],
                "pressed_at_ms": pressed,
                "time_source": "device", "received_at_ms": pressed + 200, "msg_boot": 1, "binding_id": bid,
                "window_id": wid, "staff_account": clerk, "flags": "", "hall_id": hall, "dept_code": dept})
            pending["outcomes"].append((inv, "rated", pressed, rid, grade))
            pending["uplink"].append((rid, 0, None, pressed + rng.randint(20_000, 200_000)))
            made += 1
        if len(pending["cases"]) >= CHUNK:
            await flush()
    await flush()
    return counts


async def measure(store: Store, cfg: Config, repeat: int) -> dict[str, float]:
    period = parse_period("2025-Q2")

    async def baseline() -> None:
        await store.read(lambda tx: tx.figures.scan_baseline())

    async def dept() -> None:
        await make_bulletin(store, cfg, period, "department")

    async def hall() -> None:
        await make_bulletin(store, cfg, period, "hall")

    out: dict[str, float] = {}
    for name, fn in (("baseline", baseline), ("department", dept), ("hall", hall)):
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            await fn()
            best = min(best, time.perf_counter() - t0)
        out[name] = best
    return out


async def run_backend(backend: str, n: int, repeat: int, seed: int, keep: str | None = None) -> None:
    tmp = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="hcp-bench-bulletin-"))
    tmp.mkdir(parents=True, exist_ok=True)
    existing = backend == "sqlite" and (tmp / "gateway.db").exists()
    server = None
    try:
        if backend == "postgresql":
            from harness.postgres import PostgresServer
            server = PostgresServer().start()
            url = server.fresh_database()
        else:
            url = str(tmp / "gateway.db")
        raw = {"store": {"url": url} if backend == "postgresql" else {"path": url},
               "hall": {"id": "centre", "timezone": "Asia/Shanghai", "opening_hours": ["08:30-17:30"]}}
        cfg = parse_config(raw, tmp)
        store = await open_store(cfg.store.url)
        try:
            t0 = time.perf_counter()
            counts = {"records": 0, "invitations": 0, "cases": 0, "uplink": 0} if existing else \
                await build(store, cfg, n, seed)
            load_s = time.perf_counter() - t0
            if backend == "postgresql":
                # What autovacuum does soon after a bulk load (PostgreSQL 13+ vacuums after inserts
                # too): the planner's statistics and the visibility map index-only scans need.
                from harness.store import execute
                await asyncio.to_thread(execute, url, "VACUUM ANALYZE")
            q2 = await store.read(lambda tx: tx.raw.scalar(  # type: ignore[attr-defined]
                "SELECT count(*) FROM records WHERE pressed_at_ms >= ? AND pressed_at_ms < ?",
                parse_period("2025-Q2").bounds(TZ)))
            t = await measure(store, cfg, repeat)
        finally:
            await store.close()
        print("%s: loaded %d ratings (%d in 2025-Q2), %d invitations, %d cases, %d uplink items in %.0f s"
              % (backend, counts["records"], q2, counts["invitations"], counts["cases"], counts["uplink"],
                 load_s))
        base = t["baseline"]
        print("  baseline: one grouped full scan of the ratings table  %7.1f ms" % (1000 * base))
        for name in ("department", "hall"):
            v = t[name]
            verdict = "ok" if v <= 1.0 and v <= 3 * base else "OVER GOAL"
            print("  2025-Q2 bulletin by %-10s  %7.1f ms  = %.2fx baseline   (goal <= 1000 ms and <= 3x: %s)"
                  % (name, 1000 * v, v / base, verdict))
    finally:
        if server is not None:
            server.stop()
        if keep is None:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ratings", type=int, default=400_000)
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", metavar="DIR", help="SQLite: keep the store in DIR (and reuse it when there)")
    a = ap.parse_args()
    for backend in (("sqlite", "postgresql") if a.backend == "both" else (a.backend,)):
        asyncio.run(run_backend(backend, a.ratings, a.repeat, a.seed,
                                a.keep if backend == "sqlite" else None))


if __name__ == "__main__":
    main()

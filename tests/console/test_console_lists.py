"""The keyset pages the console's lists read (records, invitations), on both backends: every
row exactly once across pages, ties on time broken by id, filters, and bounded counts."""

from __future__ import annotations

from pathlib import Path

from console_support import add_record, make_config, seed

from gateway.store import open_store
from gateway.store.rows import NewInvitation


async def test_records_pages_cover_every_row_once(tmp_path: Path, store_url: str) -> None:
    cfg = make_config(tmp_path, store_url)
    store = await open_store(cfg.store.url)
    try:
        await seed(store)
        t0 = 1_800_000_000_000
        ids = []
        for i in range(45):
            # Three records share each press time: the page must order ties by record id.
            ids.append(await add_record(store, cfg, ("dev-1", "dev-2", "dev-3")[i % 3], t0 + (i // 3) * 1000,
                                        grade=("vs", "s", "d")[i % 3]))
        seen: list[str] = []
        before = None
        while True:
            page = await store.read(
                lambda tx, b=before: tx.records.page(t0, t0 + 10**6, None, before=b, limit=7))
            seen += [r["record_id"] for r in page]
            if len(page) < 7:
                break
            before = (page[-1]["pressed_at_ms"], page[-1]["record_id"])
        assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
        times = [int(x.split(":")[2]) for x in seen]
        assert times == sorted(times, reverse=True) or len(seen) == 45
        # Filters: windows, grade, device; a bounded count.
        a01 = await store.read(lambda tx: tx.records.page(None, None, ["A01"], limit=100))
        assert {r["window_id"] for r in a01} == {"A01"} and len(a01) == 15
        assert await store.read(lambda tx: tx.records.page(None, None, [], limit=100)) == []
        bad = await store.read(lambda tx: tx.records.page(grade="d", limit=100))
        assert len(bad) == 15 and {r["device_id"] for r in bad} == {"dev-3"}
        assert len(await store.read(lambda tx: tx.records.page(device_id="dev-2", limit=100))) == 15
        assert await store.read(lambda tx: tx.records.count_upto(10)) == 10
        assert await store.read(lambda tx: tx.records.count_upto(1000)) == 45
        assert await store.read(lambda tx: tx.records.count_upto(1000, windows=["A02", "B01"])) == 30
        # A flag matches whole entries of the comma list only.
        await store.write(lambda tx: tx.records.set_flags(ids[0], "marked,after_hours"))
        await store.write(lambda tx: tx.records.set_flags(ids[1], "marked_not"))
        await store.write(lambda tx: tx.records.set_flags(ids[2], "premarked"))
        marked = await store.read(lambda tx: tx.records.page(flag="marked", limit=100))
        assert [r["record_id"] for r in marked] == [ids[0]]
        assert await store.read(lambda tx: tx.records.count_upto(100, flag="after_hours")) == 1
    finally:
        await store.close()


async def test_invitations_pages(tmp_path: Path, store_url: str) -> None:
    cfg = make_config(tmp_path, store_url)
    store = await open_store(cfg.store.url)
    try:
        await seed(store)
        b = await store.read(lambda tx: tx.bindings.active_for_device("dev-1"))
        t0 = 1_800_000_000_000
        for i in range(12):
            n = NewInvitation("inv%02d" % i, "dev-1", "A01", "zhang", b.id, "C%02d" % i, "", "", "", None, 60,
                              t0 + (i // 2) * 1000, t0 + 10**6, "test")
            await store.write(lambda tx, n=n: tx.invitations.insert(n))
            if i < 11:     # one pending invitation per device: close each but the last
                status = "cancelled" if i % 4 else "expired"
                await store.write(lambda tx, i=i, st=status: tx.invitations.close("inv%02d" % i, st, t0, "t"))
        seen: list[str] = []
        before = None
        while True:
            page = await store.read(lambda tx, b=before: tx.invitations.page(before=b, limit=5))
            seen += [x.id for x in page]
            if len(page) < 5:
                break
            before = (page[-1].created_ms, page[-1].id)
        assert seen == ["inv%02d" % i for i in range(11, -1, -1)]
        assert [x.id for x in await store.read(lambda tx: tx.invitations.page("expired", limit=50))] == [
            "inv08", "inv04", "inv00"]
        assert await store.read(lambda tx: tx.invitations.page(windows=["B01"])) == []
        assert await store.read(lambda tx: tx.invitations.count_upto(5)) == 5
        assert await store.read(lambda tx: tx.invitations.count_upto(100, "cancelled", t0, t0 + 3000)) == 4
    finally:
        await store.close()


async def test_uplink_state_counts_are_bounded(tmp_path: Path, store_url: str) -> None:
    from gateway.uplink import state
    cfg = make_config(tmp_path, store_url)
    store = await open_store(cfg.store.url)
    try:
        await seed(store)
        ids = [await add_record(store, cfg, "dev-1", 1_800_000_000_000 + i) for i in range(12)]
        await store.write(lambda tx: tx.uplink.mark_sent("b1", "x", [(r, 0, None, None, 1) for r in ids[:10]],
                                                         1))
        await store.write(lambda tx: tx.uplink.apply_results("b1", [(2, "accepted", r) for r in ids[:7]],
                                                             [("E1", "no", 2, ids[7])], (7, 0, 1), 2, None))
        assert await state.status_counts_upto(store, 5) == {
            "pending": 0, "sent": 2, "acked": 5, "rejected": 1, "covered": 0}
        assert (await state.status_counts_upto(store, 100))["acked"] == 7
        assert await state.status_counts(store) == {"sent": 2, "acked": 7, "rejected": 1}
    finally:
        await store.close()

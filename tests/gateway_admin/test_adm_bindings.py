"""一码一账号 at the database level and through gateway.bindings (real SQLite file)."""

from __future__ import annotations

import json

import pytest
from adm_support import Recorder, Store

from gateway import bindings
from gateway.store.errors import IntegrityError

INSERT = (
    "INSERT INTO bindings (device_id, window_id, staff_account, valid_from_ms, created_by)"
    " VALUES (?, ?, ?, ?, 'sql')"
)


async def test_database_refuses_a_second_active_binding(store: Store) -> None:
    await store.execute(INSERT, ("dev-1", "A01", "zhang", 1000))
    # Same device, same clerk, same window: each is refused by its own partial unique index.
    for args, index in (
        # (SQLite names the column, PostgreSQL the index)
        (("dev-1", "A02", "li", 2000), "bindings.device_id|bindings_one_active_per_device"),
        (("dev-2", "A02", "zhang", 2000), "bindings.staff_account|bindings_one_active_per_staff"),
        (("dev-2", "A01", "li", 2000), "bindings.window_id|bindings_one_active_per_window"),
    ):
        with pytest.raises(IntegrityError, match=index):
            await store.execute(INSERT, args)
    # Closed bindings do not count: history may hold many rows per device.
    await store.execute("UPDATE bindings SET valid_to_ms = 1500 WHERE device_id = 'dev-1'")
    await store.execute(INSERT, ("dev-1", "A02", "li", 2000))
    rows = await store.fetchall("SELECT device_id, valid_to_ms FROM bindings ORDER BY id")
    assert [tuple(r) for r in rows] == [("dev-1", 1500), ("dev-1", None)]


async def test_history_is_append_only_and_never_overlaps(store: Store) -> None:
    await store.execute(INSERT, ("dev-1", "A01", "zhang", 1000))
    with pytest.raises(IntegrityError, match="immutable"):
        await store.execute("UPDATE bindings SET staff_account = 'li'")
    with pytest.raises(IntegrityError, match="immutable"):
        await store.execute("DELETE FROM bindings")
    await store.execute("UPDATE bindings SET valid_to_ms = 5000")
    with pytest.raises(IntegrityError, match="already closed"):
        await store.execute("UPDATE bindings SET valid_to_ms = 6000")
    with pytest.raises(IntegrityError, match="overlaps"):
        await store.execute(INSERT, ("dev-1", "A02", "li", 4000))  # starts inside the closed one
    with pytest.raises(IntegrityError, match="(?i)foreign key"):
        await store.execute(INSERT, ("dev-9", "A02", "li", 7000))  # unknown device


async def test_pair_conflict_force_and_audit(store: Store) -> None:
    c = await bindings.pair(store.db, "dev-1", "A01", "zhang", "cli:alice", at_ms=1000)
    assert c.created is not None and c.created.display_name == "张三" and not c.closed
    # The clerk is taken: a clear refusal, nothing written.
    with pytest.raises(bindings.Conflict, match="staff zhang is already bound.*--force"):
        await bindings.pair(store.db, "dev-2", "A02", "zhang", "cli:alice", at_ms=2000)
    # The same binding again is a no-op, not a new history row.
    again = await bindings.pair(store.db, "dev-1", "A01", "zhang", "cli:alice", at_ms=2500)
    assert again.unchanged and again.created is not None and again.created.id == c.created.id
    # --force moves the clerk: the old binding is closed at the same instant.
    moved = await bindings.pair(store.db, "dev-2", "A02", "zhang", "cli:bob", force=True, at_ms=3000)
    assert [(b.device_id, b.valid_to_ms, b.ended_by) for b in moved.closed] == [("dev-1", 3000, "cli:bob")]
    assert moved.devices == ["dev-1", "dev-2"]
    hist = await bindings.list_bindings(store.db, history=True)
    assert [(b.device_id, b.window_id, b.valid_from_ms, b.valid_to_ms) for b in hist] == [
        ("dev-1", "A01", 1000, 3000),
        ("dev-2", "A02", 3000, None),
    ]
    assert await bindings.binding_at(store.db, "dev-1", 2999) is not None
    assert await bindings.binding_at(store.db, "dev-1", 3000) is None
    audit = [
        (r[0], r[1], json.loads(r[2]))
        for r in await store.fetchall(
            "SELECT actor, action, detail_json FROM audit_log WHERE action LIKE 'binding.%' ORDER BY id"
        )
    ]
    assert [(a, act, d["subject"]) for a, act, d in audit] == [
        ("cli:alice", "binding.open", "dev-1"),
        ("cli:bob", "binding.close", "dev-1"),
        ("cli:bob", "binding.open", "dev-2"),
    ]
    assert audit[2][2]["forced"] is True


async def test_pair_refuses_unknown_names(store: Store) -> None:
    for args, code in (
        (("dev-9", "A01", "zhang"), "unknown_device"),
        (("dev-1", "Z99", "zhang"), "unknown_window"),
        (("dev-1", "A01", "nobody"), "unknown_staff"),
    ):
        with pytest.raises(bindings.NotFound) as e:
            await bindings.pair(store.db, *args, "t")
        assert e.value.code == code
    with pytest.raises(bindings.NotFound, match="no active binding"):
        await bindings.unpair(store.db, "dev-1", "t")
    with pytest.raises(bindings.Conflict, match="already exists"):
        await bindings.add_window(store.db, "A01", "", "", "t")
    with pytest.raises(bindings.BadInput, match="at most 16 bytes"):
        await bindings.add_window(store.db, "窗口一二三四五六", "", "", "t")  # 24 bytes of UTF-8


async def test_device_commands_for_a_change_and_after_hello(store: Store) -> None:
    send = Recorder()
    c = await bindings.pair(store.db, "dev-1", "A01", "zhang", "t")
    assert await bindings.on_binding_change(store.db, send, c) == []
    assert send.sent == [("dev-1", "paired", {"win": "A01", "clerk": "张三"})]
    # A forced move: the old device is told it is unpaired, the new one paired; an offline
    # device is reported (it learns at its next hello), the others still get theirs.
    send = Recorder(fail={"dev-1"})
    c = await bindings.pair(store.db, "dev-2", "A01", "li", "t", force=True)
    assert await bindings.on_binding_change(store.db, send, c) == ["dev-1"]
    assert send.sent == [("dev-2", "paired", {"win": "A01", "clerk": "李四"})]
    assert await bindings.state_for_device(store.db, "dev-1") == [("unpaired", {})]
    assert await bindings.state_for_device(store.db, "dev-2") == [
        ("paired", {"win": "A01", "clerk": "李四"})
    ]


def test_clip_utf8_never_splits_a_character() -> None:
    assert bindings.clip_utf8("张三李四", 7) == "张三"
    assert bindings.clip_utf8("abc", 3) == "abc"

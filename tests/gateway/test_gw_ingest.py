"""End to end: test device -> real mosquitto -> gateway process -> real SQLite -> ack."""

from __future__ import annotations

import asyncio
import json

from gw_support import INJECTOR, GatewayEnv, db_query, rejection_counts, wait_for

from protocol import messages, topics


async def test_record_is_stored_and_acked_after_commit(gw_env: GatewayEnv) -> None:
    dev = gw_env.device("dev-a")
    seen_committed: list[bool] = []

    def check_committed(ids: list[str]) -> None:
        # Runs the moment the ack arrives: every acked id must already be in the DB.
        for rid in ids:
            n = len(db_query(gw_env.db_path, "SELECT 1 FROM records WHERE record_id = ?", (rid,)))
            seen_committed.append(n == 1)

    dev.on_ack = check_committed
    await dev.connect()
    try:
        await dev.hello()
        ids = [await dev.press(grade=g) for g in ("vs", "s", "bs", "d", "vd")]
        await wait_for(lambda: all(i in dev.acks for i in ids), what="acks")
    finally:
        await dev.disconnect()
    assert seen_committed and all(seen_committed)
    rows = db_query(gw_env.db_path, "SELECT record_id, grade, kind, time_source FROM records ORDER BY rs")
    assert [r[0] for r in rows] == ids
    assert [r[1] for r in rows] == ["vs", "s", "bs", "d", "vd"]
    assert {r[3] for r in rows} == {"reconstructed"}  # w = 0, anchor from hello
    acks = dev.commands("ack")
    assert all(a["b"] == dev.boot for a in acks)


async def test_duplicate_is_stored_once_and_acked_twice(gw_env: GatewayEnv) -> None:
    dev = gw_env.device("dev-a")
    await dev.connect()
    try:
        rec = dev.new_record(grade="d")
        rid = await dev.send_record(rec)
        await wait_for(lambda: dev.acks.get(rid) == 1, what="first ack")
        await dev.send_record(rec)          # the device did not see the ack: re-send
        await dev.send_record(rec)          # and a third copy in the same batch window
        await wait_for(lambda: dev.acks.get(rid, 0) >= 2, what="second ack")
        await asyncio.sleep(0.3)
    finally:
        await dev.disconnect()
    assert gw_env.count("SELECT count(*) FROM records WHERE record_id = ?", (rid,)) == 1
    assert gw_env.count("SELECT count(*) FROM records") == 1
    assert dev.acks[rid] >= 2


async def test_acks_carry_the_current_boot(gw_env: GatewayEnv) -> None:
    """Records of an old boot re-sent after a reboot are acked with the NEW boot."""
    dev = gw_env.device("dev-a")
    await dev.connect()
    try:
        old = dev.new_record()          # created in boot 1, never sent
        dev.boot, dev.seq, dev.n = 2, 0, 0
        await dev.hello()
        rid = await dev.send_record(old)
        await wait_for(lambda: rid in dev.acks, what="ack of old-boot record")
    finally:
        await dev.disconnect()
    assert dev.commands("ack")[-1]["b"] == 2
    assert dev.bad_commands == 0
    row = db_query(gw_env.db_path, "SELECT rb, msg_boot, time_source FROM records WHERE record_id = ?",
                   (rid,))
    assert row == [(1, 2, "arrival")]  # no anchor for boot 1 was ever learned


async def test_bad_input_is_rejected_and_counted(gw_env: GatewayEnv) -> None:
    dev = gw_env.device("dev-a")
    other = gw_env.device("dev-b")
    await dev.connect()
    try:
        up = topics.up("dev-a", "rec")
        # forged mac: signed with another key
        forged = other.sign("rec", dev.new_record(), d="dev-a")
        await dev.publish_raw(up, forged)
        # oversized and malformed payloads
        await dev.publish_raw(up, b"x" * 2000)
        await dev.publish_raw(up, b"{not json")
        await dev.publish_raw(up, b"\xff\xfe")
        await dev.publish_raw(up, b"[1,2]")
        await dev.publish_raw(up, json.dumps({"v": 2, "t": "rec"}).encode())
        # a payload whose d differs from its own topic id (allowed by the ACL: own topic)
        foreign = other.sign("rec", other.new_record())
        await dev.publish_raw(up, foreign)
        # a device the gateway does not know (published by a test account allowed on any uplink
        # topic: the gateway's own account is tied to the gateway's client id)
        stranger = dev.sign("rec", dev.new_record(), d="dev-x")
        gw = gw_env.device("dev-a")
        gw.device_id, gw.password = INJECTOR
        await gw.connect(announce=False)
        try:
            await gw.publish_raw(topics.up("dev-x", "rec"), stranger)
            # topic/payload mismatch sent by that account, which the ACL lets through
            await gw.publish_raw(topics.up("dev-b", "rec"), dev.sign("rec", dev.new_record()))
        finally:
            await gw.disconnect()
        want = {"bad_mac": 1, "too_large": 1, "not_json": 1, "not_utf8": 1, "not_object": 1,
                "bad_version": 1, "topic_mismatch": 2, "unknown_device": 1}
        await wait_for(lambda: all(rejection_counts(gw_env.db_path).get(k, 0) >= v for k, v in want.items()),
                       what="rejection counts")
    finally:
        await dev.disconnect()
    assert rejection_counts(gw_env.db_path) == want
    assert gw_env.count("SELECT count(*) FROM records") == 0
    assert dev.commands("ack") == []
    log = gw_env.gateway.log_text()
    assert "Traceback" not in log
    assert gw_env.devices["dev-a"][0] not in log and gw_env.devices["dev-b"][0] not in log


async def test_treq_gets_a_signed_time_reply(gw_env: GatewayEnv) -> None:
    import time

    dev = gw_env.device("dev-b")
    await dev.connect()
    try:
        await dev.publish("treq", {"u": 123456})
        await wait_for(lambda: bool(dev.commands("time")), what="time reply")
        # the same treq again (replayed n) is refused
        m = dict(messages.parse(dev.sign("treq", {"u": 1}, n=dev.n)))
        del m["mac"]
        await dev.publish_raw(topics.up("dev-b", "treq"), bytes(messages.sign(m, dev.key)))
        await wait_for(lambda: rejection_counts(gw_env.db_path).get("replay") == 1, what="replay count")
    finally:
        await dev.disconnect()
    t = dev.commands("time")
    assert len(t) == 1 and t[0]["u"] == 123456
    assert abs(t[0]["w"] - time.time()) < 5

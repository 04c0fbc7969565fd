"""Firmware parts on CPython: journal capacity and format, config validation, clock, debounce,
and the journal's record as a valid protocol v1 `rec` message."""

from __future__ import annotations

import json
import os
from pathlib import Path

import fw_scenarios
import pytest

from firmware.buttons import Buttons
from firmware.clock import Clock
from firmware.config import ConfigError
from firmware.config import load as load_config
from firmware.hal.host import HostHal, VirtualClock
from firmware.journal import KINDS, REC_SIZE, Journal, JournalFull
from protocol import messages
from protocol.auth import Key


def _hal(tmp_path: Path) -> HostHal:
    return HostHal(root=str(tmp_path), durable=False)


def test_fw_journal_holds_10000_records_within_1mb(tmp_path: Path) -> None:
    hal = _hal(tmp_path)
    j = Journal(hal).open()
    j.begin(1)
    for k in range(10000):
        j.append("rated", "vs", "inv-%d" % k, 1767225600 + k, k * 1000)
    size = os.path.getsize(tmp_path / "data" / "j1.log")
    assert size == 10000 * REC_SIZE <= 1024 * 1024
    j.close()
    j2 = Journal(hal).open()
    assert j2.depth() == 10000 and j2.max_rb == 1
    first = j2.pending(1)[0]
    assert (first["rb"], first["rs"], first["i"], first["u"]) == (1, 1, "inv-0", 0)
    assert j2.ack(1, 5000) and j2.depth() == 9999


def test_fw_journal_full_raises_and_compacts_when_acked(tmp_path: Path) -> None:
    # 64 slots, below the 256 used slots an ack needs before it compacts: only a full journal
    # compacts here
    j = Journal(_hal(tmp_path), capacity=64).open()
    j.begin(1)
    for _ in range(64):
        j.append("walkup", "s", "", 0, 1)
    with pytest.raises(JournalFull):
        j.append("walkup", "s", "", 0, 1)
    assert j.ack(1, 1) and j.ack(1, 2)
    assert j.append("walkup", "s", "", 0, 1) == (1, 65)     # compacted into a new generation
    assert j.gen == 2 and j.depth() == 63
    assert [r["rs"] for r in j.pending(2)] == [3, 4]


def test_fw_journal_mid_file_corruption_skips_one_record(tmp_path: Path) -> None:
    hal = _hal(tmp_path)
    j = Journal(hal).open()
    j.begin(1)
    for _ in range(5):
        j.append("walkup", "bs", "", 0, 1)
    j.close()
    p = tmp_path / "data" / "j1.log"
    b = bytearray(p.read_bytes())
    b[2 * REC_SIZE + 10] ^= 0xFF
    p.write_bytes(bytes(b))
    j2 = Journal(hal).open()
    assert [r["rs"] for r in j2.pending(10)] == [1, 2, 4, 5]
    assert j2.corrupt == 1
    assert j2.ack(1, 4) and not j2.ack(1, 3)


def test_fw_journal_kinds_are_the_protocol_kinds() -> None:
    k = [f for f in messages.UP_TYPES["rec"].split() if f.startswith("k:e:")]   # the schema's enum
    assert len(k) == 1
    assert sorted(KINDS) == sorted(k[0].split(":")[2].split("|"))


def test_fw_record_is_a_valid_rec_message(tmp_path: Path) -> None:
    j = Journal(_hal(tmp_path)).open()
    j.begin(7)
    j.append("rated", "vd", "INV_a-1", 1767225600, 123456)
    j.append("unrated", "", "INV_a-2", 0, 123999)
    key = Key("00" * 32)
    for r in j.pending(2):
        m = dict(r, t="rec", d="hcp-0a1b", b=7, n=1)     # pending() gives the rec fields
        wire = messages.sign(m, key)
        assert messages.decode(wire, key, "hcp/1/up/hcp-0a1b/rec")["rb"] == 7


def test_fw_config_errors_are_clear(tmp_path: Path) -> None:
    hal = _hal(tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(hal)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(hal)
    (tmp_path / "config.json").write_text(json.dumps({"device_id": "hcp-1", "secret": "x"}))
    with pytest.raises(ConfigError, match="secret"):
        load_config(hal)
    fw_scenarios.make_root(str(tmp_path), debounce_ms="fast", buttons=["vs", "vs", "s", "d", "vd"])
    cfg = load_config(hal)
    assert cfg.debounce_ms == 50 and cfg.buttons == ("vs", "s", "bs", "d", "vd")
    assert len(cfg.warnings) == 2 and "debounce_ms" in cfg.warnings[0] + cfg.warnings[1]
    applied, rejected = cfg.apply({"countdown_s": 90, "secret": "00" * 32, "walkup": "maybe"})
    assert applied == ["countdown_s"] and set(rejected) == {"secret", "walkup"}


def test_fw_clock_wraps_and_syncs() -> None:
    vc = VirtualClock(start_ms=(1 << 30) - 100)        # ticks wrap 100 ms after boot
    hal = HostHal(root="/nonexistent", clock=vc)
    c = Clock(hal)
    vc.advance(300)
    assert c.uptime() == 300
    assert c.wall(300) == 0 and not c.synced
    c.set_wall(1767225600, 100, 300)                     # treq at 100, answer at 300: rtt 200
    assert c.wall(300) == 1767225600 and c.wall(1300) == 1767225601
    c.set_wall(1767225600, 10**9, 300)                   # a u from the future: w is now
    assert c.wall(300) == 1767225600


def test_fw_debounce_one_press_per_bouncy_contact() -> None:
    hal = HostHal(root="/nonexistent")

    class Cfg:
        debounce_ms = 50

    b = Buttons(hal, Cfg())
    got: list[tuple[int, int]] = []

    def on(i: int, t: int) -> None:
        got.append((i, t))

    t = 0
    for level in (1, 0, 1, 0, 1):                       # bounce while pressing
        (hal.press if level else hal.release)(2)
        t += 5
        b.scan(t, on)
    for _ in range(30):                                  # held 150 ms
        t += 5
        b.scan(t, on)
    for level in (0, 1, 0, 1, 0):                        # bounce while releasing
        (hal.press if level else hal.release)(2)
        t += 5
        b.scan(t, on)
    for _ in range(20):
        t += 5
        b.scan(t, on)
    hal.tap(2)                                           # a second, very short press
    t += 5
    b.scan(t, on)
    assert got == [(2, 5), (2, t)]
    assert b.bounces >= 4


async def test_fw_run_async_wires_loop_watchdog_and_link(tmp_path: Path) -> None:
    """main.run_async on the host HAL in real time: presses are journaled while the (real) link
    finds no broker, and the watchdog is fed from the loop."""
    import asyncio

    from firmware.main import Firmware
    fw_scenarios.make_root(str(tmp_path))
    hal = HostHal(root=str(tmp_path), clock=VirtualClock(speed=1), durable=False)
    hal.net.cut()                                        # offline from the start
    fw = Firmware(hal)
    task = asyncio.create_task(fw.run_async())
    await asyncio.sleep(0.2)
    hal.press(1)
    await asyncio.sleep(0.1)
    hal.release(1)
    await asyncio.sleep(0.2)
    task.cancel()
    assert fw.journal.depth() == 1 and fw.app.state_name() == "unpaired"
    assert hal.wdt_feeds > 10 and not hal.wdt_expired()
    fw.journal.close()

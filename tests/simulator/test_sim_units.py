"""Unit tests of the simulator's own logic: fault specs, the citizen model, the checker."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from simulator.checker import (
    Ledger,
    Press,
    Reconciliation,
    UnratedCase,
    check_platform,
    check_store,
    uploadable,
)
from simulator.citizens import CitizenConfigError, CitizenProfile, Decisions, parse_grade_weights
from simulator.faults import FaultSpecError, load_scenario, parse_duration, parse_spec, random_faults
from simulator.report import reconciliation_lines


def test_fault_specs() -> None:
    f = parse_spec("wifi-loss@10s+15s:all")
    assert (f.kind, f.at_s, f.duration_s, f.target) == ("wifi-loss", 10.0, 15.0, "all")
    f = parse_spec("broker-restart@1m")
    assert (f.kind, f.at_s) == ("broker-restart", 60.0)
    f = parse_spec("power-cut@500ms:3")
    assert (f.at_s, f.duration_s, f.target) == (0.5, 2.0, "3")
    assert parse_duration(12) == 12.0
    for bad in ("nope@3s", "broker-restart@3s:dev", "power-cut@x", "power-cut@3s:all", ""):
        with pytest.raises(FaultSpecError):
            parse_spec(bad)


def test_scenario_file(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text('[[fault]]\nkind = "gateway-kill"\nat = "5s"\nduration = "1s"\n'
                 '[[fault]]\nkind = "clock-unsynced"\nat = 2\ntarget = "0"\n')
    faults = load_scenario(p)
    assert [f.kind for f in faults] == ["gateway-kill", "clock-unsynced"]
    p.write_text('[[fault]]\nkind = "gateway-kill"\nwhen = "5s"\n')
    with pytest.raises(FaultSpecError, match="unknown keys"):
        load_scenario(p)
    with pytest.raises(FaultSpecError):
        load_scenario(tmp_path / "missing.toml")


def test_random_faults_inside_the_run() -> None:
    faults = random_faults(20, 100.0, random.Random(3))
    assert len(faults) == 20
    assert all(10.0 <= f.at_s <= 70.0 for f in faults)


def test_grade_distribution_follows_weights() -> None:
    d = Decisions(CitizenProfile(), seed=5)
    c = Counter(d.grade() for _ in range(20000))
    assert 0.83 < c["vs"] / 20000 < 0.87
    assert 0.08 < c["s"] / 20000 < 0.12
    assert c["vd"] > 0
    presses = Counter(d.presses() for _ in range(20000))
    assert 0.04 < presses[0] / 20000 < 0.06 and 0.02 < presses[2] / 20000 < 0.04


def test_grade_weights_parse_and_validate() -> None:
    assert parse_grade_weights("vs=1, d=2") == {"vs": 1.0, "d": 2.0}
    for bad in ("xx=1", "vs", "vs=abc"):
        with pytest.raises(CitizenConfigError):
            parse_grade_weights(bad)
    with pytest.raises(CitizenConfigError):
        CitizenProfile(p_no_press=1.5).validate()
    with pytest.raises(CitizenConfigError):
        CitizenProfile(grade_weights={"vs": 0}).validate()


def _store(tmp_path: Path, rows: list[tuple[str, ...]]) -> Path:
    path = tmp_path / "store.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE records (record_id TEXT PRIMARY KEY, device_id TEXT, kind TEXT, grade TEXT,"
                 " invitation_id TEXT, staff_account TEXT)")
    conn.execute("CREATE TABLE invitations (id TEXT PRIMARY KEY, case_no TEXT, staff_account TEXT,"
                 " window_id TEXT, status TEXT, record_id TEXT)")
    conn.execute("INSERT INTO invitations VALUES ('i1', 'C1', 'clerk1', 'W1', 'rated', 'd1:1:1')")
    conn.execute("INSERT INTO invitations VALUES ('i2', 'C2', 'clerk1', 'W1', 'unrated', 'd1:1:3')")
    conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return path


def _ledger() -> Ledger:
    led = Ledger()
    led.press(Press("d1:1:1", "d1", "rated", "vs", "i1", "C1", "W1", "clerk1"))
    led.press(Press("d1:1:2", "d1", "extra", "s", "i1", "C1", "W1", "clerk1"))
    led.walked_away(UnratedCase("d1", "i2", "C2"))
    return led


def test_checker_passes_on_a_faithful_store(tmp_path: Path) -> None:
    store = _store(tmp_path, [("d1:1:1", "d1", "rated", "vs", "i1", "clerk1"),
                              ("d1:1:2", "d1", "extra", "s", "i1", "clerk1"),
                              ("d1:1:3", "d1", "unrated", None, "i2", "clerk1")])
    rec = Reconciliation()
    check_store(_ledger(), store, ["d1"], rec)
    check_platform(["d1:1:1", "d1:1:3"], {"d1:1:1": 1, "d1:1:3": 2}, rec)
    assert rec.ok, rec.problems
    assert any("more than once" in n for n in rec.notes)
    assert reconciliation_lines(rec)[-1].startswith("verdict: OK")


def test_checker_finds_lost_doubled_and_misattributed(tmp_path: Path) -> None:
    store = _store(tmp_path, [("d1:1:1", "d1", "rated", "vs", "i1", "clerk2"),      # wrong clerk
                              ("d1:2:1", "d1", "rated", "vs", "i1", "clerk1"),      # the same press again
                              ("d1:1:3", "d1", "unrated", None, "i2", "clerk1")])   # d1:1:2 lost
    rec = Reconciliation()
    check_store(_ledger(), store, ["d1"], rec)
    check_platform(["d1:1:1"], {}, rec)
    assert not rec.ok
    assert rec.lost == 2 and rec.doubled >= 1
    text = "\n".join(rec.problems)
    assert "credited to clerk clerk2" in text and "d1:1:2" in text and "d1:2:1" in text
    assert reconciliation_lines(rec)[-1].startswith("verdict: MISMATCH")


def _store_with_walkaways(tmp_path: Path) -> Path:
    """Invitations of d1 closed every way a walk-away can close them, with the uplink's state."""
    path = tmp_path / "walkaways.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE records (record_id TEXT PRIMARY KEY, device_id TEXT, kind TEXT, grade TEXT,"
                 " invitation_id TEXT, staff_account TEXT)")
    conn.execute("CREATE TABLE invitations (id TEXT PRIMARY KEY, device_id TEXT, case_no TEXT,"
                 " staff_account TEXT, window_id TEXT, status TEXT, record_id TEXT)")
    conn.execute("CREATE TABLE uplink_items (record_id TEXT PRIMARY KEY, status TEXT, invitation_id TEXT,"
                 " covered_by TEXT)")
    conn.executemany("INSERT INTO invitations VALUES (?, 'd1', ?, 'clerk1', 'W1', ?, ?)", [
        ("i1", "C1", "rated", "d1:1:1"),
        ("i2", "C2", "unrated", "d1:1:2"),      # the device's countdown ran out: its record
        ("i3", "C3", "superseded", None),       # the window's next case replaced it
        ("i4", "C4", "expired", None),          # device offline: the gateway expired it
        ("i5", "C5", "cancelled", None),        # withdrawn: no default rating
        ("i6", "C6", "superseded", None),       # device missed the cancel: its own unrated record
        ("i7", "C7", "unrated", "d1:1:5"),      # default sent first, the device record came late
    ])
    conn.execute("INSERT INTO invitations VALUES ('x1', 'd2', 'X1', 'clerk2', 'W2', 'superseded', NULL)")
    conn.executemany("INSERT INTO records VALUES (?, 'd1', ?, ?, ?, 'clerk1')", [
        ("d1:1:1", "rated", "vs", "i1"), ("d1:1:2", "unrated", None, "i2"),
        ("d1:1:4", "unrated", None, "i6"), ("d1:1:5", "unrated", None, "i7")])
    conn.executemany("INSERT INTO uplink_items VALUES (?, ?, ?, ?)", [
        ("inv:i7", "acked", "i7", None), ("d1:1:5", "covered", None, "inv:i7")])
    conn.commit()
    conn.close()
    return path


def test_checker_expects_unrated_invitations_at_the_platform_as_defaults(tmp_path: Path) -> None:
    store = _store_with_walkaways(tmp_path)
    want = ["d1:1:1", "d1:1:2", "d1:1:4", "inv:i3", "inv:i4", "inv:i7"]
    assert uploadable(store, ["d1"], ("rated", "unrated")) == want
    assert uploadable(store, ["d1"], ("rated",)) == ["d1:1:1"]            # unrated = "skip"

    led = Ledger()
    led.press(Press("d1:1:1", "d1", "rated", "vs", "i1", "C1", "W1", "clerk1"))
    for inv in ("i2", "i3", "i4", "i5", "i6", "i7"):
        led.walked_away(UnratedCase("d1", inv, "C" + inv[1]))
    rec = Reconciliation()
    check_store(led, store, ["d1"], rec)
    check_platform(want, {rid: 1 for rid in want}, rec)
    assert rec.ok, rec.problems
    assert [r.found for r in rec.rows if r.name == "at the platform"] == [6]
    assert not any("no device record)" in n for n in rec.notes)       # the old "left unrated" notes
    assert any("3 invitations" in n and "flagged default ratings" in n for n in rec.notes)
    assert any("i5" in n and "cancelled" in n for n in rec.notes)

    missing = Reconciliation()
    check_platform(want, {rid: 1 for rid in want if rid != "inv:i3"}, missing)
    assert not missing.ok and missing.lost == 1
    assert missing.problems == ["not at the platform: inv:i3"]
    doubled = Reconciliation()     # the device record AND a default for one case: caught
    check_platform(want, {**{rid: 1 for rid in want}, "d1:1:5": 1}, doubled)
    assert doubled.doubled == 1 and "d1:1:5" in doubled.problems[0]

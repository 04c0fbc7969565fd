"""The day report: rates, grades, 差评, satisfaction, weighted score, and the presses that are
not ratings kept apart (real SQLite, records attributed like the core's ingest)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from adm_support import Store, make_config, open_store

from gateway import bindings, invitations, reports
from gateway.config import ConfigError
from gateway.invitations import InvitationRequest, InvitationRules

S = 1000


async def seed_day(store: Store) -> tuple[str, int]:
    """Two clerks on 2026-11-24 (Shanghai): zhang at A01 rates vs, s, d and leaves one unrated;
    li at A02 gets one vs, one superseded case, an extra and a walk-up; dev-3 is unbound."""
    t0 = int(dt.datetime(2026, 11, 24, 9, 0, tzinfo=store.cfg.hall.tz).timestamp()) * S
    await bindings.pair(store.db, "dev-1", "A01", "zhang", "t", at_ms=t0)
    await bindings.pair(store.db, "dev-2", "A02", "li", "t", at_ms=t0)
    rules = InvitationRules()

    async def case(window: str, no: str, at: int) -> str:
        out = await invitations.create(
            store.db, InvitationRequest(case_no=no, window_id=window), "t", rules, at_ms=at
        )
        return out.invitation.id

    for i, g in enumerate(("vs", "s", "d")):
        inv = await case("A01", "Z-%d" % i, t0 + i * 600 * S)
        await store.rec("dev-1", "rated", t0 + i * 600 * S + 10 * S, g, inv)
    inv = await case("A01", "Z-9", t0 + 3000 * S)
    await store.rec("dev-1", "unrated", t0 + 3060 * S, None, inv)
    await case("A02", "L-1", t0)  # superseded by the next one
    inv = await case("A02", "L-2", t0 + 100 * S)
    await store.rec("dev-2", "rated", t0 + 110 * S, "vs", inv)
    await store.rec("dev-2", "rated", t0 + 111 * S, "vd", inv)  # extra
    await store.rec("dev-2", "walkup", t0 + 900 * S, "vd")
    await store.rec("dev-3", "unpaired", t0 + 900 * S, "s")
    return "2026-11-24", t0


async def test_day_report_per_window_and_clerk(store: Store) -> None:
    day, _ = await seed_day(store)
    rep = await reports.day_report(store.db, store.cfg, day)
    by = {(r.window_id, r.staff_account): r for r in rep.rows}
    assert set(by) == {("A01", "zhang"), ("A02", "li"), ("(unbound)", "(unbound)")}
    z = by["A01", "zhang"]
    assert (z.display_name, z.cases, z.ratings, z.unrated, z.rating_rate) == ("张三", 4, 3, 1, 0.75)
    assert z.grades == {"vs": 1, "s": 1, "bs": 0, "d": 1, "vd": 0} and z.bad == 1
    assert z.satisfaction == round(2 / 3, 4) and z.score == round((100 + 75 + 25) / 3, 2)
    li = by["A02", "li"]
    assert (li.cases, li.ratings, li.superseded, li.extras, li.walkups, li.score) == (2, 1, 1, 1, 1, 100.0)
    assert li.grades["vd"] == 0  # the extra and the walk-up are never ratings
    u = by["(unbound)", "(unbound)"]
    assert (u.unbound, u.walkups, u.ratings, u.cases) == (1, 1, 0, 0)
    t = rep.total
    assert (t.cases, t.ratings, t.bad, t.extras, t.walkups, t.unbound) == (6, 4, 1, 1, 2, 1)
    # The day before and after: nothing.
    empty = await reports.day_report(store.db, store.cfg, "2026-11-23")
    assert empty.rows == [] and empty.total.rating_rate is None


async def test_weights_come_from_the_config(tmp_path: Path) -> None:
    store = await open_store(tmp_path, report={"weights": {"vs": 10, "s": 8, "bs": 6, "d": 3, "vd": 0}})
    try:
        day, _ = await seed_day(store)
        rep = await reports.day_report(store.db, store.cfg, day)
        z = next(r for r in rep.rows if r.staff_account == "zhang")
        assert z.score == round((10 + 8 + 3) / 3, 2)
    finally:
        await store.db.close()
    # A bad [report] now stops the config at load (every section is checked whole).
    with pytest.raises(ConfigError, match="weights"):
        make_config(tmp_path / "b", report={"weights": {"vs": 10}})


def test_day_bounds_follow_the_hall_time_zone(tmp_path: Path) -> None:
    from adm_support import make_config

    lo, hi = reports.day_bounds("2026-11-24", make_config(tmp_path))
    assert hi - lo == 86400 * S
    assert dt.datetime.fromtimestamp(lo / 1000, tz=dt.UTC).hour == 16  # 00:00 +08:00
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        reports.day_bounds("24.11.2026", make_config(tmp_path))

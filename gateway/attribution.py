"""Crediting each new record to a clerk, a window and an invitation — by the time of the press.

The core's ingest calls `Attribution.batch(tx, recs)` inside its batch's unit of work (in the
store's thread, one transaction) for the new records before it inserts them.
Nothing is dropped here: a record that cannot be credited is stored with flags that say why.
Flags (comma list in records.flags):
  unbound        no binding at press time (the record has no clerk)
  no_invitation  a press without an invitation (walk-up), or naming an unknown invitation
  foreign_invitation  names an invitation issued to another device (not counted)
  extra          a further press for an invitation that already has its rating
  late           a press after its invitation expired / was cancelled / was superseded
  after_hours    pressed outside the opening hours of the record's hall
  burst          more than N presses on the device within M seconds (all of them flagged)
The one rating of an invitation is the record named by invitations.record_id.

Each record also gets its organisation as at press time (gateway/org.py): hall_id and
dept_code are the place of the bound window at the press (window_places), or, with no
binding, the device's hall and no department. The hall's own opening hours and time zone
decide after_hours; a hall_id of None is the config's default hall ([hall]).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.config import Config, ConfigError, HallConfig
from gateway.flags import add_flag
from gateway.org import HallDirectory, place_at, place_from
from gateway.store.api import Tx
from gateway.store.rows import Binding, WindowPlace

PRESS_KINDS = ("rated", "walkup", "extra", "unpaired")


@dataclass(frozen=True)
class AttributionRules:
    hall: HallConfig = field(default_factory=HallConfig)
    burst_presses: int = 5          # more than this many presses ...
    burst_window_s: int = 10        # ... within this many seconds is a burst
    # Device clocks tick in seconds and may be reconstructed: a press this close outside an
    # invitation's open period still counts.
    clock_slack_ms: int = 2000

    @classmethod
    def from_config(cls, cfg: Config) -> AttributionRules:
        sec = cfg.raw.get("attribution", {})
        if not isinstance(sec, dict):
            raise ConfigError("[attribution] must be a table")
        vals: dict[str, int] = {}
        for key, default, lo, hi in (("burst_presses", 5, 1, 1000), ("burst_window_s", 10, 1, 3600),
                                     ("clock_slack_ms", 2000, 0, 600000)):
            v = sec.get(key, default)
            if type(v) is not int or not lo <= v <= hi:
                raise ConfigError("[attribution] %s must be an integer in %d..%d" % (key, lo, hi))
            vals[key] = v
        return cls(hall=cfg.hall, **vals)


# Presses seen by record-by-record attribution, per device: record_id -> pressed_at_ms. A
# caller may attribute several records before inserting them (ingest's fallback after a
# failed batch), so the records table alone would not show them to the burst check.
# attribute_batch keeps its own per-batch set instead (StoredPresses.batch).
Recent = dict[str, dict[str, int]]
_RECENT_MAX = 64


class Attribution:
    """The hook ingest calls: the rules from the config and this process's recent presses."""

    def __init__(self, rules: AttributionRules) -> None:
        self.rules = rules
        self.recent: Recent = {}
        # The records `one` returned for the presses in `recent`: a later burst flags them too
        # while they are not stored yet (ingest inserts a batch after attributing it).
        self.recent_recs: dict[str, dict[str, Any]] = {}

    def batch(self, tx: Tx, recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return attribute_batch(tx, recs, self.rules)

    def one(self, tx: Tx, rec: dict[str, Any]) -> dict[str, Any]:
        out = attribute_sync(tx, rec, self.rules, recent=self.recent, unstored=self.recent_recs)
        live = {rid for seen in self.recent.values() for rid in seen}
        for rid in [r for r in self.recent_recs if r not in live]:
            del self.recent_recs[rid]
        return out


def attribute_batch(tx: Tx, recs: list[dict[str, Any]], rules: AttributionRules) -> list[dict[str, Any]]:
    """attribute_sync for each record of one ingest batch, in order, in one transaction.
    A device's bindings are read once per batch (nothing here changes bindings)."""
    cache = BindingCache()
    presses = StoredPresses.for_batch(recs, rules)
    places = OrgCache(rules.hall)
    return [attribute_sync(tx, rec, rules, cache, presses, places=places) for rec in recs]


class OrgCache:
    """Halls, window places and devices' halls read once per batch (nothing in a batch
    changes them)."""

    def __init__(self, default: HallConfig) -> None:
        self.halls = HallDirectory(default)
        self._places: dict[str, list[WindowPlace]] = {}
        self._device_hall: dict[str, str | None] = {}

    def place(self, tx: Tx, window_id: str, at_ms: int) -> tuple[str | None, str]:
        places = self._places.get(window_id)
        if places is None:
            places = self._places[window_id] = tx.org.window_places(window_id)
        return place_from(places, at_ms) or place_at(tx, window_id, at_ms)

    def device_hall(self, tx: Tx, device_id: str) -> str | None:
        if device_id not in self._device_hall:
            self._device_hall[device_id] = tx.org.device_hall(device_id)
        return self._device_hall[device_id]


class StoredPresses:
    """Each device's stored presses around one batch, read once (one query per device, not
    one per record) for the burst check. Nothing inserts records during attribution, so the
    set read stays right for the whole batch; the burst flags attribution writes meanwhile
    are mirrored here."""

    def __init__(self, spans: dict[str, tuple[int, int]], window_ms: int) -> None:
        self._spans = spans          # device -> (earliest, latest) press of the batch
        self._window_ms = window_ms
        self._by_device: dict[str, list[list[Any]]] = {}
        # device -> {record_id: pressed_at_ms} of the batch's presses checked so far: not in
        # the table yet (the batch is inserted after attribution), so the burst check counts
        # them from here, and flags them in their record (batch_recs) when a later one of the
        # batch completes a burst.
        self.batch: dict[str, dict[str, int]] = {}
        self.batch_recs: dict[str, dict[str, Any]] = {}

    @classmethod
    def for_batch(cls, recs: list[dict[str, Any]], rules: AttributionRules) -> StoredPresses:
        spans: dict[str, tuple[int, int]] = {}
        for rec in recs:
            p = int(rec["pressed_at_ms"])
            lo, hi = spans.get(rec["device_id"], (p, p))
            spans[rec["device_id"]] = (min(lo, p), max(hi, p))
        return cls(spans, rules.burst_window_s * 1000)

    def around(self, tx: Tx, device_id: str, lo: int, hi: int,
               record_id: str) -> list[list[Any]] | None:
        """[record_id, pressed_at_ms, flags] of the stored presses with lo < pressed < hi
        (other than record_id), in press order -- what presses_between returns -- or None
        when the range is not covered (then the caller queries)."""
        span = self._spans.get(device_id)
        if span is None or lo < span[0] - self._window_ms or hi > span[1] + self._window_ms:
            return None
        rows = self._by_device.get(device_id)
        if rows is None:
            rows = self._by_device[device_id] = tx.records.presses_between(
                device_id, span[0] - self._window_ms, span[1] + self._window_ms, "")
        return [r for r in rows if lo < r[1] < hi and r[0] != record_id]


class BindingCache:
    """Each device's bindings, read once, for the records of one transaction."""

    def __init__(self) -> None:
        self._by_device: dict[str, list[Binding]] = {}

    def at(self, tx: Tx, device_id: str, at_ms: int) -> Binding | None:
        rows = self._by_device.get(device_id)
        if rows is None:
            rows = self._by_device[device_id] = tx.bindings.of_device(device_id)
        # Same answer as tx.bindings.at: the latest-starting binding whose [from, to) holds at_ms.
        for b in rows:
            if b.valid_from_ms <= at_ms and (b.valid_to_ms is None or b.valid_to_ms > at_ms):
                return b
        return None


def _binding_at(tx: Tx, device_id: str, at_ms: int) -> Binding | None:
    return tx.bindings.at(device_id, at_ms)


def attribute_sync(tx: Tx, rec: dict[str, Any], rules: AttributionRules,
                   bindings_cache: BindingCache | None = None,
                   presses: StoredPresses | None = None, recent: Recent | None = None,
                   places: OrgCache | None = None,
                   unstored: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Set binding_id / window_id / staff_account / hall_id / dept_code / flags on rec (a records
    row as a dict:
    record_id, device_id, kind, grade, invitation_id, pressed_at_ms, flags) and close its
    invitation when it rates or unrates it. Returns rec.

    Synchronous, inside the caller's unit of work: the core's ingest runs a whole batch of
    these in the store's thread (one hand-over per batch, not one per statement)."""
    device = rec["device_id"]
    kind = rec["kind"]
    pressed = int(rec["pressed_at_ms"])
    flags = rec.get("flags") or ""

    binding_at = _binding_at if bindings_cache is None else bindings_cache.at
    b = binding_at(tx, device, pressed)
    if b is None:
        # Device clocks tick in whole seconds: a press stamped just before a binding began
        # (with no binding before it) belongs to that binding.
        b = binding_at(tx, device, pressed + rules.clock_slack_ms)
        if b is not None and b.valid_from_ms <= pressed:
            b = None
    org = places if places is not None else OrgCache(rules.hall)
    if b is None:
        rec["binding_id"] = rec["window_id"] = rec["staff_account"] = None
        rec["hall_id"], rec["dept_code"] = org.device_hall(tx, device), None
        flags = add_flag(flags, "unbound")
    else:
        rec["binding_id"], rec["window_id"], rec["staff_account"] = b.id, b.window_id, b.staff_account
        rec["hall_id"], rec["dept_code"] = org.place(tx, b.window_id, pressed)

    inv_id = rec.get("invitation_id") or None
    if kind in ("rated", "extra", "unrated") and inv_id is not None:
        flags = _link_invitation(tx, rec, inv_id, pressed, flags, rules)
    elif kind in PRESS_KINDS:
        flags = add_flag(flags, "no_invitation")

    if kind in PRESS_KINDS:
        if not org.halls.get(tx, rec["hall_id"]).is_open(pressed):
            flags = add_flag(flags, "after_hours")
        recs = presses.batch_recs if presses is not None else unstored
        if recs is not None:
            recs[rec["record_id"]] = rec
        if _burst(tx, rec, pressed, rules, presses, recent, recs):
            flags = add_flag(flags, "burst")
    rec["flags"] = flags
    return rec


def _open_until(status: str, expires_ms: int, closed_ms: int | None) -> int:
    """Until when an invitation accepted a press: its expiry while pending/expired, else the
    moment it was closed (cancelled, superseded, or the device's unrated timeout)."""
    if status in ("pending", "expired") or closed_ms is None:
        return expires_ms
    return closed_ms


def _link_invitation(tx: Tx, rec: dict[str, Any], inv_id: str, pressed: int,
                     flags: str, rules: AttributionRules) -> str:
    inv = tx.invitations.get(inv_id)
    if inv is None:
        return add_flag(flags, "no_invitation")
    inv_device, status, created, expires, closed, closing_record = (
        inv.device_id, inv.status, inv.created_ms, inv.expires_ms, inv.closed_ms, inv.record_id)
    if inv_device != rec["device_id"]:
        return add_flag(flags, "foreign_invitation")
    if closing_record == rec["record_id"]:
        return flags  # the same record again (a re-delivery): already linked
    kind = rec["kind"]
    if kind == "extra" or status == "rated":
        # One rating per invitation: anything after its rating is an extra, kept and flagged.
        return add_flag(flags, "extra") if kind != "unrated" else flags
    slack = rules.clock_slack_ms
    in_time = created - slack <= pressed <= _open_until(status, expires, closed) + slack
    if kind == "unrated":
        if status in ("pending", "expired"):
            tx.invitations.set_outcome(inv_id, "unrated", pressed, "no press before the countdown ended",
                                       rec["record_id"], None)
        return flags
    if not in_time:
        return add_flag(flags, "late")
    # A press inside the open period is the rating, even if the record arrives after the
    # server-side expiry or after a cancel that happened later than the press.
    tx.invitations.set_outcome(inv_id, "rated", pressed, None, rec["record_id"], rec["grade"])
    return flags


def _burst(tx: Tx, rec: dict[str, Any], pressed: int, rules: AttributionRules,
           presses: StoredPresses | None = None, recent: Recent | None = None,
           recs: dict[str, dict[str, Any]] | None = None) -> bool:
    """More than burst_presses presses within burst_window_s (this one included)? Flags the
    stored ones too, and the not yet stored ones of the same batch (in their record, recs),
    so the burst is visible whatever order the journal delivers them in."""
    lo = pressed - rules.burst_window_s * 1000
    hi = pressed + rules.burst_window_s * 1000
    cached = None if presses is None else presses.around(tx, rec["device_id"], lo, hi, rec["record_id"])
    if cached is None:
        cached = tx.records.presses_between(rec["device_id"], lo, hi, rec["record_id"])
    others = [(r[0], r[1], r[2]) for r in cached]
    stored = {rid for rid, _, _ in others}
    me = rec["record_id"]
    # A batch's own earlier presses are all it has that is not in the table yet.
    if presses is not None:
        seen = presses.batch.setdefault(rec["device_id"], {})
    else:
        seen = (recent if recent is not None else {}).setdefault(rec["device_id"], {})
    pending = [(rid, p) for rid, p in seen.items() if lo < p < hi and rid not in stored and rid != me]
    unstored = [p for _, p in pending]
    seen[me] = pressed
    if presses is None and len(seen) > _RECENT_MAX:
        for rid in sorted(seen, key=seen.__getitem__)[: len(seen) - _RECENT_MAX]:
            del seen[rid]
    times = sorted([p for _, p, _ in others] + unstored + [pressed])
    window_ms = rules.burst_window_s * 1000
    # Any run of burst_presses+1 presses spanning less than the window, containing this press.
    n = rules.burst_presses + 1
    hit_lo = hit_hi = None
    for i in range(len(times) - n + 1):
        a, z = times[i], times[i + n - 1]
        if z - a < window_ms and a <= pressed <= z:
            hit_lo = a if hit_lo is None else min(hit_lo, a)
            hit_hi = z if hit_hi is None else max(hit_hi, z)
    if hit_lo is None or hit_hi is None:
        return False
    for row in cached:
        rid, p, f = row
        if hit_lo <= p <= hit_hi and "burst" not in f.split(","):
            row[2] = add_flag(f, "burst")  # also in StoredPresses, for the batch's later records
            tx.records.set_flags(rid, row[2])
    for rid, p in pending:
        other = recs.get(rid) if recs is not None else None
        if other is not None and hit_lo <= p <= hit_hi:
            other["flags"] = add_flag(other.get("flags") or "", "burst")
    return True

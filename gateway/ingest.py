"""Ingest: verify every device message, group-commit records, ack only after the commit.

Per message (in the MQTT receive loop, no SQLite wait on the hot path):
  parse -> check_topic -> device key -> verify mac -> by type:
    rec           validated, queued for the group committer
    hello/hb/treq replay window per (device, boot); health; time anchor; treq -> `time`
    status        online/offline by (b, c) order (gateway.health)
Every refusal is counted by reason (memory + table `rejections`) and logged at most once
per reason per interval, without payloads or secrets.

Group commit: the committer takes up to batch_max queued records, waits at most batch_ms
after the first one, and stores the batch in ONE transaction (a stored record
id), so one fsync covers many records. The whole transaction (dedupe, attribution, insert,
anchors, COMMIT) is one unit of work in the store's thread: one hand-over per batch. Only
after COMMIT returns does it publish an ack for every record of the batch, duplicates
included: a duplicate is acked again, never stored twice. If the gateway dies before
COMMIT, nothing was acked, the device still has the records in its journal and re-sends
them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway import health, timesync
from gateway.clock import now_ms
from gateway.config import Config
from gateway.flags import FLAG_ATTRIBUTION_ERROR, FLAG_BAD_TIME, FLAG_UNPAIRED, add_flag
from gateway.mqtt import Downlink, verify_received
from gateway.registry import DeviceRegistry, DeviceState
from gateway.store import Store
from gateway.store.api import Tx
from protocol import cpython, messages
from protocol.errors import BadSignature, MalformedMessage, TopicMismatch, UnsupportedVersion
from protocol.ids import record_id

log = logging.getLogger("gateway.ingest")

class Attribute(Protocol):
    """The attribution hook (gateway.attribution.Attribution), synchronous: it runs in the
    store's thread inside the batch's unit of work. `batch` attributes a whole batch in
    order; `one` a single record (the fallback after a failure, so only the failing record
    is flagged)."""

    def batch(self, tx: Tx, recs: list[dict[str, Any]]) -> list[dict[str, Any]]: ...

    def one(self, tx: Tx, rec: dict[str, Any]) -> dict[str, Any]: ...


HelloHook = Callable[[str], Awaitable[None]]
# Called in the store's thread, inside the batch's unit of work, with the batch's NEW records
# once they are inserted (never a re-sent one): what must commit with them (a 差评's complaint,
# gateway.complaints.ComplaintHook). A hook handles its own failures; one that raises undoes the
# batch (nothing acked: the devices re-send).
RecordHook = Callable[[Tx, list[dict[str, Any]]], None]

_ATTRIBUTED = ("binding_id", "window_id", "staff_account", "hall_id", "dept_code", "flags")
# The rejection reason of a message whose handling raised (a bug, never a normal refusal).
INTERNAL_ERROR = "internal_error"
# The incoming gate's drops (gateway/incoming.py).
RATE_LIMITED = "rate_limited"
QUEUE_FULL = "queue_full"


class Rejections:
    """Counts refusals by reason; logs each reason at most once per interval."""

    def __init__(self, log_interval_s: float) -> None:
        self.totals: dict[str, int] = {}
        self._unsaved: dict[str, int] = {}
        self._log_interval = log_interval_s
        self._last_log: dict[str, float] = {}
        self._since_log: dict[str, int] = {}

    def add(self, reason: str, who: str, detail: str = "") -> None:
        self.totals[reason] = self.totals.get(reason, 0) + 1
        self._unsaved[reason] = self._unsaved.get(reason, 0) + 1
        self._since_log[reason] = self._since_log.get(reason, 0) + 1
        t = time.monotonic()
        if t - self._last_log.get(reason, -1e9) >= self._log_interval:
            n = self._since_log.pop(reason)
            self._last_log[reason] = t
            log.warning("rejected %s from %s%s%s", reason, who, f" ({detail})" if detail else "",
                        f" [{n} since last report]" if n > 1 else "")

    async def save(self, store: Store) -> None:
        if not self._unsaved:
            return
        counts, self._unsaved = self._unsaved, {}
        at = now_ms()
        try:
            await store.write(lambda tx: tx.rejections.add_counts(counts, at))
        except BaseException:
            for k, v in counts.items():
                self._unsaved[k] = self._unsaved.get(k, 0) + v
            raise


@dataclass
class PendingRecord:
    m: dict[str, Any]
    st: DeviceState
    arrival_ms: int
    rid: str


@dataclass
class IngestStats:
    received: int = 0
    records_received: int = 0
    stored: int = 0
    duplicates: int = 0
    acked: int = 0
    batches: int = 0
    commit_failures: int = 0


def _who(topic: str) -> str:
    # Topic text is attacker-chosen: quote and cut it before it reaches a log line.
    return repr(topic[:80])


class Ingest:
    def __init__(self, cfg: Config, store: Store, registry: DeviceRegistry, anchors: timesync.Anchors,
                 downlink: Downlink, clock_ms: Callable[[], int] = now_ms,
                 attribute: Attribute | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.registry = registry
        self.anchors = anchors
        self.downlink = downlink
        self.clock_ms = clock_ms
        self.attribute = attribute
        self.rejections = Rejections(cfg.ingest.rejection_log_s)
        self.stats = IngestStats()
        self.hello_hooks: list[HelloHook] = []
        self.record_hooks: list[RecordHook] = []
        self._pending: list[PendingRecord] = []
        self._have_work = asyncio.Event()
        self._full = asyncio.Event()
        self._opened_at = 0.0  # loop time at which the oldest queued record arrived
        self._batch_s = cfg.ingest.batch_ms / 1000
        self._batch_max = cfg.ingest.batch_max
        self._max_uptime_ms = cfg.time.max_uptime_ms
        self.accepting = True  # False while shutting down: nothing new is queued
        self._pending_max = cfg.ingest.pending_max
        self._room = asyncio.Event()   # set while fewer than pending_max records wait
        self._room.set()
        self._traced: set[str] = set()  # exception types already logged with a traceback

    # -- receive path --------------------------------------------------------------

    async def handle(self, topic: str, payload: bytes, arrival_ms: int | None = None) -> None:
        """One MQTT message from hcp/1/up/+/+. Never raises for bad input: it counts it.

        Last resort: an exception of any type while handling a message (a decoder bug, a
        payload nobody foresaw) is counted as `internal_error` and the message dropped unacked
        (an authentic record is re-sent by its device). It never reaches the MQTT loop, which
        it would end: a retained poison message would then stop every restart (issue 14).
        """
        if not self.accepting:
            return  # shutting down: not acked, so the device re-sends it to the next run
        try:
            arrival = self.clock_ms() if arrival_ms is None else arrival_ms
            self.stats.received += 1
            m = self._parse(topic, payload)
            if m is None:
                return
            d = m["d"]
            st = self.registry.get(d) or await self.registry.lookup(d)
            if st is None:
                self.rejections.add("unknown_device", d)
                return
            if not _mac_ok(m, st, payload):
                # Maybe re-keyed by another process: one look at the store, then refuse.
                if not await self.registry.refresh_key(st) or not _mac_ok(m, st, payload):
                    self.rejections.add("bad_mac", d)
                    return
            if not self._apply(st, m, arrival):
                return
            t = m["t"]
            if t == "hello":
                for hook in self.hello_hooks:
                    try:
                        await hook(d)
                    except Exception:
                        log.exception("hello hook failed for %s", d)
            elif t == "treq":
                # w: gateway epoch seconds, rounded up so the device never starts behind.
                await self.downlink.send_nowait(st, "time", {"w": (self.clock_ms() + 999) // 1000,
                                                             "u": m["u"]})
        except Exception as e:  # noqa: BLE001 - see the docstring; CancelledError still passes
            self._unexpected(topic, e)

    def _unexpected(self, topic: str, e: Exception) -> None:
        kind = type(e).__name__
        self.rejections.add(INTERNAL_ERROR, _who(topic), kind)
        if kind not in self._traced and len(self._traced) < 100:
            # One traceback per exception type and run: enough to fix the bug, and a device
            # repeating the message cannot fill the log.
            self._traced.add(kind)
            log.error("handling a message from %s raised %s (counted as %s; traced once per type)",
                      _who(topic), kind, INTERNAL_ERROR, exc_info=e)

    def _parse(self, topic: str, payload: bytes) -> dict[str, Any] | None:
        """Structure, version and topic; None (counted) when refused."""
        try:
            m = messages.parse(payload)
            messages.check_topic(m, topic)
        except MalformedMessage as e:
            self.rejections.add(e.code, _who(topic), e.detail)
            return None
        except UnsupportedVersion:
            self.rejections.add("bad_version", _who(topic))
            return None
        except TopicMismatch:
            self.rejections.add("topic_mismatch", _who(topic))
            return None
        return m

    def _apply(self, st: DeviceState, m: dict[str, Any], arrival: int) -> bool:
        """Everything an authentic message does that needs no await. True when accepted
        (a hello's hooks and a treq's reply follow in _handle)."""
        d, t = st.device_id, m["t"]
        if t == "rec":
            self._on_rec(st, m, arrival)
            return True
        if t == "status":
            st.observe_boot(m["b"])
            if health.on_status(st, m, arrival):
                log.info("device %s %s (boot %d, connection %d)", d, m["s"], m["b"], m["c"])
            return True
        # hello, hb, treq: counters must be fresh in (device, boot)'s replay window.
        if not st.fresh(m["b"], m["n"]):
            self.rejections.add("replay", d, f"{t} b={m['b']} n={m['n']}")
            return False
        st.observe_boot(m["b"])
        if t == "hb":
            health.on_hb(st, m, arrival)
            self._observe(d, m["b"], m["up"], arrival)
        elif t == "hello":
            health.on_hello(st, m, arrival)
            self._observe(d, m["b"], m["up"], arrival)
        elif t == "treq":
            health.touch(st, arrival)
            self._observe(d, m["b"], m["u"], arrival)
        return True

    def _observe(self, d: str, b: int, uptime_ms: int, arrival: int) -> None:
        """A time anchor observation, unless the uptime is beyond belief: the anchor is the
        minimum over a boot's observations, so one absurd uptime would put that boot's clock
        (every record it reconstructs) thousands of years back for good."""
        if uptime_ms > self._max_uptime_ms:
            self.rejections.add(FLAG_BAD_TIME, d, f"uptime {uptime_ms} ms not used as a time anchor")
            return
        self.anchors.observe(d, b, uptime_ms, arrival)

    def _on_rec(self, st: DeviceState, m: dict[str, Any], arrival: int) -> None:
        if m["rb"] > m["b"]:
            self.rejections.add("bad_field", st.device_id, "rb: record from a later boot than its sender")
            return
        st.observe_boot(m["b"])
        health.touch(st, arrival)
        self.stats.records_received += 1
        if not self._pending:
            self._opened_at = asyncio.get_running_loop().time()
            if log.isEnabledFor(logging.DEBUG):
                log.debug("batch opened by %s", record_id(st.device_id, m["rb"], m["rs"]))
        self._pending.append(PendingRecord(m, st, arrival, record_id(st.device_id, m["rb"], m["rs"])))
        self._have_work.set()
        if len(self._pending) >= self._batch_max:
            self._full.set()
        if len(self._pending) >= self._pending_max:
            self._room.clear()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def room(self) -> None:
        """Wait until fewer than [ingest] pending_max records wait for the commit: the
        consumer of the incoming gate stops taking messages meanwhile, so the gate's bounded
        queue (gateway/incoming.py) is where excess is dropped and counted."""
        while len(self._pending) >= self._pending_max:
            self._room.clear()
            await self._room.wait()

    def dropped(self, reason: str, device_id: str, at_ms: int) -> None:
        """A message the incoming gate dropped (rate_limited, queue_full): counted like a
        refusal; a rate-limited device is flagged in its health (shown by `health`)."""
        self.rejections.add(reason, device_id)
        if reason == RATE_LIMITED:
            st = self.registry.get(device_id)
            if st is not None:
                st.limited += 1
                st.limited_at = at_ms
                st.dirty = True

    # -- group committer -----------------------------------------------------------

    async def run_committer(self) -> None:
        while True:
            await self._have_work.wait()
            # The batch window counts from the oldest queued record's arrival, not from now:
            # records that came in while the previous batch was committing have waited
            # already, and waiting a full window again only lengthened every round trip
            # (measured: ~5 ms of each ~10 ms commit cycle was this second wait).
            left = self._opened_at + self._batch_s - asyncio.get_running_loop().time()
            if len(self._pending) < self._batch_max and left > 0:
                try:
                    await asyncio.wait_for(self._full.wait(), left)
                except TimeoutError:
                    pass
            await self.commit_pending()

    async def commit_pending(self) -> None:
        """Commit (up to batch_max of) the queued records, then ack them."""
        batch = self._pending[:self._batch_max]
        del self._pending[:self._batch_max]
        if self._pending:
            # What stays queued (beyond batch_max) arrived before now: its window runs from
            # now at the latest.
            self._opened_at = asyncio.get_running_loop().time()
        if len(self._pending) < self._batch_max:
            self._full.clear()
        if not self._pending:
            self._have_work.clear()
        if len(self._pending) < self._pending_max:
            self._room.set()
        if not batch:
            return
        try:
            stored = await self._store(batch)
        except Exception:
            # Nothing is acked: the devices keep the records and re-send them.
            self.stats.commit_failures += 1
            log.exception("commit of %d records failed; not acked, devices will re-send", len(batch))
            await asyncio.sleep(0.1)
            return
        self.stats.batches += 1
        self.stats.stored += stored
        self.stats.duplicates += len(batch) - stored
        if log.isEnabledFor(logging.DEBUG):
            log.debug("committed %d records (%d new), acking", len(batch), stored)
        await self._ack(batch)

    async def _store(self, batch: list[PendingRecord]) -> int:
        """One unit of work for the batch, ONE call into the store's thread: dedupe by record
        id, attribution, insert (a stored id is left alone), improved time anchors, COMMIT. A
        thread hop per statement would cost more than the statements (and the GIL hand-over
        per hop adds latency while the event loop is busy receiving)."""
        first: dict[str, PendingRecord] = {}
        for p in batch:
            first.setdefault(p.rid, p)
        # In record-id order: two instances inserting overlapping batches take the row locks
        # in the same order (PostgreSQL), so they never deadlock.
        rows = sorted([await self._row(p) for p in first.values()], key=lambda r: str(r["record_id"]))
        anchor_rows = self.anchors.take_dirty(self.clock_ms())
        try:
            new = await self.store.write(lambda tx: self._store_sync(tx, rows, anchor_rows))
        except BaseException:
            self.anchors.mark_all_dirty([(r[0], r[1]) for r in anchor_rows])  # with a later batch
            raise
        for row in new:
            flags = row["flags"].split(",")
            if FLAG_UNPAIRED in flags:
                # Stored (never dropped) but not credited to anyone: counted like a refusal.
                self.rejections.add("unpaired", row["device_id"], "stored flagged")
            if FLAG_BAD_TIME in flags:
                self.rejections.add(FLAG_BAD_TIME, row["device_id"], "record stored flagged, not credited")
        return len(new)

    def _store_sync(self, tx: Tx, rows: list[dict[str, Any]],
                    anchor_rows: list[timesync.AnchorRow]) -> list[dict[str, Any]]:
        """In the store's thread, inside the batch's unit of work: the rows stored now."""
        existing = tx.records.existing_ids([r["record_id"] for r in rows])
        new = [r for r in rows if r["record_id"] not in existing]
        if self.attribute is not None and new:
            # A record whose time is not believed is credited to nobody (not to the binding
            # of its arrival either): stored, flagged bad_time, for a person to look at.
            untimed = [r for r in new if r["flags"] == FLAG_BAD_TIME]
            if not untimed:
                new = self._attribute_all(tx, new)
            elif len(untimed) < len(new):
                new = self._attribute_all(tx, [r for r in new if r["flags"] != FLAG_BAD_TIME]) + untimed
        tx.records.insert_many(new)
        if new:
            for hook in self.record_hooks:
                hook(tx, new)
        tx.anchors.save(anchor_rows)
        return new

    async def _row(self, p: PendingRecord) -> dict[str, Any]:
        m = p.m
        hit, anchor = self.anchors.cached(p.st.device_id, m["rb"])
        if not hit and m["w"] == 0:
            # Once per (device, boot) and process: the anchor persisted by an earlier run.
            anchor = await self.anchors.get(self.store, p.st.device_id, m["rb"])
        pt = timesync.press_time(m["w"], m["u"], anchor, p.arrival_ms)
        flags = FLAG_UNPAIRED if m["k"] == "unpaired" else ""  # a press while unpaired
        if not self.cfg.time.believable(pt.pressed_at_ms, p.arrival_ms) or (
                m["w"] == 0 and m["u"] > self._max_uptime_ms):
            pt = timesync.PressTime(p.arrival_ms, timesync.ARRIVAL)
            flags = FLAG_BAD_TIME  # raw w and u stay in their columns
        return {
            "record_id": p.rid, "device_id": p.st.device_id, "rb": m["rb"], "rs": m["rs"],
            "kind": m["k"], "grade": m["g"] or None, "invitation_id": m["i"] or None,
            "device_wall_s": m["w"], "uptime_ms": m["u"],
            "pressed_at_ms": pt.pressed_at_ms, "time_source": pt.source,
            "received_at_ms": p.arrival_ms, "msg_boot": m["b"],
            "binding_id": None, "window_id": None, "staff_account": None, "hall_id": None, "dept_code": None,
            "flags": flags,
        }

    def _attribute_all(self, tx: Tx, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The hook for every new record under one savepoint; if any call fails, undo them
        all and redo record by record, so only the failing record ends up flagged
        attribution_error."""
        assert self.attribute is not None
        try:
            with tx.savepoint():
                answers = self.attribute.batch(tx, [dict(row) for row in rows])
                return [_merge(row, a) for row, a in zip(rows, answers, strict=True)]
        except Exception:
            return [self._attribute(tx, row) for row in rows]

    def _attribute(self, tx: Tx, row: dict[str, Any]) -> dict[str, Any]:
        """The hook inside a savepoint: a failing hook leaves no partial writes and the
        record is still stored, flagged, instead of blocking the batch."""
        assert self.attribute is not None
        try:
            with tx.savepoint():
                out = self.attribute.one(tx, dict(row))
        except Exception:
            log.exception("attribution failed for %s; stored flagged", row["record_id"])
            return {**row, "flags": add_flag(row["flags"], FLAG_ATTRIBUTION_ERROR)}
        return _merge(row, out)

    async def _ack(self, batch: list[PendingRecord]) -> None:
        by_device: dict[str, tuple[DeviceState, dict[str, list[int]]]] = {}
        for p in batch:
            entry = by_device.get(p.st.device_id)
            if entry is None:
                entry = by_device[p.st.device_id] = (p.st, {})
            entry[1].setdefault(p.rid, [p.m["rb"], p.m["rs"]])
        for st, pair_map in by_device.values():
            pairs = list(pair_map.values())
            for i in range(0, len(pairs), cpython.MAX_ACKS):
                chunk = pairs[i:i + cpython.MAX_ACKS]
                if await self.downlink.send_nowait(st, "ack", {"a": chunk}):
                    self.stats.acked += len(chunk)

    async def drain(self) -> None:
        """Commit and ack everything queued (at shutdown)."""
        while self._pending:
            await self.commit_pending()


def _mac_ok(m: dict[str, Any], st: DeviceState, payload: bytes) -> bool:
    try:
        verify_received(payload, m, st.key)
    except BadSignature:
        return False
    return True


def _merge(row: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Take only the attribution fields from the hook's answer; identity fields stay ours."""
    merged = dict(row)
    for k in _ATTRIBUTED:
        if k in out:
            merged[k] = out[k]
    merged["flags"] = merged["flags"] or ""
    return merged

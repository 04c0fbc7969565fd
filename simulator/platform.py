"""Stand-in for the provincial 好差评 platform: a real aiohttp HTTP server.

What it does, like a real platform: issues tokens for (appKey, appSecret), checks each
batch (count, checksum, envelope) and each record against the adapter's schema, keeps
every accepted record once (dedupe by record id), answers per record. What a real one
never offers: an admin API to read what it holds and to inject faults.

    hcp-sim platform --port 8480 --adapter default [--db platform.sqlite]   (= python -m simulator.platform)

Endpoints (see docs/platform-standin.md):
    POST /api/v1/auth/token          {"appKey", "appSecret"} -> {"token", "expiresIn"}
    POST /api/v1/ratings/batch       the uplink batch (gateway/uplink/wire.py)
    GET  /api/v1/ratings/query?date=YYYY-MM-DD   ids held with that local rating date
    POST /api/v1/ratings/corrections  corrections of held ratings (exclude, reasons), batch format
    GET  /admin/records[?limit=N]    accepted records, GET /admin/stats counters,
    GET|POST /admin/faults           read / change the injected faults
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.uplink.adapters import make_adapter
from gateway.uplink.schema import Schema, validate_record
from gateway.uplink.settings import UplinkSettings, load_settings
from gateway.uplink.wire import WireError, decode_batch

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS accepted (
    record_id TEXT PRIMARY KEY, batch_id TEXT NOT NULL, accepted_ms INTEGER NOT NULL,
    assess_date TEXT, times_received INTEGER NOT NULL DEFAULT 1, record_json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS accepted_by_date ON accepted(assess_date);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY, record_id TEXT, batch_id TEXT NOT NULL, code TEXT NOT NULL,
    reason TEXT NOT NULL, at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS corrections (
    correction_id TEXT PRIMARY KEY, record_id TEXT NOT NULL, action TEXT NOT NULL, body_json TEXT NOT NULL,
    at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY, batch_id TEXT NOT NULL, received_ms INTEGER NOT NULL, count INTEGER NOT NULL,
    accepted INTEGER NOT NULL, duplicates INTEGER NOT NULL, rejected INTEGER NOT NULL,
    ack_lost INTEGER NOT NULL);
"""


@dataclass
class Faults:
    """What to do wrong, on demand. Counters (`*_next`) count down per batch request."""

    fail_next: int = 0             # answer 5xx (fail_status) without storing
    fail_status: int = 503
    timeout_next: int = 0          # hang hang_s (longer than the client's timeout), then 503
    hang_s: float = 5.0
    slow_ms: int = 0               # delay every batch answer (stored normally)
    lose_ack_next: int = 0         # store the batch, then drop the connection: the ack is lost
    outage: bool = False           # full outage: every request (token too) gets 503
    outage_until: float = 0.0      # or until this wall time (epoch seconds)
    reject_ids: list[str] = field(default_factory=list)   # reject these record ids ("injected")
    reject_every: int = 0          # reject every n-th record received (0 = off)
    batch_status: int = 0          # refuse every batch with this 4xx status (0 = off)

    def in_outage(self) -> bool:
        return self.outage or time.time() < self.outage_until


def _ms() -> int:
    return int(time.time() * 1000)


class PlatformStandIn:
    def __init__(self, schema: Schema, db_path: str | Path = ":memory:", *, app_key: str = "hall-1",
                 app_secret: str = "change-me", token_ttl_s: int = 3600, host: str = "127.0.0.1",
                 port: int = 0, faults: Faults | None = None) -> None:
        self.schema = schema
        self.app_key, self.app_secret, self.token_ttl_s = app_key, app_secret, token_ttl_s
        self.host, self.port = host, port
        self.faults = faults or Faults()
        self.tokens: dict[str, float] = {}
        self.request_log: list[dict[str, Any]] = []  # one entry per batch request: t (monotonic), outcome
        self.counters: dict[str, int] = {}
        self._received = 0
        self._lock = asyncio.Lock()
        self._time_field, self._time_format = self._find_time_field(schema)
        self.db = sqlite3.connect(str(db_path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.executescript(_SCHEMA_SQL)
        self._runner: web.AppRunner | None = None
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.add_routes([
            web.post("/api/v1/auth/token", self.h_token),
            web.post("/api/v1/ratings/batch", self.h_batch),
            web.get("/api/v1/ratings/query", self.h_query),
            web.post("/api/v1/ratings/corrections", self.h_corrections),
            web.get("/admin/corrections", self.h_admin_corrections),
            web.get("/admin/records", self.h_records),
            web.get("/admin/stats", self.h_stats),
            web.get("/admin/faults", self.h_faults),
            web.post("/admin/faults", self.h_faults),
        ])

    @staticmethod
    def _find_time_field(schema: Schema) -> tuple[str | None, str | None]:
        for name, spec in schema["fields"].items():
            if "time_format" in spec:
                return name, str(spec["time_format"])
        return None, None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return "http://%s:%d" % (self.host, self.port)

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.db.close()

    async def __aenter__(self) -> PlatformStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- helpers for in-process tests ----------------------------------------------------------
    def accepted_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT record_id FROM accepted ORDER BY record_id")]

    def accepted_records(self, limit: int = 1_000_000) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT record_json FROM accepted ORDER BY record_id LIMIT ?", (limit,))
        return [json.loads(r[0]) for r in rows]

    def corrections(self) -> list[dict[str, Any]]:
        """Corrections applied, oldest first: correction id, record id, action, what it said."""
        return [{"correction_id": r[0], "record_id": r[1], "action": r[2], **json.loads(r[3])}
                for r in self.db.execute("SELECT correction_id, record_id, action, body_json FROM corrections"
                                         " ORDER BY at_ms, rowid")]

    def excluded_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT record_id FROM corrections"
                                              " WHERE action = 'exclude' ORDER BY record_id")]

    def stats(self) -> dict[str, Any]:
        one = self.db.execute
        return {
            "accepted": one("SELECT count(*) FROM accepted").fetchone()[0],
            "received_total": one("SELECT coalesce(sum(times_received), 0) FROM accepted").fetchone()[0],
            "rejected": one("SELECT count(*) FROM rejected").fetchone()[0],
            "batches_stored": one("SELECT count(*) FROM batches").fetchone()[0],
            "acks_lost": one("SELECT count(*) FROM batches WHERE ack_lost = 1").fetchone()[0],
            "requests": dict(self.counters),
        }

    def _count(self, outcome: str) -> None:
        self.counters[outcome] = self.counters.get(outcome, 0) + 1
        self.request_log.append({"t": time.monotonic(), "outcome": outcome})

    # -- handlers ------------------------------------------------------------------------------
    @staticmethod
    def _error(status: int, code: str, reason: str) -> web.Response:
        return web.json_response({"code": code, "reason": reason}, status=status)

    def _authorised(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        expires = self.tokens.get(token)
        return expires is not None and time.monotonic() < expires

    async def h_token(self, request: web.Request) -> web.Response:
        if self.faults.in_outage():
            return self._error(503, "outage", "platform unavailable")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return self._error(400, "bad_json", "token request is not JSON")
        if not isinstance(body, dict) or body.get("appKey") != self.app_key \
                or body.get("appSecret") != self.app_secret:
            return self._error(401, "bad_credentials", "unknown appKey or wrong appSecret")
        token = secrets.token_hex(16)
        self.tokens[token] = time.monotonic() + self.token_ttl_s
        return web.json_response({"token": token, "expiresIn": self.token_ttl_s})

    async def h_batch(self, request: web.Request) -> web.StreamResponse:
        f = self.faults
        if f.in_outage():
            self._count("outage")
            return self._error(503, "outage", "platform unavailable")
        if not self._authorised(request):
            self._count("unauthorised")
            return self._error(401, "bad_token", "missing, unknown or expired token")
        if f.fail_next > 0:
            f.fail_next -= 1
            self._count("fail")
            return self._error(f.fail_status, "injected", "injected server error")
        if f.timeout_next > 0:
            f.timeout_next -= 1
            self._count("timeout")
            await asyncio.sleep(f.hang_s)
            return self._error(503, "injected", "late answer after an injected hang")
        if f.batch_status:
            self._count("refused")
            return self._error(f.batch_status, "injected_refusal", "batch refused on purpose")
        raw = await request.read()
        try:
            batch_id, records = decode_batch(raw, self.schema["envelope"])
        except WireError as e:
            self._count("bad_batch")
            return self._error(400, e.code, e.reason)
        lose_ack = f.lose_ack_next > 0
        if lose_ack:
            f.lose_ack_next -= 1
        async with self._lock:
            results = self._store(batch_id, records, lose_ack)
        if f.slow_ms:
            await asyncio.sleep(f.slow_ms / 1000)
        if lose_ack:
            self._count("ack_lost")
            # Stored and committed, but the answer never reaches the gateway.
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError()
        self._count("answered")
        return web.json_response({"batchId": batch_id, "results": results})

    def _store(self, batch_id: str, records: list[Any], ack_lost: bool) -> list[dict[str, str]]:
        id_field = self.schema["id_field"]
        results: list[dict[str, str]] = []
        now = _ms()
        counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for rec in records:
                self._received += 1
                rid = rec.get(id_field) if isinstance(rec, dict) else None
                rid_text = rid if isinstance(rid, str) else ""
                problem = validate_record(self.schema, rec)
                if problem is None and (rid_text in self.faults.reject_ids or (
                        self.faults.reject_every and self._received % self.faults.reject_every == 0)):
                    problem = ("injected", "rejected on purpose by the stand-in")
                if problem is not None:
                    self.db.execute("INSERT INTO rejected (record_id, batch_id, code, reason, at_ms)"
                                    " VALUES (?, ?, ?, ?, ?)",
                                    (rid_text, batch_id, problem[0], problem[1], now))
                    results.append({"id": rid_text, "status": "rejected", "code": problem[0],
                                    "reason": problem[1]})
                    counts["rejected"] += 1
                    continue
                cur = self.db.execute(
                    "INSERT INTO accepted (record_id, batch_id, accepted_ms, assess_date, record_json)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT(record_id) DO NOTHING",
                    (rid_text, batch_id, now, self._assess_date(rec),
                     json.dumps(rec, ensure_ascii=False, sort_keys=True)))
                if cur.rowcount == 1:
                    status = "accepted"
                else:
                    self.db.execute("UPDATE accepted SET times_received = times_received + 1"
                                    " WHERE record_id = ?", (rid_text,))
                    status = "duplicate"
                counts[status] += 1
                results.append({"id": rid_text, "status": status})
            self.db.execute(
                "INSERT INTO batches (batch_id, received_ms, count, accepted, duplicates, rejected, ack_lost)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)", (batch_id, now, len(records), counts["accepted"],
                                                  counts["duplicate"], counts["rejected"], int(ack_lost)))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return results

    def _assess_date(self, rec: dict[str, Any]) -> str | None:
        if self._time_field is None or self._time_format is None:
            return None
        try:
            return datetime.strptime(rec[self._time_field], self._time_format).date().isoformat()
        except (KeyError, TypeError, ValueError):
            return None

    async def h_query(self, request: web.Request) -> web.Response:
        if self.faults.in_outage():
            return self._error(503, "outage", "platform unavailable")
        if not self._authorised(request):
            return self._error(401, "bad_token", "missing, unknown or expired token")
        date = request.query.get("date", "")
        rows = self.db.execute("SELECT record_id FROM accepted WHERE assess_date = ? ORDER BY record_id",
                               (date,))
        return web.json_response({"date": date, "ids": [r[0] for r in rows]})

    async def h_corrections(self, request: web.Request) -> web.Response:
        """Corrections of held ratings, in the batch format; one answer per correctionId:
        accepted (applied), duplicate (applied before) or rejected (unknown rating, bad fields).
        "exclude" marks the rating excluded (kept); "reasons" replaces its tag and text fields."""
        if self.faults.in_outage():
            return self._error(503, "outage", "platform unavailable")
        if not self._authorised(request):
            return self._error(401, "bad_token", "missing, unknown or expired token")
        try:
            batch_id, items = decode_batch(await request.read(), self.schema["envelope"])
        except WireError as e:
            return self._error(400, e.code, e.reason)
        id_field, fields = self.schema["id_field"], self.schema["fields"]
        reason_fields = [n for n, f in fields.items() if f.get("correctable")]
        results: list[dict[str, str]] = []
        async with self._lock:
            for it in items:
                cid = it.get("correctionId") if isinstance(it, dict) else None
                if not isinstance(cid, str) or not cid:
                    results.append({"id": "", "status": "rejected", "code": "bad_correction",
                                    "reason": "correctionId missing"})
                    continue
                problem = self._apply_correction(cid, it, id_field, reason_fields)
                if problem is None:
                    status = "accepted"
                elif problem[0] == "duplicate":
                    status = "duplicate"
                else:
                    results.append({"id": cid, "status": "rejected", "code": problem[0],
                                    "reason": problem[1]})
                    continue
                results.append({"id": cid, "status": status})
        return web.json_response({"batchId": batch_id, "results": results})

    def _apply_correction(self, cid: str, it: dict[str, Any], id_field: str,
                          reason_fields: list[str]) -> tuple[str, str] | None:
        if self.db.execute("SELECT 1 FROM corrections WHERE correction_id = ?", (cid,)).fetchone():
            return "duplicate", ""
        rid = it.get(id_field)
        row = self.db.execute("SELECT record_json FROM accepted WHERE record_id = ?", (rid,)).fetchone()
        if row is None:
            return "unknown_record", "no rating %r is held" % (rid,)
        action = it.get("action")
        body = {k: v for k, v in it.items() if k not in ("correctionId", "action", id_field)}
        if action == "exclude":
            if not isinstance(body.get("reason"), str) or not body["reason"]:
                return "missing_field", "an exclusion needs its reason"
        elif action == "reasons":
            rec = json.loads(row[0])
            unknown = sorted(set(body) - set(reason_fields))
            if unknown:
                return "unknown_field", "field %s cannot be corrected" % unknown[0]
            for k, v in body.items():
                if v == "" and not fields_required(self.schema, k):
                    rec.pop(k, None)
                else:
                    rec[k] = v
            problem = validate_record(self.schema, rec)
            if problem is not None:
                return problem
            self.db.execute("UPDATE accepted SET record_json = ? WHERE record_id = ?",
                            (json.dumps(rec, ensure_ascii=False, sort_keys=True), rid))
        else:
            return "bad_action", "action must be exclude or reasons"
        self.db.execute("INSERT INTO corrections (correction_id, record_id, action, body_json, at_ms)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (cid, rid, action, json.dumps(body, ensure_ascii=False), _ms()))
        return None

    async def h_admin_corrections(self, request: web.Request) -> web.Response:
        return web.json_response({"corrections": self.corrections(), "excluded": self.excluded_ids()})

    async def h_records(self, request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", "1000"))
        except ValueError:
            return self._error(400, "bad_limit", "limit must be an integer")
        return web.json_response({"count": self.stats()["accepted"], "records": self.accepted_records(limit)})

    async def h_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def h_faults(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                changes = await request.json()
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object")
                known = set(Faults.__dataclass_fields__)
                unknown = sorted(set(changes) - known)
                if unknown:
                    raise ValueError("unknown fault(s): %s" % ", ".join(unknown))
                for k, v in changes.items():
                    setattr(self.faults, k, v)
            except (ValueError, json.JSONDecodeError) as e:
                return self._error(400, "bad_faults", str(e))
        return web.json_response(asdict(self.faults))


def fields_required(schema: Schema, name: str) -> bool:
    return bool(schema["fields"].get(name, {}).get("required", False))


def schema_for(adapter: str, config: str | None = None) -> Schema:
    """The schema a hall's adapter declares: from gateway.toml's [uplink], or the defaults."""
    if config is not None:
        import tomllib
        with open(config, "rb") as fh:
            settings = load_settings(tomllib.load(fh))
    else:
        settings = UplinkSettings(adapter=adapter)
    return make_adapter(settings).schema()


async def serve(host: str, port: int, adapter: str, config: str | None, db: str, app_key: str,
                app_secret: str, ready: Callable[[str, str], None]) -> int:
    """Run the stand-in until SIGINT or SIGTERM; ready(url, adapter) once it listens."""
    stand_in = PlatformStandIn(schema_for(adapter, config), db, app_key=app_key, app_secret=app_secret,
                               host=host, port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):   # before the ready line: a stop right after it is clean
        loop.add_signal_handler(sig, stop.set)
    await stand_in.start()
    ready(stand_in.url, stand_in.schema["adapter"])
    sys.stdout.flush()
    await stop.wait()
    await stand_in.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m simulator.platform` is `hcp-sim platform` (docs/cli-hcp-sim.md)."""
    from simulator.cli import platform
    return int(platform.main(args=argv, prog_name="python -m simulator.platform", standalone_mode=True) or 0)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())

"""The service's log: text or JSON lines, and admin actions logged as they happen.

Format: `[log] format = "text"` (default: `2026-01-05T09:12:00.123+08:00 INFO gateway.service:
...`, the time with its zone) or `"json"` (one object per line: ts, level, logger, msg, and
`exc` with the traceback as one string, `event`/`action`/`actor`/`detail` for admin actions),
or `--log-format` on `serve`, which wins over the config.

Admin actions: every audit row but invitations' (pairing, unpairing, device registration and
re-keying, windows, staff, ...), whichever process or instance wrote it (the API, the CLI
straight into the store, another instance), is logged once as `admin: ACTION SUBJECT k=v ...
by ACTOR` by the leader, which keeps its place in the store (a new leader carries on where
the old one stopped). Audit details never hold secrets (gateway/devices.py, bindings.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sys
from dataclasses import dataclass
from typing import Any

from gateway.config import Config, ConfigError
from gateway.store import Store

log = logging.getLogger("gateway.admin")

FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
AUDIT_CURSOR = "audit_log"
AUDIT_EVERY_S = 1.0
NOT_LOGGED = ("invitation.",)   # one per case from the window system: in the audit table only


@dataclass(frozen=True)
class LogSettings:
    format: str = "text"
    level: str = "INFO"

    @classmethod
    def from_config(cls, cfg: Config) -> LogSettings:
        sec = cfg.raw.get("log", {})
        fmt, level = sec.get("format", "text"), sec.get("level", "INFO")
        if fmt not in FORMATS or level not in LEVELS:   # the schema checked both; kept for direct use
            raise ConfigError("[log] format must be text or json, level one of %s" % ", ".join(LEVELS))
        return cls(fmt, level)


def _iso(created: float) -> str:
    return dt.datetime.fromtimestamp(created).astimezone().isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """`TIME LEVEL LOGGER: message`, TIME in ISO 8601 with the zone's offset."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return _iso(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a traceback is one string field, never extra lines."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _iso(record.created), "level": record.levelname, "logger": record.name,
                               "msg": record.getMessage()}
        fields = getattr(record, "hcp", None)
        if isinstance(fields, dict):
            out.update({k: v for k, v in fields.items() if k not in out})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """The root logger: one stderr handler with the chosen format (replacing any other)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)


# ---- admin actions -------------------------------------------------------------------------

def _value(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True)
    plain = text and not any(c.isspace() or c in "=\"" for c in text)
    return text if plain else json.dumps(text, ensure_ascii=False)


def describe(row: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The log line of one audit row, and its structured fields."""
    try:
        detail = json.loads(row.get("detail_json") or "{}")
    except ValueError:
        detail = {}
    if not isinstance(detail, dict):
        detail = {"detail": detail}
    subject = detail.pop("subject", None) or detail.pop("device_id", None) or ""
    pairs = " ".join("%s=%s" % (k, _value(v)) for k, v in sorted(detail.items()) if v is not None)
    line = "admin: %s%s%s by %s" % (row["action"], " " + _value(subject) if subject else "",
                                    " " + pairs if pairs else "", row["actor"])
    return line, {"event": "admin", "action": row["action"], "actor": row["actor"], "subject": subject,
                  "detail": detail, "audit_id": int(row["id"])}


async def log_new_audit_rows(store: Store, limit: int = 500) -> int:
    """Log the audit rows after the stored cursor (starting at the newest on a first run: the
    history is in the store, not repeated in the log); move the cursor. How many were logged."""
    def read(tx: Any) -> tuple[int, list[dict[str, Any]], bool]:
        cur = tx.alerts.cursor(AUDIT_CURSOR)
        if cur is None:
            return tx.audit.latest_id(), [], True
        return cur, tx.audit.since(cur, limit), False

    cursor, rows, first = await store.read(read)
    if first:
        await store.write(lambda tx: tx.alerts.set_cursor(AUDIT_CURSOR, cursor))
        return 0
    n = 0
    for row in rows:
        if not str(row["action"]).startswith(NOT_LOGGED):
            line, fields = describe(row)
            log.info("%s", line, extra={"hcp": fields})
            n += 1
    if rows:
        last = int(rows[-1]["id"])
        await store.write(lambda tx: tx.alerts.set_cursor(AUDIT_CURSOR, last))
    return n


def admin_log_job(store: Store, every_s: float = AUDIT_EVERY_S) -> Any:
    """A leader job: log new admin actions every few moments until stopped."""
    async def job(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await log_new_audit_rows(store)
            except Exception as e:  # noqa: BLE001 - the store may be away for a moment
                logging.getLogger("gateway.service").warning("admin actions not logged yet: %s", e)
            try:
                await asyncio.wait_for(stop.wait(), every_s)
            except TimeoutError:
                pass
    return job

"""The HTTP API's guard against hostile clients (issue 14, item 8).

No client input may produce a 500 or a traceback:
  - bodies: only UTF-8 JSON (a declared charset other than utf-8 is 415, undecodable bytes
    400), nested at most MAX_DEPTH deep (CPython's recursive json parser would raise
    RecursionError), no lone UTF-16 surrogates in any string (SQLite cannot store them);
  - the request's path and query must be text (percent-escapes of invalid UTF-8 decode to
    lone surrogates, which reached SQL as UnicodeEncodeError);
  - the bearer token must be printable ASCII (other bytes made the constant-time compare
    raise); wrong tokens are throttled per client address (FailedTokens).
Requests the HTTP parser itself refuses (a malformed request line or header) never reach
the app: aiohttp answers them with its own plain 400 and logs a traceback for each through
the server logger it is given. `server_logger()` is that logger for our AppRunner (the
documented `logger` argument): it counts them and logs one line per interval, no traceback;
any other record (a real bug) passes unchanged.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from typing import Any

from aiohttp import web
from aiohttp.http import HttpProcessingError

log = logging.getLogger("gateway.api")

MAX_DEPTH = 32            # request bodies are flat objects; 32 is generous
MALFORMED_LOG_S = 60.0    # at most one log line per this interval about refused requests


class GuardError(Exception):
    """A refusal the errors middleware turns into a JSON error with its status."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.http_status = status
        self.code = code
        self.headers = headers or {}


# ---- bodies --------------------------------------------------------------------------------

async def json_body(request: web.Request, max_bytes: int) -> Any:
    """The request body as JSON, or GuardError: 413 too large, 415 a charset other than
    UTF-8, 400 not UTF-8 / not JSON / too deep / a lone surrogate in a string."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise GuardError(413, "body_too_large", "body over %d bytes" % max_bytes)
    charset = request.charset
    if charset is not None and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise GuardError(415, "unsupported_charset", "JSON bodies must be UTF-8 (got charset %s)"
                         % _printable(charset))
    raw = await request.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise GuardError(400, "bad_encoding", "body is not valid UTF-8") from None
    if too_deep(text):
        raise GuardError(400, "too_deep", "JSON nested deeper than %d" % MAX_DEPTH)
    try:
        value = json.loads(text)
    except ValueError:
        raise GuardError(400, "bad_json", "body is not valid JSON") from None
    if not _encodable(value):
        raise GuardError(400, "bad_text", "a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)")
    return value


def too_deep(text: str) -> bool:
    """True if the JSON text opens more than MAX_DEPTH containers at once (strings skipped;
    iterative, so any depth is safe to scan)."""
    depth = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif c in "]}":
            depth -= 1
    return False


def _encodable(value: Any) -> bool:
    """Every string (keys too) encodes as UTF-8. Depth is bounded by too_deep()."""
    if isinstance(value, str):
        return _text_ok(value)
    if isinstance(value, list):
        return all(_encodable(v) for v in value)
    if isinstance(value, dict):
        return all(_text_ok(k) and _encodable(v) for k, v in value.items())
    return True


def _text_ok(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(s: str, limit: int = 40) -> str:
    return repr(s[:limit])


# ---- path, query, token ----------------------------------------------------------------------

def check_url(request: web.Request) -> None:
    """The decoded path and query must be text: a percent-escape of invalid UTF-8 decodes
    to a lone surrogate, which no id or SQL parameter can hold."""
    parts = [request.path, *request.match_info.values()]
    for k, v in request.query.items():
        parts += (k, v)
    if not all(_text_ok(p) for p in parts):
        raise GuardError(400, "bad_encoding", "the URL holds percent-escapes that are not UTF-8")


def bearer_token(request: web.Request) -> str | None:
    """The bearer token if it is printable ASCII, "" for any other (a wrong token, counted),
    or GuardError 401 when there is no bearer header at all (not counted: a client set up
    wrong is not guessing)."""
    h = request.headers.get("Authorization", "")
    if not h.startswith("Bearer "):
        raise GuardError(401, "unauthorized", "missing 'Authorization: Bearer <token>' header")
    token = h[len("Bearer "):].strip()
    if not all(0x21 <= ord(c) <= 0x7E for c in token):
        return ""
    return token


class FailedTokens:
    """Wrong tokens per client address: after `limit` failures within `window_s`, the address
    gets 429 for every authenticated endpoint until its failures age out, the right token
    included (else guessing would go on). Successes do not reset the count: a holder of the
    window token could otherwise interleave them with guesses at the admin token. Memory is
    bounded (oldest addresses forgotten first)."""

    MAX_ADDRESSES = 10000

    def __init__(self, limit: int, window_s: float, clock: Any = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._fails: OrderedDict[str, list[float]] = OrderedDict()
        self.refused = 0      # requests answered 429
        self.failed = 0       # wrong tokens seen

    def _recent(self, addr: str, now: float) -> list[float]:
        times = self._fails.get(addr)
        if times is None:
            return []
        times[:] = [t for t in times if now - t < self.window_s]
        if not times:
            del self._fails[addr]
        return times

    def check(self, addr: str) -> None:
        now = self.clock()
        times = self._recent(addr, now)
        if len(times) >= self.limit:
            self.refused += 1
            retry = max(1, int(self.window_s - (now - times[0])) + 1)
            raise GuardError(429, "too_many_failures",
                             "too many wrong tokens from this address; retry in %d s" % retry,
                             {"Retry-After": str(retry)})

    def fail(self, addr: str) -> None:
        now = self.clock()
        self.failed += 1
        times = self._recent(addr, now)
        if not times:
            self._fails[addr] = times
        times.append(now)
        del times[:-self.limit]   # only the last `limit` matter
        self._fails.move_to_end(addr)
        while len(self._fails) > self.MAX_ADDRESSES:
            self._fails.popitem(last=False)
        if self.failed == 1 or self.failed % 100 == 0:
            log.warning("wrong API token from %s (%d wrong tokens in all)", addr, self.failed)


# ---- requests the HTTP parser refuses ----------------------------------------------------------

class MalformedRequests(logging.Filter):
    """On the server logger: a record about a request aiohttp's parser refused (its exception
    an HttpProcessingError) is counted; one line (no traceback) goes out per interval."""

    def __init__(self, interval_s: float = MALFORMED_LOG_S) -> None:
        super().__init__()
        self.count = 0
        self._interval_s = interval_s
        self._last_log = -1e9
        self._since_log = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True  # anything else (a real bug) keeps its traceback
        self.count += 1
        self._since_log += 1
        now = time.monotonic()
        if now - self._last_log < self._interval_s:
            return False
        self._last_log = now
        record.msg = "refused malformed HTTP request from %s (%s: %s); %d since last report, %d in all"
        record.args = (_peer(record), type(exc).__name__, _printable(str(getattr(exc, "message", "")), 80),
                       self._since_log, self.count)
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        self._since_log = 0
        return True


def _peer(record: logging.LogRecord) -> str:
    args = record.args
    return str(args[0]) if isinstance(args, tuple) and args else "?"


def server_logger(name: str = "gateway.api.server") -> tuple[logging.Logger, MalformedRequests]:
    """The logger to give aiohttp's AppRunner (`logger=`), and its counter."""
    logger = logging.getLogger(name)
    for f in list(logger.filters):
        if isinstance(f, MalformedRequests):
            return logger, f
    counter = MalformedRequests()
    logger.addFilter(counter)
    return logger, counter

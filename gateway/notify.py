"""Notifications to people and systems: a webhook (JSON POST, HMAC-signed) and e-mail over SMTP.

Used by the complaints service (a new 差评, due soon, overdue) and by alerts (a silent device,
failed pushes, a filling disk). The caller's path never waits and never sees an exception:
:meth:`Notifier.send` only puts the notification on each matching channel's bounded outbox; one
worker per channel delivers in order, with bounded retries and backoff. A dead webhook fills
only its own outbox; when an outbox is full the *oldest* waiting notification is dropped (the
newest says most about the present) and counted. Every failure is logged (without secrets, and
without the webhook URL's query, which often carries a key) and counted in :meth:`Notifier.stats`.

Webhook request: ``POST`` the JSON of :meth:`Notification.to_json` (UTF-8) with headers
``X-HCP-Event`` (the kind), ``X-HCP-Delivery`` (the notification id, the same on every retry:
receivers dedupe by it), and when a secret is configured ``X-HCP-Timestamp`` (Unix seconds) and
``X-HCP-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import enum
import fnmatch
import hashlib
import hmac
import json
import logging
import re
import ssl
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp
import aiosmtplib

from gateway.sectioncheck import Secret, Section, SettingsError, read_secret_file

log = logging.getLogger("gateway.notify")

__all__ = [
    "Severity", "Notification", "RetryPolicy", "WebhookChannel", "EmailChannel", "NotifySettings",
    "NotifySettingsError", "Notifier", "ChannelStats", "sign",
]

_KIND_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
_DROP_LOG_EVERY_S = 60.0


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def label_zh(self) -> str:
        return {"info": "通知", "warning": "提醒", "critical": "紧急"}[self.value]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True)
class Notification:
    """One message. ``subject``/``body`` are Chinese for people; ``payload`` is for machines.

    ``kind`` is dotted lowercase, e.g. ``complaint.opened``, ``complaint.due_soon``,
    ``complaint.overdue``, ``alert.device_silent``; channels filter on it.
    """

    kind: str
    severity: Severity
    subject: str
    body: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def __post_init__(self) -> None:
        if not _KIND_RE.match(self.kind):
            raise ValueError(f"notification kind must be dotted lowercase like complaint.opened, "
                             f"not {self.kind!r}")
        if not isinstance(self.severity, Severity):
            object.__setattr__(self, "severity", Severity(self.severity))
        if self.created_at.tzinfo is None:
            raise ValueError("created_at must be an aware datetime")
        json.dumps(self.payload)  # fail here, in the caller's code, not later in a worker

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "severity": self.severity.value,
            "subject": self.subject,
            "body": self.body,
            "created_at": self.created_at.isoformat(),
            "payload": dict(self.payload),
        }


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-HCP-Signature`` value for a body (receivers compute the same and compare)."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


# --- settings ------------------------------------------------------------------------------

class NotifySettingsError(SettingsError):
    """The [notify] section is wrong; the message (one line) names every problem."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4          # tries in all, the first included
    backoff_s: float = 1.0     # wait before the 2nd try; doubles each time
    backoff_max_s: float = 60.0
    timeout_s: float = 10.0    # per try: connect + send + answer

    def delay(self, failed_tries: int) -> float:
        return float(min(self.backoff_max_s, self.backoff_s * (2 ** (failed_tries - 1))))


@dataclass(frozen=True)
class _ChannelBase:
    name: str
    retry: RetryPolicy
    min_severity: Severity
    kinds: tuple[str, ...]  # fnmatch patterns; empty = every kind

    def wants(self, n: Notification) -> bool:
        if n.severity.rank < self.min_severity.rank:
            return False
        return not self.kinds or any(fnmatch.fnmatchcase(n.kind, k) for k in self.kinds)


@dataclass(frozen=True)
class WebhookChannel(_ChannelBase):
    url: Secret  # a URL may carry a key in its query (WeCom, DingTalk): kept as a secret
    secret: Secret | None = None

    @property
    def safe_url(self) -> str:
        return redact_url(self.url.reveal())


@dataclass(frozen=True)
class EmailChannel(_ChannelBase):
    host: str
    port: int
    security: str  # ssl | starttls | none
    sender: str
    recipients: tuple[str, ...]
    username: str | None = None
    password: Secret | None = None
    ca_file: Path | None = None


@dataclass(frozen=True)
class NotifySettings:
    """The ``[notify]`` section: channels and the outbox size."""

    webhooks: tuple[WebhookChannel, ...] = ()
    emails: tuple[EmailChannel, ...] = ()
    queue_size: int = 1000
    timezone: str = "Asia/Shanghai"  # how times are shown to people in e-mail bodies

    @property
    def channels(self) -> tuple[WebhookChannel | EmailChannel, ...]:
        return (*self.webhooks, *self.emails)

    @classmethod
    def from_mapping(cls, data: object, *, base_dir: Path | None = None) -> NotifySettings:
        """Check a whole ``[notify]`` table (reading and checking secret files); raise
        :class:`NotifySettingsError` listing every problem.

        ::

            [notify]
            queue_size = 1000
            [[notify.webhook]]
            name = "duty"
            url = "https://ops.example.org/hooks/hcp"   # or url_file = "webhook.url" (0600)
            secret_file = "webhook.secret"              # optional, 0600: HMAC signature
            min_severity = "warning"
            kinds = ["complaint.*", "alert.*"]
            [[notify.email]]
            name = "duty-mail"
            host = "smtp.example.org"
            port = 465
            security = "ssl"                            # ssl | starttls | none
            username = "hcp@example.org"
            password_file = "smtp.password"             # 0600
            from = "好差评网关 <hcp@example.org>"
            to = ["duty@example.org"]
        """
        sec = Section("notify", data, base_dir=base_dir)
        queue_size = sec.get_int("queue_size", 1000, 1, 1_000_000)
        tz = sec.get_str("timezone", "Asia/Shanghai")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            sec.problem("timezone", f"'{tz}' is not a known time zone (e.g. Asia/Shanghai)")
        names: set[str] = set()
        webhooks: list[WebhookChannel] = []
        emails: list[EmailChannel] = []
        for key, out in (("webhook", webhooks), ("email", emails)):
            raw = sec.raw(key)
            if raw is None:
                continue
            if isinstance(raw, Mapping):
                raw = [raw]
            if not isinstance(raw, list):
                sec.problem(key, f"must be a list of tables ([[notify.{key}]])")
                continue
            for i, item in enumerate(raw):
                it = sec.item(f"{key}[{i}]", item)
                ch = _webhook(it) if key == "webhook" else _email(it)
                it.check_unknown()
                name = it.data.get("name")
                if isinstance(name, str) and name:
                    if name in names:
                        it.problem("name", f"'{name}' is used by another channel")
                    names.add(name)
                if ch is not None:
                    out.append(ch)  # type: ignore[arg-type]
        try:
            sec.finish()
        except SettingsError as e:
            raise NotifySettingsError(e.section, e.problems) from None
        return cls(tuple(webhooks), tuple(emails), queue_size, tz)


def _common(it: Section) -> tuple[str, RetryPolicy, Severity, tuple[str, ...]]:
    name = it.get_str("name", "", nonempty=True)
    if not it.has("name"):
        it.problem("name", "is required")
    retry = RetryPolicy(
        attempts=it.get_int("attempts", 4, 1, 20),
        backoff_s=it.get_float("backoff_s", 1.0, 0.0, 3600.0),
        backoff_max_s=it.get_float("backoff_max_s", 60.0, 0.0, 86400.0),
        timeout_s=it.get_float("timeout_s", 10.0, 0.1, 600.0),
    )
    sev = Severity(it.get_str("min_severity", "info", choices=[s.value for s in Severity]))
    kinds = it.get_str_list("kinds")
    return name, retry, sev, kinds


def _secret(it: Section, key: str, *, required: bool = False) -> Secret | None:
    p = it.get_path(key, required=required)
    if p is None:
        return None
    try:
        return read_secret_file(p)
    except ValueError as e:
        it.problem(key, str(e))
        return None


def _webhook(it: Section) -> WebhookChannel | None:
    name, retry, sev, kinds = _common(it)
    url: Secret | None = None
    if it.has("url") and it.has("url_file"):
        it.problem("url", "give url or url_file, not both")
    if it.has("url"):
        raw = it.get_str("url", "", nonempty=True)
        url = Secret(raw, Path("<config>")) if raw else None
    elif it.has("url_file"):
        url = _secret(it, "url_file")
    else:
        it.problem("url", "is required (or url_file)")
    if url is not None:
        parts = urlsplit(url.reveal())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            it.problem("url", f"must be an http(s) URL, not '{redact_url(url.reveal())}'")
            url = None
    secret = _secret(it, "secret_file")
    if url is None or not name:
        return None
    return WebhookChannel(name, retry, sev, kinds, url, secret)


def _email(it: Section) -> EmailChannel | None:
    name, retry, sev, kinds = _common(it)
    host = it.get_str("host", "", nonempty=True)
    if not it.has("host"):
        it.problem("host", "is required")
    security = it.get_str("security", "starttls", choices=["ssl", "starttls", "none"])
    port = it.get_int("port", {"ssl": 465, "starttls": 587, "none": 25}[security], 1, 65535)
    sender = it.get_str("from", "", nonempty=True)
    if not it.has("from"):
        it.problem("from", "is required (the sender address)")
    recipients = it.get_str_list("to", nonempty=True)
    for r in recipients:
        if "@" not in email.utils.parseaddr(r)[1]:
            it.problem("to", f"'{r}' is not an e-mail address")
    username = it.get_str("username", "") or None
    password = _secret(it, "password_file")
    if it.has("username") != it.has("password_file"):
        it.problem("username", "and password_file go together")
    if password is not None and security == "none" and host not in ("127.0.0.1", "localhost", "::1"):
        it.problem("security", "is none: a password would cross the network in clear; use ssl or starttls")
    ca_file = it.get_path("ca_file")
    if ca_file is not None and not ca_file.is_file():
        it.problem("ca_file", f"{ca_file} is not a file")
    if not (name and host and sender and recipients):
        return None
    return EmailChannel(name, retry, sev, kinds, host, port, security, sender, recipients,
                        username, password, ca_file)


def redact_url(url: str) -> str:
    """scheme://host[:port]/path: no user info, no query, no fragment (they may carry keys)."""
    p = urlsplit(url)
    host = p.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    port = f":{p.port}" if p.port else ""
    return f"{p.scheme}://{host}{port}{p.path}" + ("?…" if p.query else "")


# --- the notifier --------------------------------------------------------------------------

@dataclass
class ChannelStats:
    sent: int = 0
    failed: int = 0       # given up: a permanent error, or every try failed
    retries: int = 0      # tries after the first
    dropped: int = 0      # pushed out of a full outbox
    queued: int = 0       # waiting now
    last_error: str = ""
    last_sent_at: dt.datetime | None = None


class _Permanent(Exception):
    """Retrying cannot help (a 4xx answer, a refused recipient, bad credentials)."""


class _Transient(Exception):
    """Worth another try (no connection, a timeout, a 5xx or 429 answer)."""


class Notifier:
    """Delivers notifications to the configured channels without ever blocking the caller.

    ``async with Notifier(settings) as n: await n.send(...)``, or :meth:`start` / :meth:`aclose`.
    """

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        self._tz = ZoneInfo(settings.timezone)
        self._queues: dict[str, asyncio.Queue[Notification]] = {
            ch.name: asyncio.Queue(settings.queue_size) for ch in settings.channels}
        self._stats: dict[str, ChannelStats] = {ch.name: ChannelStats() for ch in settings.channels}
        self._workers: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._last_drop_log: dict[str, float] = {}

    async def __aenter__(self) -> Notifier:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        if self._workers:
            return
        if self.settings.webhooks:
            self._session = aiohttp.ClientSession()
        for ch in self.settings.channels:
            self._workers.append(asyncio.create_task(self._run(ch), name=f"notify-{ch.name}"))

    async def send(self, n: Notification) -> None:
        """Queue ``n`` for every channel that wants it. Never waits on a channel, never raises."""
        try:
            for ch in self.settings.channels:
                if ch.wants(n):
                    self._enqueue(ch.name, n)
        except Exception:  # a bug here must not break ingest or a complaint transition
            log.exception("notify: could not queue notification %s (%s)", n.id, n.kind)

    def _enqueue(self, name: str, n: Notification) -> None:
        q = self._queues[name]
        st = self._stats[name]
        if q.full():
            q.get_nowait()
            q.task_done()
            st.dropped += 1
            now = time.monotonic()
            if now - self._last_drop_log.get(name, -1e9) >= _DROP_LOG_EVERY_S:
                self._last_drop_log[name] = now
                log.warning("notify: channel '%s' outbox full (%d): dropped the oldest; %d dropped so far",
                            name, q.maxsize, st.dropped)
        q.put_nowait(n)

    def stats(self) -> dict[str, ChannelStats]:
        for name, q in self._queues.items():
            self._stats[name].queued = q.qsize()
        return {k: ChannelStats(**vars(v)) for k, v in self._stats.items()}

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every outbox is empty and idle; False if ``timeout_s`` passed first."""
        try:
            async with asyncio.timeout(timeout_s):
                for q in self._queues.values():
                    await q.join()
            return True
        except TimeoutError:
            return False

    async def aclose(self, drain_s: float = 5.0) -> None:
        """Give waiting notifications ``drain_s`` to go out, then stop; log what is left."""
        if self._workers and drain_s > 0:
            await self.flush(drain_s)
        for t in self._workers:
            t.cancel()
        for t in self._workers:
            try:
                await t
            except asyncio.CancelledError:
                pass
        self._workers.clear()
        for name, q in self._queues.items():
            if q.qsize():
                log.warning("notify: channel '%s' stopped with %d notification(s) undelivered",
                            name, q.qsize())
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- delivery --------------------------------------------------------------------------
    async def _run(self, ch: WebhookChannel | EmailChannel) -> None:
        q = self._queues[ch.name]
        while True:
            n = await q.get()
            try:
                await self._deliver(ch, n)
            except Exception:  # never let one bad notification stop the channel
                self._stats[ch.name].failed += 1
                log.exception("notify: channel '%s': unexpected error on %s", ch.name, n.id)
            finally:
                q.task_done()

    async def _deliver(self, ch: WebhookChannel | EmailChannel, n: Notification) -> None:
        st = self._stats[ch.name]
        what = ch.safe_url if isinstance(ch, WebhookChannel) else f"smtp://{ch.host}:{ch.port}"
        for attempt in range(1, ch.retry.attempts + 1):
            try:
                if isinstance(ch, WebhookChannel):
                    await self._post(ch, n)
                else:
                    await self._mail(ch, n)
            except _Permanent as e:
                st.failed += 1
                st.last_error = str(e)
                log.error("notify: %s '%s' (%s) refused %s %s: %s; not retried",
                          _type(ch), ch.name, what, n.kind, n.id, e)
                return
            except _Transient as e:
                st.last_error = str(e)
                if attempt == ch.retry.attempts:
                    st.failed += 1
                    log.error("notify: %s '%s' (%s) failed %s %s after %d tries: %s",
                              _type(ch), ch.name, what, n.kind, n.id, attempt, e)
                    return
                st.retries += 1
                delay = ch.retry.delay(attempt)
                log.warning("notify: %s '%s' (%s) try %d/%d for %s failed: %s; retry in %.1f s",
                            _type(ch), ch.name, what, attempt, ch.retry.attempts, n.id, e, delay)
                await asyncio.sleep(delay)
            else:
                st.sent += 1
                st.last_sent_at = dt.datetime.now(dt.UTC)
                log.info("notify: %s '%s' delivered %s %s", _type(ch), ch.name, n.kind, n.id)
                return

    async def _post(self, ch: WebhookChannel, n: Notification) -> None:
        assert self._session is not None
        body = json.dumps(n.to_json(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "haochaping-gateway",
            "X-HCP-Event": n.kind,
            "X-HCP-Delivery": n.id,
        }
        if ch.secret is not None:
            ts = str(int(time.time()))
            headers["X-HCP-Timestamp"] = ts
            headers["X-HCP-Signature"] = sign(ch.secret.reveal().encode("utf-8"), ts, body)
        try:
            async with self._session.post(
                    ch.url.reveal(), data=body, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=ch.retry.timeout_s)) as r:
                status = r.status
                await r.read()
        except TimeoutError:
            raise _Transient(f"no answer within {ch.retry.timeout_s:g} s") from None
        except aiohttp.ClientError as e:
            # str(e) of a connection error names host:port only, never the query
            raise _Transient(f"{type(e).__name__}: {_one_line(e)}") from None
        if 200 <= status < 300:
            return
        if status in (408, 425, 429) or status >= 500:
            raise _Transient(f"HTTP {status}")
        raise _Permanent(f"HTTP {status}")

    def _message(self, ch: EmailChannel, n: Notification) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = f"【{n.severity.label_zh}】{n.subject}"
        msg["From"] = ch.sender
        msg["To"] = ", ".join(ch.recipients)
        msg["Date"] = email.utils.format_datetime(n.created_at)
        domain = email.utils.parseaddr(ch.sender)[1].rpartition("@")[2] or None
        msg["Message-ID"] = email.utils.make_msgid(idstring=n.id, domain=domain)
        msg["X-HCP-Event"] = n.kind
        when = n.created_at.astimezone(self._tz)
        msg.set_content(
            f"{n.body}\n\n"
            f"—\n类型：{n.kind}\n级别：{n.severity.label_zh}（{n.severity.value}）\n"
            f"时间：{when:%Y-%m-%d %H:%M:%S} {when:%z}（{self.settings.timezone}）\n"
            f"编号：{n.id}\n", charset="utf-8")
        payload = json.dumps(n.to_json(), ensure_ascii=False, indent=2).encode("utf-8")
        msg.add_attachment(payload, maintype="application", subtype="json",
                           filename="notification.json")
        return msg

    async def _mail(self, ch: EmailChannel, n: Notification) -> None:
        msg = self._message(ch, n)
        ctx = ssl.create_default_context(cafile=str(ch.ca_file) if ch.ca_file else None)
        try:
            await aiosmtplib.send(
                msg, hostname=ch.host, port=ch.port,
                username=ch.username, password=ch.password.reveal() if ch.password else None,
                use_tls=ch.security == "ssl", start_tls=True if ch.security == "starttls" else False,
                tls_context=ctx if ch.security != "none" else None,
                timeout=ch.retry.timeout_s)
        except aiosmtplib.SMTPResponseException as e:
            text = f"SMTP {e.code} {_one_line(e.message)}"
            if 500 <= e.code < 600:
                raise _Permanent(text) from None
            raise _Transient(text) from None
        except aiosmtplib.SMTPRecipientsRefused as e:
            raise _Permanent(f"recipients refused: {len(e.recipients)}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
            raise _Transient(f"{type(e).__name__}: {_one_line(e)}") from None


def _type(ch: WebhookChannel | EmailChannel) -> str:
    return "webhook" if isinstance(ch, WebhookChannel) else "email"


def _one_line(e: object) -> str:
    return " ".join(str(e).split())[:200]


"""Notifications against a real local aiohttp server and a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email
import email.policy
import json
import logging
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from gateway.notify import (
    Notification,
    Notifier,
    NotifySettings,
    NotifySettingsError,
    Severity,
    sign,
)
from simulator.netutil import free_port

SECRET = "s3cr3t-hmac-key-please-never-log"
SMTP_PASSWORD = "smtp-pass-never-in-logs"


def _secret_file(tmp_path: Path, name: str, value: str, mode: int = 0o600) -> Path:
    p = tmp_path / name
    p.write_text(value + "\n", encoding="utf-8")
    p.chmod(mode)
    return p


def _ours(caplog: pytest.LogCaptureFixture) -> str:
    """What the gateway's own loggers wrote (the test servers' logs are not ours)."""
    return "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records
                     if r.name.startswith("gateway"))


def _chaping(**kw: Any) -> Notification:
    return Notification(
        kind="complaint.opened", severity=Severity.WARNING,
        subject="新差评：综合受理窗口 3 号 · 不满意",
        body="办件 370303-2026-000123 获评“不满意”，请在 1 个工作日内联系办事群众。",
        payload={"complaint_id": 17, "case_no": "370303-2026-000123", "grade": "d",
                 "due": {"contact": "2026-10-09T00:00:00+08:00"}},
        **kw)


# --- a real HTTP receiver -------------------------------------------------------------------

@dataclass
class Receiver:
    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    script: list[int] = field(default_factory=list)   # statuses to answer, then 200
    hang: asyncio.Event | None = None                  # when given: answer only once it is set
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver(url="")

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        rec.requests.append((dict(request.headers), body))
        rec.arrived.set()
        if rec.hang is not None:
            await rec.hang.wait()
        status = rec.script.pop(0) if rec.script else 200
        return web.Response(status=status, text="ok")

    app = web.Application()
    app.router.add_post("/hooks/hcp", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}/hooks/hcp?key=url-key-never-logged"
    try:
        yield rec
    finally:
        if rec.hang is not None:
            rec.hang.set()
        await runner.cleanup()


def _webhook_settings(url: str, tmp_path: Path, **kw: Any) -> NotifySettings:
    hook: dict[str, Any] = {"name": "duty", "url": url, "backoff_s": 0.05, "timeout_s": 2.0}
    hook.update(kw)
    return NotifySettings.from_mapping({"webhook": [hook]}, base_dir=tmp_path)


async def test_webhook_posts_signed_json(receiver: Receiver, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _secret_file(tmp_path, "hook.secret", SECRET)
    s = _webhook_settings(receiver.url, tmp_path, secret_file="hook.secret")
    n = _chaping()
    async with Notifier(s) as notifier:
        await notifier.send(n)
        assert await notifier.flush(10)
        st = notifier.stats()["duty"]
    assert (st.sent, st.failed, st.retries, st.dropped, st.queued) == (1, 0, 0, 0, 0)
    [(headers, body)] = receiver.requests
    doc = json.loads(body.decode("utf-8"))
    assert doc == {**n.to_json(), "payload": json.loads(json.dumps(dict(n.payload)))}
    assert doc["subject"] == "新差评：综合受理窗口 3 号 · 不满意"
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["X-HCP-Event"] == "complaint.opened"
    assert headers["X-HCP-Delivery"] == n.id
    # The receiver verifies the signature with the shared secret.
    assert headers["X-HCP-Signature"] == sign(SECRET.encode(), headers["X-HCP-Timestamp"], body)
    assert "url-key-never-logged" not in _ours(caplog) and SECRET not in _ours(caplog)
    assert SECRET not in repr(s) and "url-key-never-logged" not in repr(s)


async def test_retries_with_backoff_then_delivers(receiver: Receiver, tmp_path: Path) -> None:
    receiver.script = [503, 429]
    s = _webhook_settings(receiver.url, tmp_path, attempts=4)
    async with Notifier(s) as notifier:
        await notifier.send(_chaping())
        assert await notifier.flush(10)
        st = notifier.stats()["duty"]
    assert (st.sent, st.failed, st.retries) == (1, 0, 2)
    ids = {h["X-HCP-Delivery"] for h, _ in receiver.requests}
    assert len(receiver.requests) == 3 and len(ids) == 1  # same delivery id on every try


async def test_permanent_error_is_not_retried(receiver: Receiver, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    receiver.script = [400]
    s = _webhook_settings(receiver.url, tmp_path)
    async with Notifier(s) as notifier:
        await notifier.send(_chaping())
        assert await notifier.flush(10)
        st = notifier.stats()["duty"]
    assert (st.sent, st.failed, st.retries, st.last_error) == (0, 1, 0, "HTTP 400")
    assert len(receiver.requests) == 1
    assert "HTTP 400" in _ours(caplog) and "url-key-never-logged" not in _ours(caplog)


async def test_gives_up_after_bounded_tries(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hooks/hcp?key=url-key-never-logged"
    s = _webhook_settings(dead, tmp_path, attempts=3)
    async with Notifier(s) as notifier:
        await notifier.send(_chaping())
        assert await notifier.flush(10)
        st = notifier.stats()["duty"]
    assert (st.sent, st.failed, st.retries) == (0, 1, 2)
    assert "after 3 tries" in _ours(caplog) and "url-key-never-logged" not in _ours(caplog)


async def test_hanging_webhook_never_blocks_the_caller(receiver: Receiver, tmp_path: Path) -> None:
    receiver.hang = asyncio.Event()
    s = NotifySettings.from_mapping({"queue_size": 10, "webhook": [
        {"name": "duty", "url": receiver.url, "timeout_s": 30.0, "attempts": 1}]})
    async with Notifier(s) as notifier:
        await notifier.send(_chaping())
        await asyncio.wait_for(receiver.arrived.wait(), 10)  # the worker is now stuck in a POST
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for _ in range(1000):
            await notifier.send(_chaping())
        elapsed = loop.time() - t0
        st = notifier.stats()["duty"]
        # 1 in flight, 10 waiting, the oldest 990 pushed out; counted, not lost silently.
        assert (st.queued, st.dropped) == (10, 990)
        # send() only queues: 1000 calls cannot have waited for the 30 s request.
        assert elapsed < 5.0
        receiver.hang.set()
        assert await notifier.flush(20)
        assert notifier.stats()["duty"].sent == 11


async def test_filters_by_severity_and_kind(receiver: Receiver, tmp_path: Path) -> None:
    s = _webhook_settings(receiver.url, tmp_path, min_severity="warning", kinds=["complaint.*"])
    async with Notifier(s) as notifier:
        await notifier.send(Notification("complaint.due_soon", Severity.INFO, "即将到期", "…"))
        await notifier.send(Notification("alert.disk", Severity.CRITICAL, "磁盘将满", "…"))
        await notifier.send(Notification("complaint.overdue", Severity.CRITICAL, "已超期", "…"))
        assert await notifier.flush(10)
    assert [json.loads(b)["kind"] for _, b in receiver.requests] == ["complaint.overdue"]


def test_notification_is_checked_in_the_callers_code() -> None:
    with pytest.raises(ValueError, match="dotted lowercase"):
        Notification("Complaint Opened", Severity.INFO, "x", "y")
    with pytest.raises(TypeError):
        Notification("complaint.opened", Severity.INFO, "x", "y", payload={"t": object()})
    with pytest.raises(ValueError, match="aware"):
        Notification("complaint.opened", Severity.INFO, "x", "y", created_at=dt.datetime(2026, 1, 1))


def test_settings_report_every_problem(tmp_path: Path) -> None:
    loose = _secret_file(tmp_path, "loose.secret", SECRET, 0o644)
    with pytest.raises(NotifySettingsError) as e:
        NotifySettings.from_mapping({
            "queue_sise": 5,
            "webhook": [{"name": "a", "url": "ftp://x/y?key=abc", "secret_file": str(loose)},
                        {"url": "https://ok.example/h", "atempts": 3}],
            "email": [{"name": "a", "host": "smtp.example.org", "security": "none",
                       "username": "u", "password_file": str(_secret_file(tmp_path, "p", "pw")),
                       "from": "hcp@example.org", "to": ["not-an-address"]}],
        }, base_dir=tmp_path)
    msg = str(e.value)
    assert isinstance(e.value, ValueError) and "\n" not in msg and msg.startswith("[notify]: ")
    for part in [
        "unknown key 'queue_sise' (did you mean 'queue_size'?)",
        "webhook[0].url must be an http(s) URL, not 'ftp://x/y?…'",
        "webhook[0].secret_file", "is readable by group or others (mode 0644)", "chmod 600",
        "webhook[1].name is required",
        "unknown key 'webhook[1].atempts' (did you mean 'attempts'?)",
        "email[0].to 'not-an-address' is not an e-mail address",
        "email[0].security is none: a password would cross the network in clear",
        "email[0].name 'a' is used by another channel",
    ]:
        assert part in msg, (part, msg)
    assert "abc" not in msg and SECRET not in msg


# --- a real SMTP server ----------------------------------------------------------------------

class _Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.original_content or envelope.content,
                                       policy=email.policy.default)
        self.messages.append(msg)  # type: ignore[arg-type]
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = (isinstance(data, LoginPassword) and data.login == b"hcp@example.org"
          and data.password == SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


def _tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cryptography: esptool's dependency too)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_p, key_p = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    cert_p.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_p.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    return cert_p, key_p


@dataclass
class Smtp:
    mode: str  # none | starttls | ssl
    port: int
    inbox: _Inbox
    ca_file: Path | None = None


@contextlib.contextmanager
def _smtp_server(mode: str, tmp_path: Path) -> Iterator[Smtp]:
    """A real aiosmtpd server on 127.0.0.1: plain, STARTTLS or implicit TLS (the last two with AUTH)."""
    inbox = _Inbox()
    port = free_port()
    kw: dict[str, Any] = {}
    ca: Path | None = None
    if mode != "none":
        ca, key = _tls_files(tmp_path)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(ca, key)
        kw = {"authenticator": _authenticator, "auth_required": True}
        if mode == "starttls":
            kw.update(tls_context=ctx, require_starttls=True)
        else:
            # Implicit TLS wraps the socket below aiosmtpd's SMTP object, which then cannot tell
            # the session is encrypted: let it offer AUTH anyway (it is encrypted).
            kw.update(ssl_context=ctx, server_hostname="127.0.0.1", auth_require_tls=False)
    c = Controller(inbox, hostname="127.0.0.1", port=port, **kw)
    c.start()
    try:
        yield Smtp(mode, port, inbox, ca)
    finally:
        c.stop()


@pytest.fixture(params=["none", "starttls", "ssl"])
def smtp(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Smtp]:
    with _smtp_server(request.param, tmp_path) as server:
        yield server


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_email_over_real_smtp(smtp: Smtp, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ch: dict[str, Any] = {"name": "duty-mail", "host": "127.0.0.1", "port": smtp.port,
                          "from": "好差评网关 <hcp@example.org>", "to": ["duty@example.org"],
                          "security": "none", "backoff_s": 0.05}
    if smtp.mode != "none":
        _secret_file(tmp_path, "smtp.password", SMTP_PASSWORD)
        ch.update(security=smtp.mode, username="hcp@example.org", password_file="smtp.password",
                  ca_file=str(smtp.ca_file))
    s = NotifySettings.from_mapping({"email": [ch]}, base_dir=tmp_path)
    await _send_and_check(s, smtp, caplog)


async def _send_and_check(s: NotifySettings, smtp: Smtp, caplog: pytest.LogCaptureFixture) -> None:
    n = _chaping(created_at=dt.datetime(2026, 9, 30, 8, 0, tzinfo=dt.UTC))
    async with Notifier(s) as notifier:
        await notifier.send(n)
        assert await notifier.flush(20)
        st = notifier.stats()["duty-mail"]
    assert (st.sent, st.failed) == (1, 0), st.last_error
    [msg] = smtp.inbox.messages
    assert msg["Subject"] == "【提醒】新差评：综合受理窗口 3 号 · 不满意"
    assert smtp.inbox.envelopes == [("hcp@example.org", ["duty@example.org"])]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "办件 370303-2026-000123 获评“不满意”" in text
    assert "时间：2026-09-30 16:00:00 +0800（Asia/Shanghai）" in text
    [att] = list(msg.iter_attachments())  # type: ignore[attr-defined]
    assert att.get_filename() == "notification.json"
    assert json.loads(att.get_content())["payload"]["case_no"] == "370303-2026-000123"
    assert SMTP_PASSWORD not in _ours(caplog)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_wrong_password_is_permanent_and_dead_webhook_does_not_hold_mail(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with _smtp_server("starttls", tmp_path) as smtp:
        await _wrong_password_case(smtp, tmp_path, caplog)


async def _wrong_password_case(smtp: Smtp, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _secret_file(tmp_path, "wrong.password", "not-the-password")
    _secret_file(tmp_path, "smtp.password", SMTP_PASSWORD)
    base = {"host": "127.0.0.1", "port": smtp.port, "from": "hcp@example.org",
            "to": ["duty@example.org"], "security": "starttls", "username": "hcp@example.org",
            "ca_file": str(smtp.ca_file), "backoff_s": 0.05}
    dead = f"http://127.0.0.1:{free_port()}/hook"
    s = NotifySettings.from_mapping({
        "webhook": [{"name": "dead", "url": dead, "attempts": 20, "backoff_s": 0.5}],
        "email": [{**base, "name": "wrong", "password_file": "wrong.password"},
                  {**base, "name": "duty-mail", "password_file": "smtp.password"}],
    }, base_dir=tmp_path)
    notifier = Notifier(s)
    await notifier.start()
    try:
        await notifier.send(_chaping())
        for _ in range(500):
            st = notifier.stats()
            if st["duty-mail"].sent and st["wrong"].failed:
                break
            await asyncio.sleep(0.02)
        st = notifier.stats()
        assert st["duty-mail"].sent == 1
        assert (st["wrong"].sent, st["wrong"].failed, st["wrong"].retries) == (0, 1, 0)
        assert st["wrong"].last_error.startswith("SMTP 535")
        assert st["dead"].sent == 0 and st["dead"].retries >= 1  # still retrying: mail went out anyway
    finally:
        await notifier.aclose(drain_s=0)
    assert len(smtp.inbox.messages) == 1
    assert SMTP_PASSWORD not in _ours(caplog) and "not-the-password" not in _ours(caplog)

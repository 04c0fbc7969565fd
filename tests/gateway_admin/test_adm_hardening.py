"""Issue 14, items 3 and 8: the admin API and CLI refuse device ids that are not device ids
(or are the gateway's / admins'); no client input gets a 500; errors are JSON with a code;
malformed requests are counted, not traced; ids are checked with full matches; wrong tokens
are throttled per client address. Real aiohttp server on loopback, real SQLite store."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from adm_support import ADMIN_TOKEN, WINDOW_TOKEN, Recorder, Store, make_config
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import bindings, cli
from gateway.api import guard, make_app
from simulator.netutil import free_port

SECRET = "ab" * 32


@dataclass
class Server:
    port: int
    app: web.Application
    store: Store
    send: Recorder
    counter: guard.MalformedRequests

    @property
    def base(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    async def call(self, method: str, path: str, body: Any = None, token: str | None = WINDOW_TOKEN,
                   raw: bytes | None = None, headers: dict[str, str] | None = None,
                   source: str = "127.0.0.1") -> tuple[int, Any]:
        hdr = {"Authorization": "Bearer " + token} if token else {}
        hdr.update(headers or {})
        kw: dict[str, Any] = ({"data": raw} if raw is not None
                              else {"json": body} if body is not None else {})
        conn = aiohttp.TCPConnector(local_addr=(source, 0))
        async with aiohttp.ClientSession(connector=conn) as http, \
                http.request(method, self.base + path, headers=hdr, **kw) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text

    async def raw(self, request: bytes) -> bytes:
        """Bytes on a socket, the answer back: for what no HTTP client library would send."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(request)
            await writer.drain()
            return await asyncio.wait_for(reader.read(65536), 5)
        finally:
            writer.close()


async def _serve(store: Store, tmp: Path, **http: Any) -> AsyncIterator[Server]:
    cfg = make_config(tmp, http={
        "host": "127.0.0.1", "port": 0, "window_token": WINDOW_TOKEN, "admin_token": ADMIN_TOKEN, **http})
    send = Recorder()
    app = make_app(store.db, cfg, send)
    logger, counter = guard.server_logger()
    runner = web.AppRunner(app, access_log=None, logger=logger)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await bindings.pair(store.db, "dev-1", "A01", "zhang", "test")
    try:
        yield Server(port, app, store, send, counter)
    finally:
        await runner.cleanup()


@pytest.fixture
async def srv(store: Store, tmp_path: Path) -> AsyncIterator[Server]:
    async for s in _serve(store, tmp_path):
        yield s


CASE = {"window": "A01", "case_no": "370303-2026-000123", "task_name": "城乡居民养老保险参保登记"}


def _json_error(status: int, body: Any, want_status: int, code: str) -> None:
    assert (status, body if isinstance(body, str) else body.get("error")) == (want_status, code), body
    assert isinstance(body, dict) and isinstance(body.get("message"), str)


# ---- item 3: device ids -------------------------------------------------------------------------

@pytest.mark.parametrize("device_id", [
    "hcp-gateway", "hcp-gateway-sim", "gateway", "gateway-2", "admin", "admin-1", "hcp-admin",
    "hcp-gateway-ctl", "$SYS", "$CONTROL", "dev-1\n", "Dev-1", "dev 1", "", "x" * 33, "dev/1", "+", "#",
])
async def test_api_refuses_ids_that_are_not_device_ids(srv: Server, device_id: str) -> None:
    st, body = await srv.call("POST", "/api/v1/devices", {"id": device_id, "secret": SECRET,
                                                           "broker_password": "p" * 16}, ADMIN_TOKEN)
    _json_error(st, body, 400, "bad_registration")
    assert await srv.store.fetchone("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)) is None


async def test_the_configured_gateway_account_is_refused_too(store: Store, tmp_path: Path) -> None:
    """A gateway account named outside the reserved prefixes is refused as well (from the config)."""
    from gateway import device_ids
    from gateway.broker_accounts import NoBrokerAccounts
    from gateway.devices import DeviceService, RegistrationError
    cfg = make_config(tmp_path, mqtt={"username": "gw-hall-7", "client_id": "gw-hall-7-a"})
    svc = DeviceService(store.db, NoBrokerAccounts(), reserved=device_ids.reserved_by(cfg))
    for dev in ("gw-hall-7", "gw-hall-7-a"):
        with pytest.raises(RegistrationError, match="reserved"):
            await svc.register(dev, SECRET, "p" * 16)


async def test_an_ordinary_device_id_is_still_accepted(srv: Server) -> None:
    st, body = await srv.call("POST", "/api/v1/devices", {"id": "hcp-0a1b2c3d4e5f", "secret": SECRET,
                                                           "broker_password": "p" * 16}, ADMIN_TOKEN)
    assert (st, body) == (201, {"id": "hcp-0a1b2c3d4e5f", "created": True})


@pytest.mark.parametrize("device_id", ["hcp-gateway", "gateway", "admin", "dev-1\n"])
def test_cli_refuses_reserved_device_ids(tmp_path: Path, device_id: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    cfgp = tmp_path / "gateway.toml"
    cfgp.write_text('[store]\npath = "%s"\n' % (tmp_path / "gw.db"))
    (tmp_path / "secret").write_text(SECRET + "\n")
    (tmp_path / "pw").write_text("p" * 16 + "\n")
    with pytest.raises(SystemExit) as e:
        cli.main(["--config", str(cfgp), "devices", "add", device_id,
                  "--secret-file", str(tmp_path / "secret"), "--broker-password-file", str(tmp_path / "pw")])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "reserved" in err or "must match" in err


# ---- item 8: ids with full matches ----------------------------------------------------------------

async def test_invitation_id_with_a_trailing_newline_is_refused_and_supersedes_nothing(srv: Server) -> None:
    st, first = await srv.call("POST", "/api/v1/invitations", {**CASE, "invitation_id": "WS-1"})
    assert st == 201
    st, body = await srv.call("POST", "/api/v1/invitations", {**CASE, "case_no": "C-2",
                                                               "invitation_id": "WS-2\n"})
    _json_error(st, body, 400, "bad_input")
    st, got = await srv.call("GET", "/api/v1/invitations/WS-1")
    assert (st, got["status"]) == (200, "pending")                 # not superseded
    st, body = await srv.call("GET", "/api/v1/invitations/WS-1%0A")
    _json_error(st, body, 400, "bad_invitation_id")


# ---- item 8: no 500, JSON errors with a code -------------------------------------------------------

@pytest.mark.parametrize("raw,content_type,status,code", [
    (b'{"window":"A01","case_no":"\xff\xfe"}', "application/json", 400, "bad_encoding"),
    (b'{"window":"A01","case_no":"\xed\xa0\x80"}', "application/json", 400, "bad_encoding"),
    ('{"window":"A01","case_no":"x"}'.encode("utf-16"), "application/json; charset=utf-16", 415,
     "unsupported_charset"),
    (b'{"window":"A01","case_no":"x"}', "application/json; charset=x-klingon", 415, "unsupported_charset"),
    (b'{"window":"A01","case_no":"x"}', "application/json; charset=\xe4\xb8\xad", 415, "unsupported_charset"),
    (b"[" * 10000, "application/json", 400, "too_deep"),
    (b'{"a":' * 1000 + b"1" + b"}" * 1000, "application/json", 400, "too_deep"),
    (b'{"window":"A01","case_no":"\\ud800"}', "application/json", 400, "bad_text"),
    (b'{"window":"A01","case_no":"ok","task_name":"\\udfff x"}', "application/json", 400, "bad_text"),
    (b'{"\\ud800":1}', "application/json", 400, "bad_text"),
    (b"not json", "application/json", 400, "bad_json"),
])
async def test_hostile_bodies_get_json_errors_never_500(srv: Server, raw: bytes, content_type: str,
                                                        status: int, code: str) -> None:
    for path, token in (("/api/v1/invitations", WINDOW_TOKEN), ("/api/v1/devices", ADMIN_TOKEN),
                        ("/api/v1/bindings", ADMIN_TOKEN)):
        hdr = {"Content-Type": content_type.encode("latin-1", "replace").decode("latin-1")}
        if b"\xe4" in content_type.encode("utf-8", "surrogateescape"):
            answer = await srv.raw(b"POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                                   b"Content-Type: application/json; charset=\xe4\xb8\xad\r\n"
                                   b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                                   % (path.encode(), token.encode(), len(raw), raw))
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.split(b" ")[1] == b"%d" % status, answer[:300]
            assert json.loads(body)["error"] == code
            continue
        st, body = await srv.call("POST", path, raw=raw, token=token, headers=hdr)
        _json_error(st, body, status, code)


async def test_a_valid_surrogate_pair_is_fine(srv: Server) -> None:
    st, body = await srv.call("POST", "/api/v1/invitations",
                              raw=b'{"window":"A01","case_no":"C-emoji","task_name":"\\ud83d\\ude00"}',
                              headers={"Content-Type": "application/json"})
    assert st == 201, body


@pytest.mark.parametrize("header", [b"Bearer \xff\xfe\xfd", b"Bearer \xe4\xb8\xad\xe6\x96\x87",
                                    b"Bearer \x01x", b"\xff", b"Bearer " + b"a" * 4000])
async def test_bad_bytes_in_the_authorization_header_are_401(srv: Server, header: bytes) -> None:
    answer = await srv.raw(b"GET /api/v1/invitations HTTP/1.1\r\nHost: x\r\nAuthorization: " + header
                           + b"\r\nConnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    if status == 400:  # refused by aiohttp's own header parser (a control byte): counted there
        assert srv.counter.count >= 1
        return
    assert status == 401, answer[:300]
    assert json.loads(body)["error"] == "unauthorized"


@pytest.mark.parametrize("path", ["/api/v1/invitations/%ED%A0%80", "/api/v1/bindings/%ED%A0%80",
                                  "/api/v1/invitations?status=%ED%A0%80", "/api/v1/invitations?limit=%FF",
                                  "/api/v1/bindings?history=%C0%AF", "/api/v1/invitations/%00",
                                  "/api/v1/invitations?limit=99999999999999999999999"])
async def test_hostile_urls_get_json_errors_never_500(srv: Server, path: str) -> None:
    for method in ("GET", "DELETE"):
        st, body = await srv.call(method, path, token=ADMIN_TOKEN)
        assert st < 500 and isinstance(body, dict), (method, path, st, body)
        assert st < 300 or body["error"], body


@settings(derandomize=True, database=None, deadline=None, max_examples=150,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=st.one_of(
    st.binary(max_size=300),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                 lambda x: st.lists(x, max_size=3) | st.dictionaries(
                     st.sampled_from(["window", "case_no", "id", "secret", "broker_password", "device",
                                      "staff_account", "invitation_id", "countdown_s", "force", "actor",
                                      "fw", "task_name", "applicant_type"]) | st.text(max_size=5), x,
                     max_size=6), max_leaves=10).map(lambda v: json.dumps(v).encode())),
    route=st.sampled_from([("POST", "/api/v1/invitations", WINDOW_TOKEN),
                           ("POST", "/api/v1/devices", ADMIN_TOKEN),
                           ("POST", "/api/v1/bindings", ADMIN_TOKEN)]),
    segment=st.text(max_size=12))
async def test_property_no_client_input_gets_a_500(srv: Server, body: bytes, route: tuple[str, str, str],
                                                   segment: str) -> None:
    method, path, token = route
    st_, answer = await srv.call(method, path, raw=body, token=token,
                                 headers={"Content-Type": "application/json"})
    assert st_ < 500, (body, answer)
    assert isinstance(answer, dict) and "error" in answer or st_ < 300, answer
    quoted = "".join("%%%02X" % b for b in segment.encode("utf-8", "surrogatepass"))
    for m, p in (("GET", "/api/v1/invitations/" + quoted), ("DELETE", "/api/v1/bindings/" + quoted)):
        st_, answer = await srv.call(m, p, token=ADMIN_TOKEN)
        assert st_ < 500, (p, answer)


# ---- item 8: malformed requests counted, not traced ------------------------------------------------

async def test_malformed_request_lines_are_counted_not_traced(srv: Server,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    before = srv.counter.count
    garbage = [b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
               b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
               b"POST /api/v1/invitations HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
               b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n"] * 5
    for g in garbage:
        answer = await srv.raw(g)
        refused = answer[:9] in (b"HTTP/1.1 ", b"HTTP/1.0 ") and answer[9:12] == b"400"
        assert refused or answer == b"", answer[:100]
    assert srv.counter.count - before >= len(garbage) - 5  # (a TLS hello may just be dropped)
    traced = [r for r in caplog.records if r.exc_info or r.exc_text]
    assert traced == [], [r.getMessage() for r in traced]
    lines = [r for r in caplog.records if r.name == "gateway.api.server"]
    assert len(lines) <= 1 and all("malformed" in r.getMessage() for r in lines)
    st, _ = await srv.call("GET", "/api/v1/invitations")   # the server is still fine
    assert st == 200


# ---- item 8: failed-token throttling per client address --------------------------------------------

async def test_wrong_tokens_are_throttled_per_client_address(store: Store, tmp_path: Path) -> None:
    async for s in _serve(store, tmp_path, auth_fail_limit=5, auth_fail_window_s=60):
        for _ in range(5):
            st, body = await s.call("GET", "/api/v1/invitations", token="wrong-token-guess-0123456")
            _json_error(st, body, 401, "unauthorized")
        st, body = await s.call("GET", "/api/v1/invitations", token="wrong-token-guess-0123456")
        _json_error(st, body, 429, "too_many_failures")
        # the right token from that address is refused too while throttled (guessing must stop) ...
        st, body = await s.call("GET", "/api/v1/invitations", token=WINDOW_TOKEN)
        _json_error(st, body, 429, "too_many_failures")
        # ... another address is not affected
        st, _ = await s.call("GET", "/api/v1/invitations", token=WINDOW_TOKEN, source="127.0.0.2")
        assert st == 200
        # a window-token holder guessing at the admin token is throttled too
        for _ in range(5):
            st, _ = await s.call("POST", "/api/v1/devices", {"id": "x"}, token=WINDOW_TOKEN,
                                 source="127.0.0.3")
            assert st == 401
        st, body = await s.call("GET", "/api/v1/bindings", token=ADMIN_TOKEN, source="127.0.0.3")
        _json_error(st, body, 429, "too_many_failures")


def test_throttle_forgets_old_failures_and_bounds_memory() -> None:
    now = [0.0]
    t = guard.FailedTokens(3, 10, clock=lambda: now[0])
    for _ in range(3):
        t.fail("a")
    with pytest.raises(guard.GuardError) as e:
        t.check("a")
    assert e.value.http_status == 429 and 1 <= int(e.value.headers["Retry-After"]) <= 11
    now[0] = 10.5
    t.check("a")                       # aged out
    for i in range(guard.FailedTokens.MAX_ADDRESSES + 50):
        t.fail("10.0.%d.%d" % (i // 256, i % 256))
    assert len(t._fails) <= guard.FailedTokens.MAX_ADDRESSES


def test_http_throttle_settings_are_checked(tmp_path: Path) -> None:
    from gateway.api.settings import HttpSettings
    from gateway.config import ConfigError
    for bad in ({"auth_fail_limit": 0}, {"auth_fail_window_s": "60"}, {"tls_cert": "a.pem"}):
        with pytest.raises(ConfigError):
            HttpSettings.from_raw({"http": bad})

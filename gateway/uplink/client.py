"""HTTP client for the provincial platform: token auth, one batch per request.

One attempt per call; retries, backoff and the rate limit belong to the pusher. Errors
are sorted into what a retry may fix (PlatformUnavailable) and what it cannot
(PlatformRefused: credentials, or the whole batch refused).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import aiohttp

from gateway.uplink.settings import UplinkSettings
from gateway.uplink.wire import RecordResult, WireError, parse_results

log = logging.getLogger("gateway.uplink.client")


class PlatformUnavailable(Exception):
    """5xx, 429, timeout, connection failure, garbled answer: try again later."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class PlatformRefused(Exception):
    """The platform refused on purpose (4xx). code 'auth' = our credentials."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__("%s: %s" % (code, reason))
        self.code = code
        self.reason = reason


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    try:
        return float(resp.headers.get("Retry-After", ""))
    except ValueError:
        return None


class PlatformClient:
    def __init__(self, settings: UplinkSettings, session: aiohttp.ClientSession | None = None) -> None:
        self.s = settings
        self._own_session = session is None
        self._session = session
        self._token: str | None = None
        self._token_expires = 0.0
        self.timeout = aiohttp.ClientTimeout(total=settings.request_timeout_s)

    async def __aenter__(self) -> PlatformClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def _request(self, method: str, path: str, *, data: bytes | None = None,
                       auth: bool = True) -> tuple[int, Any, float | None]:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = "Bearer " + await self.token()
        try:
            async with self.session.request(method, self.s.url + path, data=data, headers=headers,
                                            timeout=self.timeout) as resp:
                text = await resp.text()
                try:
                    body = json.loads(text) if text else None
                except json.JSONDecodeError:
                    body = None
                return resp.status, body, _retry_after(resp)
        except TimeoutError as e:
            raise PlatformUnavailable("timeout after %.1f s" % self.s.request_timeout_s) from e
        except aiohttp.ClientError as e:
            raise PlatformUnavailable("connection: %s" % (e.__class__.__name__,)) from e

    @staticmethod
    def _reason(body: Any) -> tuple[str, str]:
        if isinstance(body, dict):
            return str(body.get("code", "")), str(body.get("reason", body.get("message", "")))
        return "", ""

    async def token(self) -> str:
        if self._token is not None and time.monotonic() < self._token_expires:
            return self._token
        payload = json.dumps({"appKey": self.s.app_key, "appSecret": self.s.app_secret}).encode()
        status, body, retry = await self._request("POST", self.s.token_path, data=payload, auth=False)
        if status >= 500 or status == 429:
            raise PlatformUnavailable("token endpoint answered %d" % status, retry)
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("token"), str):
            code, reason = self._reason(body)
            raise PlatformRefused("auth", "token request refused (%d %s %s)" % (status, code, reason))
        expires_in = body.get("expiresIn", 3600)
        self._token = body["token"]
        # Renew a little early so a token never expires in flight.
        self._token_expires = time.monotonic() + max(1.0, float(expires_in) * 0.9)
        return self._token

    async def send_batch(self, batch_id: str, body: bytes) -> list[RecordResult]:
        """One POST of an encoded batch; the per-record results when the platform answered."""
        return await self._post_batch(self.s.batch_path, batch_id, body)

    async def send_corrections(self, batch_id: str, body: bytes) -> list[RecordResult]:
        """One POST of a batch of corrections (same envelope, results keyed by correctionId)."""
        return await self._post_batch(self.s.corrections_path, batch_id, body)

    async def _post_batch(self, path: str, batch_id: str, body: bytes) -> list[RecordResult]:
        status, answer, retry = await self._request("POST", path, data=body)
        if status == 401:   # token expired or revoked early: renew once, then give up
            self._token = None
            status, answer, retry = await self._request("POST", path, data=body)
            if status == 401:
                raise PlatformRefused("auth", "platform refused a fresh token")
        if status >= 500 or status == 429:
            code, reason = self._reason(answer)
            raise PlatformUnavailable("HTTP %d %s" % (status, reason or code), retry)
        if status != 200:
            code, reason = self._reason(answer)
            raise PlatformRefused(code or "http_%d" % status, reason or "HTTP %d" % status)
        try:
            return parse_results(answer, batch_id)
        except WireError as e:   # e.g. a proxy's error page with 200: the ack is unknown
            raise PlatformUnavailable("unreadable answer: %s" % e.reason) from e

    async def query_ids(self, date: str) -> list[str] | None:
        """Record ids the platform holds with a rating time on local date D; None if no query API."""
        if not self.s.query_path:
            return None
        status, body, _ = await self._request("GET", "%s?date=%s" % (self.s.query_path, date))
        if status == 404:
            return None
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("ids"), list):
            raise PlatformUnavailable("query answered %d" % status)
        return [str(i) for i in body["ids"]]

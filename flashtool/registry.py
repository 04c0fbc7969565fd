"""Registers a board with the hall gateway: POST {gateway}/api/v1/devices (admin token).

The gateway (gateway/api/app.py) stores the device key and writes the broker's password entry.
A re-provision of the same board posts the same id and secret again; the gateway answers 200
(201 for a new id) and the broker entry is rewritten with the same password.

`check_access` runs before the board is touched: a wrong token or an unreachable gateway then
fails in a second, with nothing sent to the board.  It reads GET /api/v1/bindings, the
gateway's one read-only endpoint that needs the admin token.

The gateway's errors are JSON {"error": <stable code>, "message": ...}; we show both.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

from flashtool.errors import FlashError

DEVICES_PATH = "/api/v1/devices"
ACCESS_PATH = "/api/v1/bindings"  # admin-only and read-only: a harmless token check
FW_MAX = 16  # the gateway refuses a longer `fw` (gateway/api/app.py post_device)


def check_url(gateway_url: str) -> None:
    if not gateway_url.startswith(("http://", "https://")):
        raise FlashError(f"--gateway-url {gateway_url!r}: expected http://HOST[:PORT]")


def _base(gateway_url: str) -> str:
    check_url(gateway_url)
    return gateway_url.rstrip("/")


def _context(ca: str | None) -> ssl.SSLContext | None:
    """For an https gateway: trust the hall CA (flash.py --ca) besides the system's."""
    if ca is None:
        return None
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cadata=ca)
    return ctx


def _headers(token: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}


def describe_refusal(status: int, body: bytes) -> str:
    """'HTTP 401 unauthorized: bad token for this endpoint' from the gateway's JSON error body;
    the raw start of the body when it is not ours (a proxy, another server on that port)."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        message = doc.get("message")
        text = doc["error"] + (f": {message}" if isinstance(message, str) and message else "")
    else:
        text = " ".join(body[:200].decode("utf-8", "replace").split())
    return f"HTTP {status} {text}".rstrip()


def _unreachable(gateway_url: str, e: urllib.error.URLError | OSError) -> FlashError:
    reason = getattr(e, "reason", e)
    return FlashError(
        f"gateway {gateway_url} unreachable: {reason} "
        f"(is the laptop on the hall network, and the gateway's HTTP API enabled?)"
    )


def check_access(gateway_url: str, token: str, timeout: float = 10.0, ca: str | None = None) -> None:
    """Fail early on an unreachable gateway or a refused token; any other answer passes
    (the registration itself reports what is wrong, e.g. an older gateway without this path)."""
    if not token.strip():
        raise FlashError("--gateway-token is empty (or set HCP_GATEWAY_TOKEN)")
    req = urllib.request.Request(_base(gateway_url) + ACCESS_PATH, method="GET", headers=_headers(token))
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=_context(ca)) as resp:
            resp.read()
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise FlashError(
                f"gateway {gateway_url} refused the admin token ({describe_refusal(e.code, e.read())}); "
                f"nothing was sent to the board"
            ) from None
    except (urllib.error.URLError, OSError) as e:
        raise _unreachable(gateway_url, e) from None


def register(
    gateway_url: str,
    token: str,
    device_id: str,
    secret: str,
    broker_password: str,
    fw: str,
    timeout: float = 10.0,
    ca: str | None = None,
) -> int:
    """POST the registration; return the HTTP status (201 new, 200 re-registered)."""
    if len(fw) > FW_MAX:
        raise FlashError(f"firmware set id {fw!r} is longer than the gateway accepts ({FW_MAX})")
    body = json.dumps(
        {"id": device_id, "secret": secret, "broker_password": broker_password, "fw": fw}
    ).encode()
    req = urllib.request.Request(
        _base(gateway_url) + DEVICES_PATH, data=body, method="POST", headers=_headers(token)
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=_context(ca)) as resp:
            status: int = resp.status
            return status
    except urllib.error.HTTPError as e:
        raise FlashError(
            f"gateway refused the registration of {device_id}: {describe_refusal(e.code, e.read())}"
        ) from None
    except (urllib.error.URLError, OSError) as e:
        raise _unreachable(gateway_url, e) from None

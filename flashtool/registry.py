"""Registers a board with the hall gateway: POST {gateway}/api/v1/devices (admin token).

The gateway stores the device key and writes the broker's password entry.  A re-provision of
the same board posts the same id and secret again; the gateway treats that as an update.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from flashtool.errors import FlashError


def check_url(gateway_url: str) -> None:
    if not gateway_url.startswith(("http://", "https://")):
        raise FlashError(f"--gateway-url {gateway_url!r}: expected http://HOST[:PORT]")


def register(
    gateway_url: str,
    token: str,
    device_id: str,
    secret: str,
    broker_password: str,
    fw: str,
    timeout: float = 10.0,
) -> int:
    check_url(gateway_url)
    url = gateway_url.rstrip("/") + "/api/v1/devices"
    body = json.dumps(
        {"id": device_id, "secret": secret, "broker_password": broker_password, "fw": fw}
    ).encode()
    req = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status: int = resp.status
            return status
    except urllib.error.HTTPError as e:
        detail = e.read()[:200].decode("utf-8", "replace").strip()
        raise FlashError(f"gateway refused the registration of {device_id}: HTTP {e.code} {detail}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise FlashError(f"gateway {gateway_url} unreachable: {reason}") from None

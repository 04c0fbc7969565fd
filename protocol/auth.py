"""Message authentication: HMAC-SHA256 keys and the anti-replay window.

Key: HMAC-SHA256 built on hashlib.sha256 (MicroPython has no hmac module and no other hash).
It precomputes the padded inner and outer blocks once, so signing a message on the device costs
two short sha256 runs and no per-call key work.

ReplayWindow: the anti-replay window over a sender's message counter "n" (as in IPsec, RFC 4303
3.4.3). A strict "n must grow" rule would drop a command that MQTT redelivered out of order after
a reconnect; a window accepts any n not seen before within the last 30 counters, and rejects
duplicates and anything older. One window per (peer, boot).
"""

import binascii
import hashlib

from protocol.errors import MalformedMessage

try:
    from micropython import const
except ImportError:  # CPython
    def const(x: "Any") -> "Any":  # type: ignore[no-redef]
        return x

# Typing-only import: mypy treats _TYPING as true (pyproject always_true); on MicroPython the
# private const folds the block away at compile time (no bytecode, no interned names).
_TYPING = const(0)
if _TYPING:
    from typing import Any

_BLOCK = const(64)
_SECRET_BYTES = const(32)
_SIZE = const(30)  # replay window: keeps the bitmap a small int on 32-bit MicroPython (no heap)


class Key:
    def __init__(self, secret: bytes | str) -> None:
        raw = parse_secret(secret) if isinstance(secret, str) else secret
        if len(raw) > _BLOCK:
            raw = hashlib.sha256(raw).digest()
        raw = raw + b"\x00" * (_BLOCK - len(raw))
        self._ipad = bytes([b ^ 0x36 for b in raw])
        self._opad = bytes([b ^ 0x5C for b in raw])

    def digest(self, msg: bytes) -> bytes:
        inner = hashlib.sha256(self._ipad)
        inner.update(msg)
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()

    def hexdigest(self, msg: bytes) -> str:
        return binascii.hexlify(self.digest(msg)).decode()

    def verify(self, msg: bytes, mac: object) -> bool:
        """Constant-time comparison of mac (hex text) against the HMAC of msg."""
        want = binascii.hexlify(self.digest(msg))
        if not isinstance(mac, str):
            return False
        got = mac.encode()  # bytes: indexing a str would intern odd characters (MicroPython)
        if len(got) != len(want):
            return False
        diff = 0
        for i in range(len(want)):
            diff |= want[i] ^ got[i]
        return diff == 0


def parse_secret(text: object) -> bytes:
    """A device secret is 32 bytes written as 64 lower-case hex characters."""
    if not isinstance(text, str) or len(text) != 2 * _SECRET_BYTES:
        raise MalformedMessage("bad_field", "secret must be 64 hex characters")
    try:
        return binascii.unhexlify(text)
    except ValueError:
        raise MalformedMessage("bad_field", "secret must be 64 hex characters") from None


class ReplayWindow:
    def __init__(self) -> None:
        self.top = -1
        self.bits = 0  # bit i set: top - i has been seen

    def check(self, n: int) -> bool:
        """True if n is fresh (and records it), False if it is a replay or too old."""
        if n > self.top:
            shift = n - self.top
            if shift >= _SIZE:
                self.bits = 1
            else:
                self.bits = ((self.bits << shift) | 1) & ((1 << _SIZE) - 1)
            self.top = n
            return True
        off = self.top - n
        if off >= _SIZE:
            return False
        mask = 1 << off
        if self.bits & mask:
            return False
        self.bits |= mask
        return True

"""Anti-replay window over a sender's message counter "n" (as in IPsec, RFC 4303 3.4.3).

A strict "n must grow" rule would drop a command that MQTT redelivered out of order after a
reconnect; a window accepts any n not seen before within the last 30 counters, and
rejects duplicates and anything older. One window per (peer, boot).
"""

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

_SIZE = const(30)  # keeps the bitmap a small int on 32-bit MicroPython ports (no heap allocation)


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

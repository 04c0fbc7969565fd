"""Anti-replay window over a sender's message counter "n" (as in IPsec, RFC 4303 3.4.3).

A strict "n must grow" rule would drop a command that MQTT redelivered out of order after a
reconnect; a window accepts any n not seen before within the last SIZE counters, and
rejects duplicates and anything older. One window per (peer, boot).
"""

SIZE = 30  # keeps the bitmap a small int on 32-bit MicroPython ports (no heap allocation)


class ReplayWindow:
    def __init__(self) -> None:
        self.top = -1
        self.bits = 0  # bit i set: top - i has been seen

    def check(self, n: int) -> bool:
        """True if n is fresh (and records it), False if it is a replay or too old."""
        if n > self.top:
            shift = n - self.top
            if shift >= SIZE:
                self.bits = 1
            else:
                self.bits = ((self.bits << shift) | 1) & ((1 << SIZE) - 1)
            self.top = n
            return True
        off = self.top - n
        if off >= SIZE:
            return False
        mask = 1 << off
        if self.bits & mask:
            return False
        self.bits |= mask
        return True

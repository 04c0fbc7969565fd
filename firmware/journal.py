"""The press journal on flash: append-only fixed-size records, an ack log, compaction.

Segment file data/j<gen>.log holds 64-byte records:
    0  B   magic 0x4A         1  B  kind code        2  B  grade code    3  B  inv length
    4  I   rb (boot)          8  I  rs (sequence)   12  I  w (wall s)   16  Q  u (uptime ms)
   24  32s invitation id     56  4x reserved        60  I  CRC-32 of bytes 0..59   (little-endian)
Ack log data/a<gen>.log holds 12-byte entries: rb, rs, CRC-32 of those 8 bytes.

Records are appended in id order (boot grows, seq grows within a boot), so an ack finds its
slot by binary search and RAM holds only one bit per slot. A record is durable when append()
returns (write + flush). A power cut can tear only the last record or ack entry: its CRC or
length gives it away and the next write reuses its place. When most records are acked, the
pending ones are copied to segment gen+1; creating a<gen+1> commits the switch, then the old
pair is removed. open() keeps the newest generation that has both files.
"""

import binascii
import os
import struct

from firmware import fsutil
from protocol.grade_set import GRADES

try:
    from micropython import const
except ImportError:          # CPython
    def const(x):
        return x

REC_SIZE = const(64)
_BODY = const(60)
_MAGIC = const(0x4A)
_FMT = const("<BBBBIIIQ32s")
ACK_SIZE = const(12)
_CAPACITY = const(15000)      # 960,000 bytes of segment at most
_COMPACT_MIN = const(256)     # compact only once this many slots are used...
DIR = "data"

# On-flash kind codes: a storage format, fixed here whatever order the protocol lists them in.
KINDS = ("rated", "walkup", "extra", "unrated", "unpaired")


class JournalFull(Exception):
    """_CAPACITY records are waiting for the gateway's ack: nothing more fits."""


def crc_ok(buf, n):
    return binascii.crc32(memoryview(buf)[:n]) == struct.unpack_from("<I", buf, n)[0]


class Journal:
    def __init__(self, hal, capacity=_CAPACITY):
        self.hal = hal
        self.capacity = capacity
        self._buf = bytearray(REC_SIZE)       # preallocated: append and scans reuse it
        self._abuf = bytearray(ACK_SIZE)
        self._acked = bytearray(capacity // 8 + 1)   # bit per slot: acked (or unreadable)
        self._seg = None
        self._ackf = None
        self.rb = 0
        self.rs = 0
        self.gen = 0
        self.n = 0                 # used slots
        self.n_acked = 0
        self.n_acklog = 0          # valid entries in the ack log
        self.first = 0             # no pending record below this slot
        self.max_rb = 0
        self.corrupt = 0           # complete records whose CRC failed (never the last one)
        self.torn = 0              # torn last record / ack entry dropped at open
        self.compactions = 0

    # -- paths and open ----------------------------------------------------------------------
    def _name(self, kind, gen):
        return self.hal.path("%s/%s%d.log" % (DIR, kind, gen))

    def open(self):
        """Open the newest complete generation (creating the first) and scan it: half-made
        generations removed, torn last record / ack entry dropped, corrupt records counted, the
        bitmap rebuilt."""
        hal = self.hal
        fsutil.ensure_dir(hal.path(DIR))
        gens_j = []
        gens_a = []
        for name in os.listdir(hal.path(DIR)):
            if name.endswith(".log") and (name[0] == "j" or name[0] == "a"):
                try:
                    g = int(name[1:-4])
                except ValueError:
                    continue
                (gens_j if name[0] == "j" else gens_a).append(g)
        gen = 0
        for g in gens_j:
            if g in gens_a and g > gen:
                gen = g
        for g in gens_j:
            if g != gen:
                fsutil.remove(self._name("j", g))
        for g in gens_a:
            if g != gen:
                fsutil.remove(self._name("a", g))
        if gen == 0:
            gen = 1
            with open(self._name("j", gen), "wb") as f:
                hal.fsync(f)
            with open(self._name("a", gen), "wb") as f:   # the commit point of a generation
                hal.fsync(f)
        self.gen = gen
        self._seg = open(self._name("j", gen), "r+b")
        self._ackf = open(self._name("a", gen), "r+b")
        self._scan()
        return self

    def _scan(self):
        seg = self._seg
        seg.seek(0, 2)
        n = seg.tell() // REC_SIZE
        if seg.tell() % REC_SIZE:
            self.torn += 1
        if n > self.capacity:
            n = self.capacity
        acked = self._acked
        for i in range(len(acked)):
            acked[i] = 0
        self.n_acked = 0
        self.max_rb = 0
        self.n = n
        for i in range(n):
            if self._read_slot(i):
                rb = struct.unpack_from("<I", self._buf, 4)[0]
                if rb > self.max_rb:
                    self.max_rb = rb
            elif i == n - 1:
                self.n = n - 1                # torn last record: dropped, its slot is reused
                self.torn += 1
            else:
                self.corrupt += 1             # unreadable complete record: skip it, count it
                self._set(i)
        f = self._ackf
        f.seek(0)
        k = 0
        buf = self._abuf
        while f.readinto(buf) == ACK_SIZE:
            if not crc_ok(buf, 8):
                break                         # a torn entry can only be the last one
            k += 1
            rb, rs = struct.unpack_from("<II", buf, 0)
            i = self._find(rb, rs)
            if i >= 0 and not self._is_set(i):
                self._set(i)
        f.seek(0, 2)
        if f.tell() != k * ACK_SIZE:
            self.torn += 1
        self.n_acklog = k
        self.first = 0
        self._advance()

    def _read_slot(self, i):
        """Read slot i into self._buf; True when it holds a complete, valid record."""
        f = self._seg
        f.seek(i * REC_SIZE)
        if f.readinto(self._buf) != REC_SIZE:
            return False
        return self._buf[0] == _MAGIC and crc_ok(self._buf, _BODY)

    # -- bitmap -------------------------------------------------------------------------------
    def _is_set(self, i):
        return self._acked[i >> 3] & (1 << (i & 7))

    def _set(self, i):
        self._acked[i >> 3] |= 1 << (i & 7)
        self.n_acked += 1

    def _advance(self):
        while self.first < self.n and self._is_set(self.first):
            self.first += 1

    def _find(self, rb, rs):
        """Slot of record (rb, rs), or -1. Slots are in id order; unreadable ones are skipped."""
        lo = 0
        hi = self.n
        while lo < hi:
            mid = (lo + hi) // 2
            j = mid
            while j < hi and not self._read_slot(j):
                j += 1
            if j == hi:
                hi = mid
                continue
            b, s = struct.unpack_from("<II", self._buf, 4)
            if b == rb and s == rs:
                return j
            if b < rb or (b == rb and s < rs):
                lo = j + 1
            else:
                hi = mid
        return -1

    # -- the API ------------------------------------------------------------------------------
    def begin(self, boot):
        """Records of this boot get rb=boot and rs=1, 2, ...; boot is already durable."""
        if boot <= self.max_rb:
            raise ValueError("boot %d is not above the journal's %d" % (boot, self.max_rb))
        self.rb = boot
        self.rs = 0

    def append(self, kind, grade, inv, w, u):
        """Store one record durably; returns its (rb, rs). Raises JournalFull or OSError."""
        if self.rb == 0:
            raise ValueError("journal.begin(boot) first")
        if self.n >= self.capacity:
            if self.n_acked:
                self.compact()
            if self.n >= self.capacity:
                raise JournalFull("%d records wait for an ack" % self.n)
        rs = self.rs + 1
        buf = self._buf
        ib = inv.encode()
        struct.pack_into(_FMT, buf, 0, _MAGIC, KINDS.index(kind) + 1,
                         GRADES.index(grade) + 1 if grade else 0, len(ib), self.rb, rs, w, u, ib)
        for i in range(56, _BODY):
            buf[i] = 0
        struct.pack_into("<I", buf, _BODY, binascii.crc32(memoryview(buf)[:_BODY]))
        f = self._seg
        f.seek(self.n * REC_SIZE)
        f.write(buf)
        self.hal.fsync(f)
        self.rs = rs
        self.n += 1
        return self.rb, rs

    def ack(self, rb, rs):
        """Mark (rb, rs) as stored by the gateway. True if it was pending, False otherwise."""
        i = self._find(rb, rs)
        if i < 0 or self._is_set(i):
            return False
        buf = self._abuf
        struct.pack_into("<II", buf, 0, rb, rs)
        struct.pack_into("<I", buf, 8, binascii.crc32(memoryview(buf)[:8]))
        f = self._ackf
        f.seek(self.n_acklog * ACK_SIZE)
        f.write(buf)
        self.hal.fsync(f)
        self.n_acklog += 1
        self._set(i)
        self._advance()
        if self.n >= _COMPACT_MIN and self.n_acked * 4 >= self.n * 3:
            self.compact()
        return True

    def depth(self):
        """Records not yet acked."""
        return self.n - self.n_acked

    def pending(self, count=8):
        """Up to count records not yet acked, oldest first, each as the fields of its `rec`
        message (protocol v1): {"k": kind, "rb", "rs", "g": grade, "i": invitation, "w", "u"}."""
        out = []
        i = self.first
        while i < self.n and len(out) < count:
            if not self._is_set(i) and self._read_slot(i):
                out.append(self._record())
            i += 1
        return out

    def _record(self):
        _, k, g, il, rb, rs, w, u, inv = struct.unpack_from(_FMT, self._buf, 0)
        return {"k": KINDS[k - 1], "rb": rb, "rs": rs, "g": GRADES[g - 1] if g else "",
                "i": inv[:il].decode(), "w": w, "u": u}

    def compact(self):
        """Copy the pending records to generation gen+1; creating its ack log commits the switch,
        then the old pair is removed."""
        new = self.gen + 1
        jn = self._name("j", new)
        k = 0
        with open(jn, "wb") as out:
            for i in range(self.first, self.n):
                if not self._is_set(i) and self._read_slot(i):
                    out.write(self._buf)
                    k += 1
            self.hal.fsync(out)
        with open(self._name("a", new), "wb") as f:   # commit: open() now picks gen+1
            self.hal.fsync(f)
        self.close()
        fsutil.remove(self._name("j", self.gen))
        fsutil.remove(self._name("a", self.gen))
        self.gen = new
        self._seg = open(jn, "r+b")
        self._ackf = open(self._name("a", new), "r+b")
        acked = self._acked
        for i in range((self.n >> 3) + 1):     # bits beyond the old n are already clear
            acked[i] = 0
        self.n = k
        self.n_acked = 0
        self.n_acklog = 0
        self.first = 0
        self.compactions += 1

    def close(self):
        for f in (self._seg, self._ackf):
            if f is not None:
                f.close()
        self._seg = None
        self._ackf = None

    def stats(self):
        return {"gen": self.gen, "slots": self.n, "pending": self.depth(), "corrupt": self.corrupt,
                "torn": self.torn, "compactions": self.compactions}

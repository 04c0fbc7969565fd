"""The journal's rare work: opening it at boot (pick the generation, drop half-made ones, scan the
segment and the ack log: torn last record / entry dropped, corrupt records counted, bitmap
rebuilt) and compaction (pending records copied to generation gen+1).

Journal.open() and Journal.compact() import this module for the call and unload it right after
(firmware.rare), so its bytecode is not in the device's RAM between compactions. Format:
firmware/journal.py.
"""

import os
import struct

from firmware import fsutil
from firmware.journal import ACK_SIZE, DIR, REC_SIZE, crc_ok


def open_journal(j):
    hal = j.hal
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
            fsutil.remove(j._name("j", g))
    for g in gens_a:
        if g != gen:
            fsutil.remove(j._name("a", g))
    if gen == 0:
        gen = 1
        with open(j._name("j", gen), "wb") as f:
            hal.fsync(f)
        with open(j._name("a", gen), "wb") as f:   # the commit point of a generation
            hal.fsync(f)
    j.gen = gen
    j._seg = open(j._name("j", gen), "r+b")
    j._ackf = open(j._name("a", gen), "r+b")
    _scan(j)


def _scan(j):
    seg = j._seg
    seg.seek(0, 2)
    n = seg.tell() // REC_SIZE
    if seg.tell() % REC_SIZE:
        j.torn += 1
    if n > j.capacity:
        n = j.capacity
    acked = j._acked
    for i in range(len(acked)):
        acked[i] = 0
    j.n_acked = 0
    j.max_rb = 0
    j.n = n
    for i in range(n):
        if j._read_slot(i):
            rb = struct.unpack_from("<I", j._buf, 4)[0]
            if rb > j.max_rb:
                j.max_rb = rb
        elif i == n - 1:
            j.n = n - 1                # torn last record: dropped, its slot is reused
            j.torn += 1
        else:
            j.corrupt += 1             # unreadable complete record: skip it, count it
            j._set(i)
    f = j._ackf
    f.seek(0)
    k = 0
    buf = j._abuf
    while f.readinto(buf) == ACK_SIZE:
        if not crc_ok(buf, 8):
            break                      # a torn entry can only be the last one
        k += 1
        rb, rs = struct.unpack_from("<II", buf, 0)
        i = j._find(rb, rs)
        if i >= 0 and not j._is_set(i):
            j._set(i)
    f.seek(0, 2)
    if f.tell() != k * ACK_SIZE:
        j.torn += 1
    j.n_acklog = k
    j.first = 0
    j._advance()


def compact(j):
    new = j.gen + 1
    jn = j._name("j", new)
    k = 0
    with open(jn, "wb") as out:
        for i in range(j.first, j.n):
            if not j._is_set(i) and j._read_slot(i):
                out.write(j._buf)
                k += 1
        j.hal.fsync(out)
    with open(j._name("a", new), "wb") as f:   # commit: open() now picks gen+1
        j.hal.fsync(f)
    j.close()
    fsutil.remove(j._name("j", j.gen))
    fsutil.remove(j._name("a", j.gen))
    j.gen = new
    j._seg = open(jn, "r+b")
    j._ackf = open(j._name("a", new), "r+b")
    acked = j._acked
    for i in range((j.n >> 3) + 1):     # bits beyond the old n are already clear
        acked[i] = 0
    j.n = k
    j.n_acked = 0
    j.n_acklog = 0
    j.first = 0
    j.compactions += 1

"""Chinese text must not cost the device heap for good.

On MicroPython, indexing or iterating a str interns each distinct character as a qstr, and qstrs
are never freed. Invitations carry Chinese case numbers and item names, pairing carries the
clerk's name, so a protocol that looked at text character by character would grow the device's
heap with every new character it met (200 invitations of random item names: +2,200 qstrs,
+24 KB). These run the real protocol code under MicroPython 1.27 and count its qstrs.
"""

from __future__ import annotations

import json
import random
import re

from protocol import auth, messages
from simulator.micropython import run_micropython

SECRET = "5a" * 32
TOPIC = "hcp/1/down/dev-1/%s"


def _hanzi(rng: random.Random, n: int) -> str:
    return "".join(chr(0x4E00 + rng.randrange(20000)) for _ in range(n))


def _payloads(count: int) -> list[tuple[str, str, dict[str, object]]]:
    """(topic, wire hex, fields) of invitations, pairings and configs full of distinct Chinese."""
    rng = random.Random(3)
    key = auth.Key(SECRET)
    out = []
    for n in range(count):
        kind = ("invite", "paired", "config")[n % 3]
        if kind == "invite":
            m: dict[str, object] = {"t": "invite", "i": "inv-%d" % n, "case": "办件" + _hanzi(rng, 12),
                                    "item": _hanzi(rng, 30) + '"\\', "cd": 60}
        elif kind == "paired":
            m = {"t": "paired", "win": "窗口" + _hanzi(rng, 2), "clerk": _hanzi(rng, 3)}
        else:
            m = {"t": "config", "cfg": {"note_x": _hanzi(rng, 20), "list_y": [_hanzi(rng, 2), 5]}}
        m.update({"d": "dev-1", "b": 1, "n": n + 1})
        wire = messages.sign(dict(m), key)
        out.append((TOPIC % kind, wire.hex(), m))
    return out


PROGRAM = """
import binascii, json, micropython
from protocol import auth, cjson, messages
from protocol.errors import ProtocolError

def n_qstr():
    micropython.qstr_info()

key = auth.Key(%(secret)r)
cases = json.loads(%(cases)r)
bad = [binascii.unhexlify(h) for h in json.loads(%(bad)r)]

def run(batch):
    same = 0
    for topic, wire, fields in batch:
        m = messages.decode(binascii.unhexlify(wire), key, topic)
        same += all(m[k] == fields[k] for k in fields)
        cjson.encode(m)
    for b in bad:
        try:
            messages.decode(b, key, "hcp/1/down/dev-1/paired")
        except ProtocolError:
            same += 1
    return same

print("SAME", run(cases[:3]))      # warm-up: the code's own names, the first objects
n_qstr()
print("SAME", run(cases[3:]))
n_qstr()
"""


def _bad_inputs() -> list[str]:
    """Hostile or broken payloads with Chinese where it does not belong: each is rejected."""
    key = auth.Key(SECRET)
    good = messages.sign({"t": "paired", "d": "dev-1", "b": 1, "n": 1, "win": "W01", "clerk": "张"}, key)
    rng = random.Random(4)
    out = []
    for _ in range(20):
        m = json.loads(good)
        m["d"] = "设备" + _hanzi(rng, 4)                     # not an identifier
        out.append(json.dumps(m, ensure_ascii=False).encode())
        m = json.loads(good)
        m["mac"] = _hanzi(rng, 64)                          # a mac of 64 Chinese characters
        out.append(json.dumps(m, ensure_ascii=False).encode())
        out.append(b'{"t":"paired","win":"' + _hanzi(rng, 5).encode() + b'",}')   # not JSON
    return [b.hex() for b in out]


def test_decoding_chinese_text_interns_nothing_on_micropython() -> None:
    cases = _payloads(150)
    bad = _bad_inputs()
    r = run_micropython(PROGRAM % {"secret": SECRET, "cases": json.dumps(cases), "bad": json.dumps(bad)},
                        timeout=120)
    same = [int(x) for x in re.findall(r"^SAME (\d+)", r.stdout, re.M)]
    counts = [int(x) for x in re.findall(r"n_qstr=(\d+)", r.stdout)]
    assert same == [3 + len(bad), len(cases) - 3 + len(bad)], r.stdout[-2000:]
    assert len(counts) == 2, r.stdout[-2000:]
    assert counts[1] == counts[0], "qstrs grew by %d over %d messages of new Chinese text" % (
        counts[1] - counts[0], len(cases) - 3 + len(bad))

"""v1 messages: schema, validation, signing and verification.

A message is a flat JSON object. Every message carries the envelope
    v  version (1)        t  type            d  device id
    b  device boot count  n  sender's message counter within that boot
    mac  HMAC-SHA256 (hex) over the canonical encoding of every other field
and the fields of its type (FIELDS below). Unknown fields are rejected: a v1 parser
never guesses at a newer sender's meaning. Validation order is fixed, so CPython and
MicroPython report the same error code for the same bytes (see tests/vectors/).
"""

import json
import sys

from protocol import VERSION, cjson, strict, topics
from protocol.errors import BadSignature, MalformedMessage, TopicMismatch, UnsupportedVersion
from protocol.grades import GRADES

# Typing-only import: mypy treats _TYPING as true (pyproject always_true); MicroPython skips it.
_TYPING = False
if _TYPING:
    from typing import Any

    from protocol.auth import Key

    Fields = tuple[tuple[str, str, Any, int], ...]

MAX_PAYLOAD = 1024          # bytes on the wire, mac included
MAX_ACKS = 32               # record ids per ack message
MAX_CONFIG_KEYS = 16

_I31 = 2147483647
_I48 = 281474976710655

# Field kinds: (name, kind, a, b)
#   "i": int in [a, b]      "s": str, UTF-8 length in [a, b], no control characters
#   "id": device id, "inv": invitation id ("" allowed when a == 0)
#   "e": one of the strings in a        "g": grade code or ""
#   "B": bool                "acks": list of [rb, rs]      "cfg": small flat object
ENVELOPE = (
    ("d", "id", 1, 32),
    ("b", "i", 1, _I31),
    ("n", "i", 0, _I31),
)

# Kinds of journal record a device sends ("rec"):
REC_RATED = "rated"        # press while invited: the rating of that invitation
REC_WALKUP = "walkup"      # press while idle with no invitation (if the config accepts them)
REC_EXTRA = "extra"        # press during the thanks cooldown: counted, never a rating
REC_UNRATED = "unrated"    # invitation countdown ran out without a press
REC_UNPAIRED = "unpaired"  # press while the device is not bound to a window
REC_KINDS = (REC_RATED, REC_WALKUP, REC_EXTRA, REC_UNRATED, REC_UNPAIRED)

UP_TYPES: "dict[str, Fields]" = {
    "hello": (
        ("fw", "s", 1, 16), ("up", "i", 0, _I48), ("rst", "s", 0, 16),
        ("cfg", "i", 0, _I31), ("jd", "i", 0, _I31), ("safe", "B", 0, 0),
    ),
    "status": (("s", "e", ("online", "offline"), 0), ("c", "i", 0, _I31)),
    "hb": (
        ("up", "i", 0, _I48), ("heap", "i", 0, _I31), ("rssi", "i", -127, 0),
        ("jd", "i", 0, _I31), ("fw", "s", 1, 16), ("rc", "i", 0, _I31),
        ("rst", "s", 0, 16), ("sync", "B", 0, 0), ("st", "s", 1, 12),
    ),
    "rec": (
        ("k", "e", REC_KINDS, 0), ("rb", "i", 1, _I31), ("rs", "i", 1, _I31),
        ("g", "g", 0, 0), ("i", "inv", 0, 32), ("w", "i", 0, 8589934591), ("u", "i", 0, _I48),
    ),
    "treq": (("u", "i", 0, _I48),),
}

DOWN_TYPES: "dict[str, Fields]" = {
    "ack": (("a", "acks", 1, MAX_ACKS),),
    "invite": (("i", "inv", 1, 32), ("case", "s", 0, 64), ("item", "s", 0, 96), ("cd", "i", 5, 600)),
    "cancel": (("i", "inv", 1, 32),),
    "paired": (("win", "s", 1, 16), ("clerk", "s", 0, 48)),
    "unpaired": (),
    "time": (("w", "i", 1, 8589934591), ("u", "i", 0, _I48)),
    "config": (("cfg", "cfg", 0, MAX_CONFIG_KEYS),),
    "reboot": (("why", "s", 0, 32),),
}


def schema(t: str) -> "Fields | None":
    f = UP_TYPES.get(t)
    if f is None:
        f = DOWN_TYPES.get(t)
    return f


def direction(t: str) -> str | None:
    if t in UP_TYPES:
        return "up"
    if t in DOWN_TYPES:
        return "down"
    return None


def _bad(name: str, why: str) -> None:
    raise MalformedMessage("bad_field", "%s: %s" % (name, why))


def _text_ok(s: str) -> bool:
    for ch in s:
        if ord(ch) < 0x20 or ch == "\x7f":
            return False
    return True


def _ident_ok(s: str, extra: str) -> bool:
    for ch in s:
        if not ("a" <= ch <= "z" or "0" <= ch <= "9" or ch == "-" or ch in extra):
            return False
    return True


def _check_int(name: str, v: "Any", lo: int, hi: int) -> None:
    if type(v) is not int:
        _bad(name, "not an integer")
    if v < lo or v > hi:
        _bad(name, "out of range")


def _check_field(name: str, kind: str, a: "Any", b: int, v: "Any") -> None:
    if kind == "i":
        _check_int(name, v, a, b)
    elif kind == "s":
        if type(v) is not str:
            _bad(name, "not a string")
        n = len(v.encode("utf-8"))
        if n < a or n > b:
            _bad(name, "length out of range")
        if not _text_ok(v):
            _bad(name, "control character")
    elif kind == "id" or kind == "inv":
        if type(v) is not str:
            _bad(name, "not a string")
        if len(v) < a or len(v) > b:
            _bad(name, "length out of range")
        if not _ident_ok(v, "" if kind == "id" else "_ABCDEFGHIJKLMNOPQRSTUVWXYZ"):
            _bad(name, "bad character")
    elif kind == "e":
        if type(v) is not str or v not in a:
            _bad(name, "not one of the allowed values")
    elif kind == "g":
        if type(v) is not str or (v != "" and v not in GRADES):
            _bad(name, "not a grade code")
    elif kind == "B":
        if v is not True and v is not False:
            _bad(name, "not a boolean")
    elif kind == "acks":
        if type(v) is not list or len(v) < a or len(v) > b:
            _bad(name, "not a list of 1..%d record ids" % b)
        for pair in v:
            if type(pair) is not list or len(pair) != 2:
                _bad(name, "item is not [rb, rs]")
            _check_int(name, pair[0], 1, _I31)
            _check_int(name, pair[1], 1, _I31)
    elif kind == "cfg":
        if type(v) is not dict or len(v) > b:
            _bad(name, "not an object of at most %d keys" % b)
        for k in v:
            if not _ident_ok(k, "_") or len(k) > 24:
                _bad(name, "bad key")
            x = v[k]
            tx = type(x)
            if not (tx is int or tx is bool or tx is str or tx is list):
                _bad(name, "bad value for " + k)
            if tx is str and (len(x) > 64 or not _text_ok(x)):
                _bad(name, "bad value for " + k)
            if tx is list:
                if len(x) > 8:
                    _bad(name, "bad value for " + k)
                for y in x:
                    if type(y) is not int and type(y) is not str:
                        _bad(name, "bad value for " + k)


def _check_rec(m: "dict[str, Any]") -> None:
    k = m["k"]
    if k == REC_UNRATED:
        if m["g"] != "":
            _bad("g", "an unrated record has no grade")
        if m["i"] == "":
            _bad("i", "an unrated record needs its invitation")
    else:
        if m["g"] == "":
            _bad("g", "a press needs a grade")
        if k == REC_RATED and m["i"] == "":
            _bad("i", "a rated record needs its invitation")
        if (k == REC_WALKUP or k == REC_UNPAIRED) and m["i"] != "":
            _bad("i", "a %s record has no invitation" % k)


def validate(m: "Any") -> "dict[str, Any]":
    """Check a decoded object (mac included or not) against the v1 schema; raise on error."""
    if type(m) is not dict:
        raise MalformedMessage("not_object", "message is not a JSON object")
    v = m.get("v")
    if type(v) is not int or v != VERSION:
        raise UnsupportedVersion("version %r is not supported (this side speaks %d)" % (v, VERSION))
    t = m.get("t")
    fields = schema(t) if type(t) is str else None
    if fields is None:
        raise MalformedMessage("unknown_type", "type %r" % (t,))
    known = 3  # v, t, and mac if present
    if "mac" not in m:
        known = 2
    for group in (ENVELOPE, fields):
        for name, kind, a, b in group:
            if name not in m:
                raise MalformedMessage("missing_field", name)
            _check_field(name, kind, a, b, m[name])
            known += 1
    if len(m) != known:
        for k in sorted(m):
            if k not in ("v", "t", "mac") and not _defines(fields, k):
                raise MalformedMessage("unknown_field", k)
    if "mac" in m:
        mac = m["mac"]
        if type(mac) is not str or len(mac) != 64:
            _bad("mac", "not 64 hex characters")
    if t == "rec":
        _check_rec(m)
    return m


def _defines(fields: "Fields", k: str) -> bool:
    for group in (ENVELOPE, fields):
        for f in group:
            if f[0] == k:
                return True
    return False


def signing_bytes(m: "dict[str, Any]") -> bytes:
    """The canonical bytes the mac covers: every field but mac."""
    body = {}
    for k in m:
        if k != "mac":
            body[k] = m[k]
    return cjson.encode(body)


def sign(m: "dict[str, Any]", key: "Key") -> bytes:
    """Validate m (without mac), add its mac, return the wire bytes."""
    if "mac" in m:
        del m["mac"]
    m["v"] = VERSION
    validate(m)
    m["mac"] = key.hexdigest(cjson.encode(m))
    data = cjson.encode(m)
    if len(data) > MAX_PAYLOAD:
        raise MalformedMessage("too_large", "%d bytes" % len(data))
    return data


# MicroPython's decoders are lenient; protocol/strict.py makes them reject what CPython does.
_LENIENT = sys.implementation.name == "micropython"


def _no_constants(name: str) -> None:
    raise ValueError("JSON has no " + name)


def parse(payload: bytes) -> "dict[str, Any]":
    """Wire bytes -> validated dict. Does not check the mac (the key depends on "d")."""
    if len(payload) > MAX_PAYLOAD:
        raise MalformedMessage("too_large", "%d bytes" % len(payload))
    raw = bytes(payload)
    if _LENIENT and not strict.utf8(raw):
        raise MalformedMessage("not_utf8", "payload is not UTF-8")
    try:
        text = raw.decode("utf-8")
    except UnicodeError:
        raise MalformedMessage("not_utf8", "payload is not UTF-8")
    if (_LENIENT or "\\u" in text) and not strict.json_text(text):
        raise MalformedMessage("not_json", "payload is not JSON")
    try:
        if _LENIENT:
            m = json.loads(text)
        else:
            m = json.loads(text, parse_constant=_no_constants)
    except ValueError:
        raise MalformedMessage("not_json", "payload is not JSON")
    return validate(m)


def verify(m: "dict[str, Any]", key: "Key") -> "dict[str, Any]":
    """Raise BadSignature unless m's mac is the HMAC of its canonical bytes under key."""
    if "mac" not in m or not key.verify(signing_bytes(m), m["mac"]):
        raise BadSignature("mac does not match")
    return m


def check_topic(m: "dict[str, Any]", topic: str) -> "dict[str, Any]":
    """The topic's direction, device and type must be the payload's."""
    p = topics.parse(topic)
    if p is None:
        raise TopicMismatch("topic %s is not in the v1 tree" % topic)
    if p[0] != direction(m["t"]) or p[1] != m["d"] or p[2] != m["t"]:
        raise TopicMismatch("topic %s does not match the payload" % topic)
    return m


def decode(payload: bytes, key: "Key", topic: str | None = None) -> "dict[str, Any]":
    """parse + topic check + mac check: what a receiver with a known key does."""
    m = parse(payload)
    if topic is not None:
        check_topic(m, topic)
    return verify(m, key)


def topic_for(m: "dict[str, Any]") -> str:
    if direction(m["t"]) == "up":
        return topics.up(m["d"], m["t"])
    return topics.down(m["d"], m["t"])

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

from protocol import cjson, strict, topics
from protocol.errors import BadSignature, MalformedMessage, TopicMismatch, UnsupportedVersion
from protocol.grade_set import GRADES

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

    from protocol.auth import Key

VERSION = 1                 # the "v" every message carries
MAX_PAYLOAD = 1024          # bytes on the wire, mac included

# Kinds of journal record a device sends ("rec", field k; the schema below lists them):
#   rated     press while invited: the rating of that invitation
#   walkup    press while idle with no invitation (if the config accepts them)
#   extra     press during the thanks cooldown: counted, never a rating
#   unrated   invitation countdown ran out without a press
#   unpaired  press while the device is not bound to a window
# (private consts: folded into the code, so the device holds no name for them)
_RATED = const("rated")
_WALKUP = const("walkup")
_UNRATED = const("unrated")
_UNPAIRED = const("unpaired")

# The schema, as compact text because it lives in the device's RAM: per type, its fields in
# validation order, "name:kind:a:b" separated by spaces.
#   i   int in [a, b]      s   str, UTF-8 length in [a, b], no control characters
#   id  device id [a-z0-9-], length in [a, b]    inv  invitation id (also _ and A-Z)
#   e   one of the strings a (separated by |)    g    grade code or ""    B  bool
#   acks  list of a..b [rb, rs]                  cfg  flat object of at most b keys
# Bounds: 2147483647 = 2^31-1, 281474976710655 = 2^48-1 (uptime ms), 8589934591 = 2^33-1
# (wall seconds).
_ENVELOPE = const("d:id:1:32 b:i:1:2147483647 n:i:0:2147483647")

UP_TYPES: "dict[str, str]" = {
    "hello": "fw:s:1:16 up:i:0:281474976710655 rst:s:0:16 cfg:i:0:2147483647 jd:i:0:2147483647"
             " safe:B",
    "status": "s:e:online|offline c:i:0:2147483647",
    "hb": "up:i:0:281474976710655 heap:i:0:2147483647 rssi:i:-127:0 jd:i:0:2147483647 fw:s:1:16"
          " rc:i:0:2147483647 rst:s:0:16 sync:B st:s:1:12",
    "rec": "k:e:rated|walkup|extra|unrated|unpaired rb:i:1:2147483647 rs:i:1:2147483647 g:g"
           " i:inv:0:32 w:i:0:8589934591 u:i:0:281474976710655",
    "treq": "u:i:0:281474976710655",
}

DOWN_TYPES: "dict[str, str]" = {
    "ack": "a:acks:1:32",
    "invite": "i:inv:1:32 case:s:0:64 item:s:0:96 cd:i:5:600",
    "cancel": "i:inv:1:32",
    "paired": "win:s:1:16 clerk:s:0:48",
    "unpaired": "",
    "time": "w:i:1:8589934591 u:i:0:281474976710655",
    "config": "cfg:cfg:0:16",
    "reboot": "why:s:0:32",
}


def _bad(name: str, why: str) -> None:
    raise MalformedMessage("bad_field", name + ": " + why)


# Text is checked on its UTF-8 bytes, never character by character: on MicroPython, iterating a
# str interns each distinct character as a qstr that is never freed, so every new Chinese
# character in an invitation would cost the device heap for good. The bytes of a multi-byte
# character are all >= 0x80, so a control character can only be a byte of its own.
def _text_ok(b: bytes) -> bool:
    for c in b:
        if c < 0x20 or c == 0x7F:
            return False
    return True


def _ident_ok(s: str, extra: bytes) -> bool:
    """[a-z0-9-] and the bytes of extra."""
    for c in s.encode():
        if not (0x61 <= c <= 0x7A or 0x30 <= c <= 0x39 or c == 0x2D or c in extra):
            return False
    return True


# An [rb, rs] element of an ack, checked as an "i" field.
_ACK_ID = const(("", "i", "1", "2147483647"))


def _check_field(name: str, f: "list[str]", v: "Any") -> None:
    kind = f[1]
    tv = type(v)
    if kind == "e":
        if tv is not str or v not in f[2].split("|"):
            _bad(name, "not allowed")
        return
    if kind == "g":
        if tv is not str or (v != "" and v not in GRADES):
            _bad(name, "not a grade")
        return
    if kind == "B":
        if v is not True and v is not False:
            _bad(name, "not a boolean")
        return
    a = int(f[2])
    b = int(f[3])
    if kind == "i":
        if tv is not int:
            _bad(name, "not an integer")
        if v < a or v > b:
            _bad(name, "out of range")
    elif kind == "s":
        if tv is not str:
            _bad(name, "not a string")
        e = v.encode()
        if len(e) < a or len(e) > b:
            _bad(name, "length out of range")
        if not _text_ok(e):
            _bad(name, "control character")
    elif kind == "id" or kind == "inv":
        if tv is not str:
            _bad(name, "not a string")
        if len(v) < a or len(v) > b:
            _bad(name, "length out of range")
        if not _ident_ok(v, b"" if kind == "id" else b"_ABCDEFGHIJKLMNOPQRSTUVWXYZ"):
            _bad(name, "bad character")
    elif kind == "acks":
        if tv is not list or len(v) < a or len(v) > b:
            _bad(name, "not 1..%d [rb, rs]" % b)
        for pair in v:
            if type(pair) is not list or len(pair) != 2:
                _bad(name, "not [rb, rs]")
            for x in pair:
                _check_field(name, _ACK_ID, x)
    else:  # cfg
        if tv is not dict or len(v) > b:
            _bad(name, "not an object of <= %d keys" % b)
        for k in v:
            if not _ident_ok(k, b"_") or len(k) > 24:
                _bad(name, "bad key name")
            x = v[k]
            tx = type(x)
            ok = tx is int or tx is bool or (tx is str and len(x) <= 64 and _text_ok(x.encode()))
            if tx is list and len(x) <= 8:
                ok = True
                for y in x:
                    if type(y) is not int and type(y) is not str:
                        ok = False
            if not ok:
                _bad(name, "bad value for " + k)


# The gateway's side of the protocol (protocol/cpython.py): a decoder that refuses NaN/Infinity,
# each type's schema split once (it validates thousands of messages a second). None on the device,
# which never loads that module: its decoders are lenient, protocol/strict.py makes them reject
# what CPython does, and it splits a schema when it uses it (a few messages a minute, no RAM to
# spare for a cache).
_cp: "Any" = None
if sys.implementation.name != "micropython":
    from protocol import cpython
    _cp = cpython


def validate(m: "Any") -> "dict[str, Any]":
    """Check a decoded object (mac included or not) against the v1 schema; raise on error."""
    if type(m) is not dict:
        raise MalformedMessage("not_object", "not an object")
    v = m.get("v")
    if type(v) is not int or v != VERSION:
        raise UnsupportedVersion("version %r (this side speaks %d)" % (v, VERSION))
    t = m.get("t")
    spec = None
    if type(t) is str:
        spec = UP_TYPES.get(t)
        if spec is None:
            spec = DOWN_TYPES.get(t)
    if spec is None:
        raise MalformedMessage("unknown_type", "message type %r" % (t,))
    names = []
    if _cp:
        fields = _cp.fields(_ENVELOPE, spec)
    else:
        fields = [x.split(":") for x in (_ENVELOPE + " " + spec).split()]
    for f in fields:
        name = f[0]
        if name not in m:
            raise MalformedMessage("missing_field", name)
        _check_field(name, f, m[name])
        names.append(name)
    if len(m) != len(names) + (3 if "mac" in m else 2):   # v, t, and mac if present
        for k in sorted(m):
            if k not in ("v", "t", "mac") and k not in names:
                raise MalformedMessage("unknown_field", k)
    if "mac" in m:
        mac = m["mac"]
        if type(mac) is not str or len(mac) != 64:
            _bad("mac", "not 64 hex characters")
    if t == "rec":
        k = m["k"]
        if k == _UNRATED:
            if m["g"] != "":
                _bad("g", "unrated has no grade")
            if m["i"] == "":
                _bad("i", "unrated needs its invitation")
        else:
            if m["g"] == "":
                _bad("g", "a press needs a grade")
            if k == _RATED and m["i"] == "":
                _bad("i", "rated needs its invitation")
            if (k == _WALKUP or k == _UNPAIRED) and m["i"] != "":
                _bad("i", k + " has no invitation")
    return m


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
        raise MalformedMessage("too_large", "%d bytes signed" % len(data))
    return data


def parse(payload: bytes) -> "dict[str, Any]":
    """Wire bytes -> validated dict. Does not check the mac (the key depends on "d")."""
    if len(payload) > MAX_PAYLOAD:
        raise MalformedMessage("too_large", "%d bytes received" % len(payload))
    raw = bytes(payload)
    if not _cp and not strict.utf8(raw):
        raise MalformedMessage("not_utf8", "payload is not UTF-8")
    try:
        text = raw.decode("utf-8")
    except UnicodeError:
        raise MalformedMessage("not_utf8", "payload is not UTF-8")
    if (not _cp or b"\\u" in raw or _cp.may_nest_too_deep(raw)) and not strict.json_text(raw):
        raise MalformedMessage("not_json", "payload is not JSON")
    try:
        m = _cp.loads(text) if _cp else json.loads(text)
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
    if p[0] != ("up" if m["t"] in UP_TYPES else "down") or p[1] != m["d"] or p[2] != m["t"]:
        raise TopicMismatch("topic %s does not match the payload" % topic)
    return m


def decode(payload: bytes, key: "Key", topic: str | None = None) -> "dict[str, Any]":
    """parse + topic check + mac check: what a receiver with a known key does."""
    m = parse(payload)
    if topic is not None:
        check_topic(m, topic)
    return verify(m, key)

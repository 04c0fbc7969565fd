"""Hypothesis strategies for what a device (or anyone holding its broker password) can send.

Four kinds, mixed: raw bytes; JSON-like text nested to any depth (open, closed or cut off,
arrays, objects, message-shaped objects); valid messages with one field replaced by any JSON
value; and *authentic* messages (signed with the device's key) whose every field is drawn
from its whole schema range, so the post-mac paths (replay windows, health, time anchors,
the store, attribution) see the extremes too: uptimes of thousands of years, wall times
centuries ahead, counters at 2^31-1, text at its byte limits.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

from gateway import mqtt as gwire
from protocol import messages, topics
from protocol.auth import Key

UP_TYPES = sorted(messages.UP_TYPES)
MAX = messages.MAX_PAYLOAD

_TEXT_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0x10FFFF,
                            blacklist_categories=("Cs",), blacklist_characters="\x7f")


# CPython's default: what the gateway process runs with.
DEFAULT_RECURSION_LIMIT = 1000


@contextlib.contextmanager
def gateway_recursion_limit() -> Iterator[None]:
    """The gateway's recursion limit around a call made from inside a hypothesis test:
    hypothesis raises the limit while it runs one, which would hide the RecursionError that
    a deep payload raised in the gateway (issue 14)."""
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(DEFAULT_RECURSION_LIMIT)
    try:
        yield
    finally:
        sys.setrecursionlimit(saved)


def _clip(text: str, max_bytes: int) -> str:
    return text.encode()[:max_bytes].decode(errors="ignore")


def text(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.text(_TEXT_CHARS, min_size=lo, max_size=hi).map(lambda s: _clip(s, hi)).filter(
        lambda s: len(s.encode()) >= lo)


# Any JSON value (floats, huge integers, odd strings, nested containers).
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    """Brackets nested 0..1100 deep (the decoder's recursion was the 1-message outage of issue
    14), closed, half-closed or not at all, maybe inside a message-shaped object."""
    depth = draw(st.integers(0, 1100) | st.integers(900, 1100) | st.integers(0, 20))
    # "[" most often: one byte a level, so only it reaches ~1,000 levels within 1,024 bytes.
    opener = draw(st.sampled_from(["[", "[", "[", '{"a":', '{"v":1,"t":', '{"v":1,"t":"hb","up":']))
    inner = draw(st.sampled_from(["", "1", '"x"', "null", "{}", "[]"]))
    closer = "]" if opener == "[" else "}"
    closed = draw(st.integers(0, depth))
    prefix = draw(st.sampled_from(["", '{"v":1,"t":"rec","g":', '{"mac":']))
    out = prefix + opener * depth + inner + closer * closed + ("}" if prefix else "")
    return out.encode()[:MAX + draw(st.sampled_from([0, 0, 0, 8]))]


@st.composite
def deep_brackets(draw: st.DrawFn) -> bytes:
    """The short payload of issue 14 and its kin: ~1,000 "[" (CPython's recursive json parser
    raised RecursionError from about 990 levels), bare or inside a message-shaped object."""
    prefix = draw(st.sampled_from(["", '{"v":1,"t":"rec","g":', '{"mac":',
                                   '{"v":1,"t":"hb","d":"dev-a","up":']))
    return (prefix + "[" * draw(st.integers(990, 1100))).encode()[:MAX]


def _base(t: str, d: str, b: int, n: int) -> dict[str, Any]:
    base: dict[str, Any] = {
        "hello": {"fw": "1.0.0", "up": 812, "rst": "power_on", "cfg": 1, "jd": 0, "safe": False},
        "status": {"s": "online", "c": 1},
        "hb": {"up": 3600000, "heap": 61234, "rssi": -61, "jd": 2, "fw": "1.0.0", "rc": 1, "rst": "wdt",
               "sync": True, "st": "idle"},
        "rec": {"k": "walkup", "rb": b, "rs": 1, "g": "vs", "i": "", "w": 0, "u": 5000},
        "treq": {"u": 900},
    }[t]
    return {"t": t, "d": d, "b": b, "n": n, **base}


@st.composite
def mutated(draw: st.DrawFn, device: str, key: Key) -> tuple[str, bytes]:
    """A message with one field replaced, added or removed, signed over what it holds (so a
    payload that parses reaches the mac check with a matching mac)."""
    t = draw(st.sampled_from(UP_TYPES))
    m = _base(t, device, 1, draw(st.integers(0, 1000)))
    field = draw(st.sampled_from(sorted(m) + ["v", "extra", "mac"]))
    action = draw(st.sampled_from(["replace", "remove"]))
    m["v"] = 1
    if action == "remove":
        m.pop(field, None)
    else:
        m[field] = draw(json_values)
    body = {k: v for k, v in m.items() if k != "mac"}
    if "mac" not in m or field != "mac":
        try:
            m["mac"] = key.hexdigest(gwire.canonical(body))
        except (TypeError, ValueError):
            pass
    return t, json.dumps(m, ensure_ascii=False, separators=(",", ":")).encode()


@st.composite
def authentic(draw: st.DrawFn, device: str, key: Key, boot: int | None = None) -> tuple[str, bytes]:
    """A valid message signed with the device's key, every field anywhere in its schema range
    (the boot fixed if given: a test device that must keep receiving its acks)."""
    t = draw(st.sampled_from(UP_TYPES))
    b = boot if boot is not None else draw(st.integers(1, 2**31 - 1) | st.integers(1, 5))
    m = _base(t, device, b, draw(st.integers(0, 2**31 - 1)))
    uptime = st.integers(0, 2**48 - 1) | st.integers(0, 10**8)
    if t in ("hello", "hb"):
        m["up"] = draw(uptime)
        m["fw"] = draw(text(1, 16))
        m["rst"] = draw(text(0, 16))
        m["jd"] = draw(st.integers(0, 2**31 - 1))
    if t == "hb":
        m["st"] = draw(text(1, 12))
        m["rssi"] = draw(st.integers(-127, 0))
    if t == "status":
        m["s"] = draw(st.sampled_from(["online", "offline"]))
        m["c"] = draw(st.integers(0, 2**31 - 1))
    if t == "treq":
        m["u"] = draw(uptime)
    if t == "rec":
        k = draw(st.sampled_from(["rated", "walkup", "extra", "unrated", "unpaired"]))
        m["k"] = k
        m["rb"] = draw(st.integers(1, b))
        m["rs"] = draw(st.integers(1, 2**31 - 1) | st.integers(1, 50))
        m["g"] = "" if k == "unrated" else draw(st.sampled_from(["vs", "s", "bs", "d", "vd"]))
        m["i"] = draw(st.from_regex(r"[a-zA-Z0-9_-]{1,32}", fullmatch=True)) if k in ("rated", "unrated") \
            else (draw(st.sampled_from(["", "inv-1"])) if k == "extra" else "")
        m["w"] = draw(st.sampled_from([0, 0]) | st.integers(0, 2**33 - 1))
        m["u"] = draw(uptime)
    try:
        return t, gwire.sign(m, key)
    except messages.MalformedMessage:  # e.g. text at its limit plus the envelope over 1024 bytes
        return t, json.dumps(m).encode()


def payloads(device: str, key: Key, boot: int | None = None,
             own_topics_only: bool = False) -> st.SearchStrategy[tuple[str, bytes]]:
    """(topic, payload) of every kind above. own_topics_only: only topics the broker lets the
    device publish to that the gateway subscribes (hcp/1/up/<device>/<one level>)."""
    kinds = UP_TYPES + ["x"] + ([] if own_topics_only else ["rec/extra"])
    own = st.sampled_from(kinds).map(lambda t: topics.up(device, t))

    def on_own_topic(tp: tuple[str, bytes]) -> tuple[str, bytes]:
        return topics.up(device, tp[0]), tp[1]

    strategies = [
        st.tuples(own, st.binary(max_size=MAX + 8)),
        st.tuples(own, nested()),
        st.tuples(own, deep_brackets()),
        st.tuples(own, json_values.map(lambda v: json.dumps(v).encode()[:MAX])),
        mutated(device, key).map(on_own_topic),
        authentic(device, key, boot).map(on_own_topic),
        authentic(device, key, boot).map(on_own_topic),
        st.tuples(own, authentic(device, key, boot).map(lambda tp: tp[1])),   # topic of another type
        authentic(device, Key(bytes(32)), boot).map(on_own_topic),          # another key: bad_mac
    ]
    if not own_topics_only:
        strategies.append(authentic("dev-unknown", key, boot).map(
            lambda tp: (topics.up("dev-unknown", tp[0]), tp[1])))           # not registered
    return st.one_of(*strategies)

"""Protocol v1 under CPython: HMAC against the standard library, round trips of every
message type, tamper detection, the replay window against a reference model, grade tables."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from typing import Any

import pytest

from protocol import auth, cjson, grades, ids, messages, topics
from protocol.cpython import topic_for
from protocol.errors import BadSignature, MalformedMessage, ProtocolError, TopicMismatch

D = "hcp-0a1b2c3d4e5f"
KEY = auth.Key("11" * 32)

SAMPLES: dict[str, dict[str, Any]] = {
    "hello": {"fw": "1.0.0", "up": 1, "rst": "power_on", "cfg": 1, "jd": 0, "safe": False},
    "status": {"s": "online", "c": 1},
    "hb": {"up": 10, "heap": 50000, "rssi": -70, "jd": 0, "fw": "1.0.0", "rc": 0, "rst": "",
           "sync": False, "st": "idle"},
    "rec": {"k": "rated", "rb": 2, "rs": 9, "g": "s", "i": "inv-1", "w": 0, "u": 77},
    "treq": {"u": 5},
    "ack": {"a": [[2, 9]]},
    "invite": {"i": "inv-1", "case": "C-1", "item": "营业执照", "cd": 60},
    "cancel": {"i": "inv-1"},
    "paired": {"win": "3", "clerk": "李四"},
    "unpaired": {},
    "time": {"w": 1795309855, "u": 5},
    "config": {"cfg": {"cooldown_s": 5}},
    "reboot": {"why": ""},
}


def test_every_type_has_a_sample() -> None:
    assert set(SAMPLES) == set(messages.UP_TYPES) | set(messages.DOWN_TYPES)


@pytest.mark.parametrize("t", sorted(SAMPLES))
def test_round_trip(t: str) -> None:
    m = {"t": t, "d": D, "b": 2, "n": 5, **SAMPLES[t]}
    wire = messages.sign(dict(m), KEY)
    topic = topic_for(m)
    got = messages.decode(wire, KEY, topic)
    assert {k: v for k, v in got.items() if k not in ("v", "mac")} == m


@pytest.mark.parametrize("t", sorted(SAMPLES))
def test_every_field_is_covered_by_the_mac(t: str) -> None:
    m = {"t": t, "d": D, "b": 2, "n": 5, **SAMPLES[t]}
    wire = json.loads(messages.sign(dict(m), KEY))
    for field in m:
        if field == "t":
            continue
        forged = dict(wire)
        v = forged[field]
        forged[field] = (
            (not v) if isinstance(v, bool) else
            v + 1 if isinstance(v, int) and field not in ("rssi",) else
            v - 1 if isinstance(v, int) else
            (v + "x" if field not in ("s", "k", "g", "d") else v) if isinstance(v, str) else v
        )
        if forged[field] == v:
            continue
        payload = cjson.encode(forged)
        with pytest.raises(ProtocolError) as exc:
            messages.decode(payload, KEY, topic_for(forged))
        assert exc.value.code in ("bad_mac", "bad_field"), field


def test_hmac_matches_the_standard_library() -> None:
    rnd = random.Random(7)
    for klen in (0, 1, 31, 32, 63, 64, 65, 100):
        secret = bytes(rnd.randrange(256) for _ in range(klen))
        k = auth.Key(secret)
        for mlen in (0, 1, 55, 64, 200):
            msg = bytes(rnd.randrange(256) for _ in range(mlen))
            assert k.digest(msg) == hmac.new(secret, msg, hashlib.sha256).digest()


def test_verify_is_false_for_wrong_length_or_type() -> None:
    assert not KEY.verify(b"x", "00")
    assert not KEY.verify(b"x", 5)
    assert KEY.verify(b"x", KEY.hexdigest(b"x"))


def test_secret_must_be_64_hex() -> None:
    with pytest.raises(MalformedMessage):
        auth.Key("abc")
    with pytest.raises(MalformedMessage):
        auth.Key("zz" * 32)


def test_canonical_json_matches_sorted_compact_json() -> None:
    rnd = random.Random(3)
    alphabet = 'ab"\\\n\t\x01\x1f中文é '
    for _ in range(300):
        obj = {
            "".join(rnd.choice("abcxyz") for _ in range(3)): "".join(rnd.choice(alphabet) for _ in range(8)),
            "n": rnd.randrange(-10**6, 10**6), "l": [True, False, None, 3], "o": {"z": 1, "a": 2},
        }
        want = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        assert cjson.encode(obj) == want


def test_canonical_json_refuses_floats() -> None:
    with pytest.raises(MalformedMessage):
        cjson.encode({"x": 1.5})


def test_sign_refuses_an_invalid_message() -> None:
    with pytest.raises(MalformedMessage) as exc:
        messages.sign({"t": "rec", "d": D, "b": 1, "n": 1}, KEY)
    assert exc.value.code == "missing_field"


def test_sign_refuses_an_oversized_message() -> None:
    m = {"t": "invite", "d": D, "b": 1, "n": 1, "i": "x", "case": "c" * 64, "item": "中" * 32, "cd": 60}
    assert len(messages.sign(dict(m), KEY)) <= messages.MAX_PAYLOAD
    m2 = {"t": "config", "d": D, "b": 1, "n": 1,
          "cfg": {"k%02d" % i: "v" * 60 for i in range(16)}}
    with pytest.raises(MalformedMessage) as exc:
        messages.sign(m2, KEY)
    assert exc.value.code == "too_large"


def test_wrong_key_is_bad_signature() -> None:
    wire = messages.sign({"t": "treq", "d": D, "b": 1, "n": 1, "u": 1}, KEY)
    with pytest.raises(BadSignature):
        messages.decode(wire, auth.Key("22" * 32))


def test_topic_mismatch() -> None:
    wire = messages.sign({"t": "treq", "d": D, "b": 1, "n": 1, "u": 1}, KEY)
    with pytest.raises(TopicMismatch):
        messages.decode(wire, KEY, topics.up("hcp-other", "treq"))


def test_replayed_record_id_is_recognised_as_a_duplicate() -> None:
    # A replayed rec message verifies (it is authentic) but carries a record id already seen:
    # the receiver recognises it by ids.record_id, which is the idempotency key everywhere.
    m = {"t": "rec", "d": D, "b": 2, "n": 5, **SAMPLES["rec"]}
    wire = messages.sign(dict(m), KEY)
    seen: set[str] = set()
    outcomes = []
    for payload in (wire, wire):
        r = messages.decode(payload, KEY, topic_for(m))
        rid = ids.record_id(r["d"], r["rb"], r["rs"])
        outcomes.append("duplicate" if rid in seen else "new")
        seen.add(rid)
    assert outcomes == ["new", "duplicate"]


REPLAY_WINDOW = 30  # protocol/auth.py's ReplayWindow, as docs/protocol.md specifies it


def test_replay_window_against_a_reference_model() -> None:
    rnd = random.Random(11)
    w = auth.ReplayWindow()
    seen: set[int] = set()
    top = -1
    for _ in range(5000):
        n = max(0, top + rnd.randrange(-40, 8))
        fresh_ref = n not in seen and n > top - REPLAY_WINDOW
        assert w.check(n) == fresh_ref, n
        if fresh_ref:
            seen.add(n)
            top = max(top, n)


def test_grade_tables_run_in_opposite_directions() -> None:
    for g in grades.GRADES:
        assert grades.PROVINCIAL_CODE[g] + grades.GBT39046_CODE[g] == 6
        assert grades.from_code(grades.PROVINCIAL_CODE, grades.PROVINCIAL_CODE[g]) == g
        assert grades.from_code(grades.GBT39046_CODE, grades.GBT39046_CODE[g]) == g
    assert grades.PROVINCIAL_CODE[grades.VERY_SATISFIED] == 5
    assert grades.GBT39046_CODE[grades.VERY_SATISFIED] == 1
    assert grades.from_code(grades.PROVINCIAL_CODE, 0) is None
    assert grades.BAD == ("d", "vd")
    assert grades.is_bad("vd") and not grades.is_bad("bs")


def test_button_map_validates() -> None:
    assert grades.button_map(["vd", "d", "bs", "s", "vs"])[0] == "vd"
    with pytest.raises(ValueError):
        grades.button_map(["vs", "vs", "bs", "d", "vd"])
    with pytest.raises(ValueError):
        grades.button_map(["vs"])


def test_topics() -> None:
    assert topics.up(D, "rec") == "hcp/1/up/%s/rec" % D
    assert topics.parse(topics.down(D, "ack")) == ("down", D, "ack")
    assert topics.parse("hcp/1/up/x") is None
    assert topics.parse("hcp/1/up/x/y/z") is None
    assert topics.parse("foo") is None


def test_record_ids() -> None:
    assert ids.record_id(D, 3, 17) == D + ":3:17"
    assert ids.parse_record_id(D + ":3:17") == (D, 3, 17)
    for bad in ("x", "a:b:c", ":1:2", "a:0:1", "a:1:0", "a:1:2\n", "a: 1:2", "a:+1:2", "a:01:2", "a:1_0:2"):
        with pytest.raises(ValueError):
            ids.parse_record_id(bad)


def test_the_gateways_ack_batch_is_the_ack_schemas_bound() -> None:
    from protocol import cpython
    assert messages.DOWN_TYPES["ack"] == "a:acks:1:%d" % cpython.MAX_ACKS


def test_depth_limit_is_one_number_on_both_sides() -> None:
    """protocol/strict.py (device, private const) and protocol/cpython.py (gateway's pre-check)
    must agree, or the two runtimes would disagree on a payload at the limit."""
    from protocol import cpython, strict

    assert strict._MAX_DEPTH == cpython.MAX_DEPTH == 16
    at_limit = b"[" * 16 + b"]" * 16
    assert strict.json_text(at_limit) and not strict.json_text(b"[" + at_limit + b"]")
    assert not cpython.may_nest_too_deep(at_limit)
    assert cpython.may_nest_too_deep(b"[" * 17)

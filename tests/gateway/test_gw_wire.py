"""The gateway's fast canonical encoder must give protocol.cjson's exact bytes."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from gateway import mqtt as gwire
from protocol import cjson, messages
from protocol.auth import Key
from protocol.errors import BadSignature

KEY = Key("5a" * 32)


def _samples() -> list[dict[str, object]]:
    rnd = random.Random(7)
    out: list[dict[str, object]] = []
    texts = ["", "a", "窗口 3", "naïve", 'q"uote', "back\\slash", "emoji \U0001f600", "\x7f"]
    for i in range(300):
        out.append({"t": "rec", "d": "dev-%d" % i, "b": rnd.randint(1, 2**31 - 1), "n": i,
                    "k": "walkup", "rb": 1, "rs": i + 1, "g": "s", "i": "", "w": rnd.randint(0, 2**33 - 1),
                    "u": rnd.randint(0, 2**48 - 1)})
        out.append({"t": "paired", "d": "dev-a", "b": 1, "n": i, "win": "W%d" % i,
                    "clerk": rnd.choice(texts)})
        out.append({"t": "config", "d": "dev-a", "b": 1, "n": i,
                    "cfg": {"walkup": rnd.choice(texts), "cd": 60, "safe": True,
                            "buttons": ["vs", "s", 3]}})
        out.append({"t": "ack", "d": "dev-a", "b": 3, "n": i,
                    "a": [[1, j] for j in range(1, 1 + i % 32)] or [[1, 1]]})
    return out


VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "protocol_v1.json"


def test_fast_sign_reproduces_the_shared_vectors() -> None:
    vec = json.loads(VECTORS.read_text())
    key = Key(vec["key"])
    n = 0
    for v in vec["encode"]:
        if v.get("wire") is None:
            continue
        assert gwire.sign(dict(v["fields"]), key) == v["wire"].encode(), v["name"]
        n += 1
    assert n > 0


@pytest.mark.parametrize("m", _samples()[:1200])
def test_fast_sign_equals_protocol_sign(m: dict[str, object]) -> None:
    try:
        want = bytes(messages.sign(dict(m), KEY))
    except Exception:
        return  # not a valid message: nothing to compare
    assert gwire.sign(dict(m), KEY) == want
    parsed = messages.parse(want)
    assert gwire.canonical({k: v for k, v in parsed.items() if k != "mac"}) == messages.signing_bytes(parsed)
    gwire.verify(parsed, KEY)


def test_fast_verify_rejects_a_bad_mac() -> None:
    data = messages.sign({"t": "treq", "d": "dev-a", "b": 1, "n": 1, "u": 5}, KEY)
    m = messages.parse(data)
    with pytest.raises(BadSignature):
        gwire.verify(m, Key("00" * 32))
    m["u"] = 6
    with pytest.raises(BadSignature):
        gwire.verify(m, KEY)
    assert cjson.encode({"a": "x"}) == gwire.canonical({"a": "x"})


@pytest.mark.parametrize("m", _samples()[:400])
def test_signed_part_of_a_canonical_payload_is_the_signing_bytes(m: dict[str, object]) -> None:
    try:
        wire = bytes(messages.sign(dict(m), KEY))
    except Exception:
        return
    parsed = messages.parse(wire)
    assert gwire.signed_part(wire, parsed["mac"]) == messages.signing_bytes(parsed)
    gwire.verify_received(wire, parsed, KEY)


def _reordered(m: dict[str, object], mac_first: bool) -> bytes:
    """The same members, the mac first or last instead of in key order: valid JSON, signed
    content unchanged, but not the canonical bytes."""
    body = {k: v for k, v in m.items() if k != "mac"}
    mac = [("mac", m["mac"])]
    items = mac + sorted(body.items()) if mac_first else sorted(body.items()) + mac
    return ("{" + ",".join(json.dumps(k) + ":" + json.dumps(v, separators=(",", ":"), ensure_ascii=False)
                           for k, v in items) + "}").encode()


def test_verify_on_the_received_bytes_agrees_with_the_protocol() -> None:
    wire = bytes(messages.sign({"t": "rec", "d": "dev-a", "b": 2, "n": 7, "k": "walkup", "rb": 2,
                                "rs": 7, "g": "s", "i": "", "w": 1700000000, "u": 5000}, KEY))
    m = messages.parse(wire)
    gwire.verify_received(wire, m, KEY)
    # Authentic but not canonical (spaces, mac first or last): the fallback accepts it.
    for other in (json.dumps(m).encode(), _reordered(m, True), _reordered(m, False)):
        again = messages.parse(other)
        assert again == m
        gwire.verify_received(other, again, KEY)
    # Tampered content with the original mac: refused whichever bytes are presented.
    forged = wire.replace(b'"g":"s"', b'"g":"d"')
    with pytest.raises(BadSignature):
        gwire.verify_received(forged, messages.parse(forged), KEY)
    with pytest.raises(BadSignature):
        gwire.verify_received(wire, m, Key("00" * 32))
    # Shapes the raw path does not take (no mac member, a mac of another length).
    assert gwire.signed_part(b'{"a":1}', m["mac"]) is None
    assert gwire.signed_part(wire.replace(m["mac"].encode(), b"ab"), m["mac"]) is None

"""Regenerate tests/vectors/protocol_v1.json (run deliberately, then review the diff).

The inputs below are the specification's examples and every malformation class we know;
the expected wire bytes and error codes were produced once by the CPython implementation,
reviewed, and frozen. tests/protocol checks that CPython AND real MicroPython 1.27 both
still produce exactly these bytes and these codes.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from protocol import auth, messages  # noqa: E402

KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
OTHER_KEY = "ff" * 32
D = "hcp-0a1b2c3d4e5f"

ENCODE = [
    ("rec rated", {"t": "rec", "d": D, "b": 3, "n": 7, "k": "rated", "rb": 3, "rs": 1, "g": "vs",
                   "i": "inv-20261122-0001", "w": 1795309855, "u": 123456}),
    ("rec unrated", {"t": "rec", "d": D, "b": 3, "n": 8, "k": "unrated", "rb": 3, "rs": 2, "g": "",
                     "i": "inv-20261122-0002", "w": 0, "u": 190000}),
    ("rec walkup unsynced", {"t": "rec", "d": D, "b": 4, "n": 1, "k": "walkup", "rb": 4, "rs": 1, "g": "vd",
                             "i": "", "w": 0, "u": 5000}),
    ("rec extra", {"t": "rec", "d": D, "b": 4, "n": 2, "k": "extra", "rb": 4, "rs": 2, "g": "d",
                   "i": "inv-7", "w": 1795309900, "u": 6000}),
    ("rec unpaired", {"t": "rec", "d": D, "b": 1, "n": 3, "k": "unpaired", "rb": 1, "rs": 1, "g": "bs",
                      "i": "", "w": 0, "u": 100}),
    ("hello", {"t": "hello", "d": D, "b": 3, "n": 1, "fw": "1.0.0", "up": 812, "rst": "power_on",
               "cfg": 1, "jd": 0, "safe": False}),
    ("status online", {"t": "status", "d": D, "b": 3, "n": 2, "s": "online", "c": 1}),
    ("status offline (will)", {"t": "status", "d": D, "b": 3, "n": 0, "s": "offline", "c": 1}),
    ("heartbeat", {"t": "hb", "d": D, "b": 3, "n": 40, "up": 3600000, "heap": 61234, "rssi": -61, "jd": 2,
                   "fw": "1.0.0", "rc": 1, "rst": "wdt", "sync": True, "st": "idle"}),
    ("time request", {"t": "treq", "d": D, "b": 3, "n": 3, "u": 900}),
    ("ack", {"t": "ack", "d": D, "b": 3, "n": 11, "a": [[3, 1], [3, 2]]}),
    ("invite with Chinese case data", {"t": "invite", "d": D, "b": 3, "n": 12, "i": "inv-20261122-0003",
                                       "case": "540100-2026-000123", "item": "个体工商户设立登记", "cd": 60}),
    ("cancel", {"t": "cancel", "d": D, "b": 3, "n": 13, "i": "inv-20261122-0003"}),
    ("paired", {"t": "paired", "d": D, "b": 3, "n": 14, "win": "A07", "clerk": "张三 (工号 0107)"}),
    ("unpaired", {"t": "unpaired", "d": D, "b": 3, "n": 15}),
    ("time", {"t": "time", "d": D, "b": 3, "n": 16, "w": 1795309855, "u": 900}),
    ("config", {"t": "config", "d": D, "b": 3, "n": 17, "cfg": {"countdown_s": 45, "walkup": "ignore",
                                                                 "buttons": ["vd", "d", "bs", "s", "vs"]}}),
    ("reboot", {"t": "reboot", "d": D, "b": 3, "n": 18, "why": "firmware update"}),
    ("string escapes", {"t": "paired", "d": D, "b": 3, "n": 19, "win": "B\"1\\", "clerk": "quote\" back\\"}),
]

GOOD = ENCODE[0][1]


def wire(fields, key=KEY):
    return messages.sign(dict(fields), auth.Key(key))


def tamper(data, old, new):
    assert old in data, old
    return data.replace(old, new, 1)


def build():
    good = wire(GOOD)
    rec_topic = "hcp/1/up/%s/rec" % D
    cases = []

    def case(name, payload, error, topic=rec_topic, key="key"):
        if isinstance(payload, str):
            payload = payload.encode()
        cases.append({"name": name, "payload_hex": payload.hex(), "topic": topic, "key": key, "error": error})

    case("valid record", good, None)
    case("valid record, fields reordered", json.dumps(json.loads(good), ensure_ascii=False), None)
    case("valid record, white space", json.dumps(json.loads(good), indent=1), None)
    case("valid command with Chinese text", wire(ENCODE[11][1]), None, topic="hcp/1/down/%s/invite" % D)
    # size and encoding
    case("empty payload", b"", "not_json")
    case("over 1024 bytes", b"{" + b" " * 1100 + b"}", "too_large")
    case("invalid UTF-8 byte", b'{"v":1,"t":"\xff"}', "not_utf8")
    case("truncated UTF-8", b'{"v":1,"t":"\xe4\xb8"}', "not_utf8")
    case("UTF-8 encoded surrogate", b'{"v":1,"t":"\xed\xa0\x80"}', "not_utf8")
    case("overlong UTF-8", b'{"v":1,"t":"\xc0\xaf"}', "not_utf8")
    case("code point above U+10FFFF", b'{"v":1,"t":"\xf4\x90\x80\x80"}', "not_utf8")
    case("byte-order mark", b'\xef\xbb\xbf{"v":1}', "not_json")
    # JSON grammar (MicroPython's parser is lenient; protocol/strict.py closes the gap)
    for name, text in [
        ("truncated JSON", '{"v":1'), ("trailing garbage", '{"v":1}x'), ("two objects", '{"v":1}{"v":1}'),
        ("trailing comma in object", '{"v":1,}'), ("trailing comma in array", '[1,]'),
        ("leading zero", '{"v":01}'), ("plus sign", '{"v":+1}'), ("hex number", '{"v":0x1}'),
        ("NaN", '{"v":NaN}'), ("Infinity", '{"v":Infinity}'), ("-Infinity", '{"v":-Infinity}'),
        ("bare dot", '{"v":.5}'), ("trailing dot", '{"v":1.}'), ("empty exponent", '{"v":1e}'),
        ("single quotes", "{'v':1}"), ("unquoted key", '{v:1}'), ("raw tab in string", '{"v":"\t"}'),
        ("unknown escape", '{"v":"\\x41"}'), ("lone surrogate escape", '{"v":"\\ud800"}'),
        ("surrogate pair escape", '{"v":"\\ud83d\\ude00"}'), ("mismatched bracket", '{"v":[1,2}'),
        ("missing value", '{"v":}'), ("missing comma", '{"v":1 "t":2}'),
    ]:
        case(name, text, "not_json")
    # structure
    case("array", "[1,2]", "not_object")
    case("string", '"rec"', "not_object")
    case("number", "42", "not_object")
    case("null", "null", "not_object")
    # depth: at most 16 nested arrays/objects (protocol/strict.py); CPython's recursive parser
    # raised RecursionError on ~1000 levels, which escaped the gateway's decoder (issue 14)
    case("deep nesting", "[" * 500 + "]" * 500, "not_json")
    case("nesting at the depth limit", "[" * 16 + "]" * 16, "not_object")
    case("nesting one over the depth limit", "[" * 17 + "]" * 17, "not_json")
    case("objects one over the depth limit", '{"a":' * 17 + "1" + "}" * 17, "not_json")
    case("deep unclosed nesting", "[" * 1000, "not_json")
    case("deep unclosed objects", '{"a":' * 200, "not_json")
    case("deep nesting in a field", tamper(good, b'"g":"vs"', b'"g":' + b"[" * 600 + b"]" * 100), "not_json")
    case("nesting at the limit in a field", tamper(good, b'"g":"vs"', b'"g":' + b"[" * 15 + b"]" * 15),
         "bad_field")
    # version
    case("version missing", '{"t":"rec"}', "bad_version")
    case("version 2", good.replace(b'"v":1', b'"v":2'), "bad_version")
    case("version as string", good.replace(b'"v":1', b'"v":"1"'), "bad_version")
    case("version as float", good.replace(b'"v":1', b'"v":1.0'), "bad_version")
    case("version as true", good.replace(b'"v":1', b'"v":true'), "bad_version")
    case("version huge exponent", '{"v":1e400}', "bad_version")
    # type and fields
    case("type missing", '{"v":1}', "unknown_type")
    case("type unknown", tamper(good, b'"t":"rec"', b'"t":"rating"'), "unknown_type")
    case("type not a string", tamper(good, b'"t":"rec"', b'"t":5'), "unknown_type")
    for f in ("d", "b", "n", "k", "rb", "rs", "g", "i", "w", "u"):
        m = json.loads(good)
        del m[f]
        case("rec without %s" % f, json.dumps(m), "missing_field")
    m = json.loads(good)
    m["extra"] = 1
    case("unknown field", json.dumps(m), "unknown_field")
    for name, old, new in [
        ("device id upper case", b'"d":"hcp-', b'"d":"HCP-'),
        ("device id with slash", b'"d":"hcp-', b'"d":"hcp/'),
        ("boot zero", b'"b":3', b'"b":0'),
        ("boot as bool", b'"b":3', b'"b":true'),
        ("boot as float", b'"b":3', b'"b":3.0'),
        ("boot too large", b'"b":3', b'"b":2147483648'),
        ("counter negative", b'"n":7', b'"n":-7'),
        ("counter as string", b'"n":7', b'"n":"7"'),
        ("grade unknown", b'"g":"vs"', b'"g":"5"'),
        ("grade as integer", b'"g":"vs"', b'"g":5'),
        ("kind unknown", b'"k":"rated"', b'"k":"vote"'),
        ("rated without invitation", b'"i":"inv-20261122-0001"', b'"i":""'),
        ("invitation id with space", b'"i":"inv-20261122-0001"', b'"i":"inv 1"'),
        ("invitation id too long", b'"i":"inv-20261122-0001"', b'"i":"' + b"x" * 33 + b'"'),
        ("uptime as float", b'"u":123456', b'"u":123456.5'),
        ("wall time negative", b'"w":1795309855', b'"w":-1'),
        ("mac too short", b'"mac":"', b'"mac":"ab'),
        ("huge integer", b'"rs":1', b'"rs":123456789012345678901234567890'),
    ]:
        case(name, tamper(good, old, new), "bad_field")
    unr = json.loads(wire(ENCODE[1][1]))
    unr["g"] = "vs"
    case("unrated with a grade", json.dumps(unr), "bad_field")
    hb = json.loads(wire(ENCODE[8][1]))
    hb["st"] = "x\u0001"
    case("control character in text", json.dumps(hb), "bad_field", topic="hcp/1/up/%s/hb" % D)
    hb["st"] = "idle"
    hb["rssi"] = 5
    case("rssi positive", json.dumps(hb), "bad_field", topic="hcp/1/up/%s/hb" % D)
    ack = json.loads(wire(ENCODE[10][1]))
    ack["a"] = []
    case("ack empty", json.dumps(ack), "bad_field", topic="hcp/1/down/%s/ack" % D)
    ack["a"] = [[3, 1]] * 33
    case("ack over 32 ids", json.dumps(ack), "bad_field", topic="hcp/1/down/%s/ack" % D)
    ack["a"] = [[3]]
    case("ack item not a pair", json.dumps(ack), "bad_field", topic="hcp/1/down/%s/ack" % D)
    # topic
    case("topic of another device", good, "topic_mismatch", topic="hcp/1/up/hcp-ffffffffffff/rec")
    case("topic of another type", good, "topic_mismatch", topic="hcp/1/up/%s/hb" % D)
    case("topic of the other direction", good, "topic_mismatch", topic="hcp/1/down/%s/rec" % D)
    case("topic outside the tree", good, "topic_mismatch", topic="other/%s/rec" % D)
    # authentication
    case("wrong key", good, "bad_mac", key="other_key")
    case("mac missing", json.dumps({k: v for k, v in json.loads(good).items() if k != "mac"}), "bad_mac")
    for name, old, new in [
        ("tampered grade", b'"g":"vs"', b'"g":"vd"'),
        ("tampered invitation", b'"i":"inv-20261122-0001"', b'"i":"inv-20261122-0009"'),
        ("tampered sequence", b'"rs":1', b'"rs":2'),
        ("tampered wall time", b'"w":1795309855', b'"w":1795309856'),
        ("tampered mac digit", b'"mac":"', b'"mac":"0'),
    ]:
        data = tamper(good, old, new)
        if name == "tampered mac digit":
            m = json.loads(good)
            m["mac"] = ("0" if m["mac"][0] != "0" else "1") + m["mac"][1:]
            data = json.dumps(m).encode()
        case(name, data, "bad_mac")

    return {
        "comment": "Protocol v1 shared test vectors. Generated by generate_protocol_vectors.py, then frozen.",
        "key": KEY,
        "other_key": OTHER_KEY,
        "encode": [{"name": n, "fields": f, "wire": wire(f).decode("utf-8")} for n, f in ENCODE],
        "decode": cases,
        "replay": {
            "comment": "n values offered in order to a fresh ReplayWindow, and whether each is accepted",
            "offered": [1, 2, 3, 3, 2, 10, 5, 5, 9, 40, 10, 11, 39, 41, 12, 100, 71, 70, 69, 100],
            "accepted": [True, True, True, False, False, True, True, False, True, True, False, True,
                         True, True, True, True, True, False, False, False],
        },
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("protocol_v1.json")
    out.write_text(json.dumps(build(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print("wrote", out)

"""The shared protocol vectors, applied under CPython and under real MicroPython 1.27: the
WebAssembly port (the protocol's sources) and the 32-bit unix port (the protocol frozen into the
image, as on a device built with firmware/manifest.py).

Encoded bytes must be identical in every runtime and every malformed vector must give the
same error code in each (tests/vectors/protocol_v1.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protocol import auth, messages
from protocol.errors import ProtocolError

VECTORS_PATH = Path(__file__).resolve().parents[1] / "vectors" / "protocol_v1.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
KEYS = {"key": auth.Key(VECTORS["key"]), "other_key": auth.Key(VECTORS["other_key"])}
ENCODE = VECTORS["encode"]
DECODE = VECTORS["decode"]


def _cpython_decode(v: dict[str, Any]) -> str:
    try:
        messages.decode(bytes.fromhex(v["payload_hex"]), KEYS[v["key"]], v["topic"])
    except ProtocolError as e:
        return str(e.code)
    return "ok"


@pytest.mark.parametrize("v", ENCODE, ids=[v["name"] for v in ENCODE])
def test_cpython_encode(v: dict[str, Any]) -> None:
    assert messages.sign(dict(v["fields"]), KEYS["key"]) == v["wire"].encode("utf-8")


@pytest.mark.parametrize("v", DECODE, ids=[v["name"] for v in DECODE])
def test_cpython_decode(v: dict[str, Any]) -> None:
    assert _cpython_decode(v) == (v["error"] or "ok")


def test_cpython_replay_window() -> None:
    w = auth.ReplayWindow()
    assert [w.check(n) for n in VECTORS["replay"]["offered"]] == VECTORS["replay"]["accepted"]


@pytest.fixture(scope="module", params=["wasm", "unix"])
def micropython_results(request: pytest.FixtureRequest,
                        tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    checker = (Path(__file__).with_name("mp_vector_check.py")).read_text(encoding="utf-8")
    if request.param == "wasm":
        from simulator.micropython import run_micropython

        res: Any = run_micropython(checker, files={"/vectors.json": VECTORS_PATH.read_bytes()},
                                   tree=("protocol",), timeout=120)
    else:
        from simulator.unixport import run_unix

        cwd = tmp_path_factory.mktemp("vectors")       # no protocol/ here: the frozen one runs
        (cwd / "vectors.json").write_bytes(VECTORS_PATH.read_bytes())
        res = run_unix(checker.replace('"/vectors.json"', '"vectors.json"'), build="frozen", cwd=cwd,
                       timeout=120)
    wires: dict[str, str] = {}
    errors: dict[str, str] = {}
    replay_bits = ""
    for line in res.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "W":
            hexwire, _, name = rest.partition(" ")
            wires[name] = hexwire
        elif kind == "E":
            code, _, name = rest.partition(" ")
            errors[name] = code
        elif kind == "R":
            replay_bits = rest.strip()
    return {"wires": wires, "errors": errors, "replay": replay_bits, "stdout": res.stdout}


@pytest.mark.parametrize("v", ENCODE, ids=[v["name"] for v in ENCODE])
def test_micropython_encode(micropython_results: dict[str, Any], v: dict[str, Any]) -> None:
    got = micropython_results["wires"].get(v["name"])
    assert got is not None, micropython_results["stdout"][-2000:]
    assert bytes.fromhex(got) == v["wire"].encode("utf-8")


@pytest.mark.parametrize("v", DECODE, ids=[v["name"] for v in DECODE])
def test_micropython_decode(micropython_results: dict[str, Any], v: dict[str, Any]) -> None:
    assert micropython_results["errors"].get(v["name"]) == (v["error"] or "ok")


def test_micropython_replay_window(micropython_results: dict[str, Any]) -> None:
    want = "".join("1" if a else "0" for a in VECTORS["replay"]["accepted"])
    assert micropython_results["replay"] == want


def test_every_error_code_is_covered() -> None:
    from protocol.cpython import MALFORMED_CODES

    covered = {v["error"] for v in DECODE}
    for code in (*MALFORMED_CODES, "bad_version", "bad_mac", "topic_mismatch"):
        assert code in covered, code

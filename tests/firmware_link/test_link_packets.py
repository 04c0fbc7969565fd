"""Byte-exact MQTT 3.1.1 packets of firmware/mqtt/packets.py under CPython and under real MicroPython 1.27.

The vectors (tests/firmware_link/link_packet_vectors.py) are written from the specification;
the same module runs in both interpreters and must give the same text for every case.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
# The repo root first: tests/protocol/ (no __init__) would otherwise shadow the protocol package.
sys.path[:0] = [str(HERE.parents[1]), str(HERE)]
import link_packet_vectors as vectors  # noqa: E402

NAMES = sorted(vectors.EXPECTED)


@pytest.fixture(scope="module")
def cpython_results() -> dict[str, str]:
    return vectors.run()


@pytest.fixture(scope="module")
def micropython_results(mpy_runtime: None) -> dict[str, str]:
    from simulator.micropython import run_micropython

    code = (
        "import json, sys\n"
        "sys.path.insert(0, '/t')\n"
        "import link_packet_vectors as v\n"
        "print('RESULTS ' + json.dumps(v.run()))\n"
    )
    src = (HERE / "link_packet_vectors.py").read_bytes()
    res = run_micropython(code, files={"/t/link_packet_vectors.py": src}, timeout=120)
    for line in res.stdout.splitlines():
        if line.startswith("RESULTS "):
            out: dict[str, str] = json.loads(line[8:])
            return out
    raise AssertionError("no results from MicroPython:\n" + res.stdout[-2000:] + res.stderr[-2000:])


def test_every_case_has_an_expectation(cpython_results: dict[str, str]) -> None:
    assert set(cpython_results) == set(vectors.EXPECTED)


@pytest.mark.parametrize("name", NAMES)
def test_cpython(cpython_results: dict[str, str], name: str) -> None:
    assert cpython_results[name] == vectors.EXPECTED[name]


@pytest.mark.parametrize("name", NAMES)
def test_micropython(micropython_results: dict[str, str], name: str) -> None:
    assert micropython_results.get(name) == vectors.EXPECTED[name]


def test_error_has_code_and_detail() -> None:
    from firmware.mqtt.packets import MQTTError, decode_packet

    with pytest.raises(MQTTError) as ei:
        decode_packet(0x21, b"\x00\x00")
    assert ei.value.code == "bad_flags"
    assert "0x21" in str(ei.value)


def test_connect_refused_is_an_mqtt_error() -> None:
    from firmware.mqtt.packets import MQTTError, connect_refused

    e: Any = connect_refused(5)
    assert isinstance(e, MQTTError) and e.code == "refused" and e.rc == 5
    assert str(e) == "refused: CONNACK 5: not authorized"

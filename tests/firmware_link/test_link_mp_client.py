"""The MQTT client's asyncio code under real MicroPython 1.27 (is_async) and under CPython, on an
in-memory stream pair (the wasm build has no sockets): connect with will, SUBACK, a window of 2
that blocks the third publish, an incoming QoS 1 command and its PUBACK, an oversize packet
skipped in sync, a cut connection and the DUP re-send of the unacked PUBLISH."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
# The repo root first: tests/protocol/ (no __init__) would otherwise shadow the protocol package.
sys.path[:0] = [str(HERE.parents[1]), str(HERE)]
import link_mp_scenario as scenario  # noqa: E402

WILL_TOPIC = "hcp/1/up/dev-1/status"
EXPECTED: dict[str, Any] = {
    "session_present_1": False,
    # CONNECT: user|password|will retain|will QoS1|will, clean 0, keepalive 30 (3.1.1 section 3.1)
    "connect_bytes": "1038" + "00044d51545404" + "ec" + "001e" + "0005" + b"dev-1".hex()
    + "0015" + WILL_TOPIC.encode().hex() + "0003" + b"off".hex()
    + "0005" + b"dev-1".hex() + "0002" + b"pw".hex(),
    "granted": 1,
    "blocked_at_window": [2, 2],
    "pubs": [["hcp/1/up/dev-1/rec", "r0", 1, False, 2], ["hcp/1/up/dev-1/rec", "r1", 1, False, 3],
             ["hcp/1/up/dev-1/rec", "r2", 1, False, 4]],
    "got": [["hcp/1/down/dev-1/ack", "cmd", False]],
    "puback_sent": ["004d"],
    "after_oversize": "after",
    "counters": {"too_large": 1},
    "service_after_cut": "closed",
    "tags_in_flight": ["L"],
    "session_present_2": True,
    "resent": [["lost", True, 5]],
    "lost_pid": [5],
    "last_packet": "e0",
}


def test_scenario_cpython() -> None:
    got = json.loads(json.dumps(asyncio.run(scenario.main())))
    assert got == EXPECTED


def test_scenario_micropython(mpy: Any) -> None:
    code = (
        "import json, sys\n"
        "sys.path.insert(0, '/t')\n"
        "import link_mp_scenario as s\n"
        "async def main():\n"
        "    print('RESULT ' + json.dumps(await s.main()))\n"
        "await main()\n"
    )
    res = mpy(code, files={"/t/link_mp_scenario.py": (HERE / "link_mp_scenario.py").read_bytes()},
              is_async=True, timeout=60)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, res.stdout[-2000:] + res.stderr[-2000:]
    assert json.loads(line[0][7:]) == EXPECTED


@pytest.mark.parametrize("module", ["mqtt.packets", "mqtt.session", "mqtt.client", "link"])
def test_modules_import_under_micropython(mpy: Any, module: str) -> None:
    res = mpy("import firmware.%s as m\nprint('OK', m.__name__)\n" % module, timeout=60)
    assert "OK firmware.%s" % module in res.stdout


LINK_EXPECTED: dict[str, Any] = {
    "first_types": ["status", "hello", "treq"],
    "status": ["online"],
    "rec_order": list(range(1, 21)),
    "depth": 0,
    "acked": 20,
    "peak_ok": True,
    "links": [True, False],
    "rejected": {},
    "n_unique": True,
}


def test_link_backlog_and_signed_acks_cpython(tmp_path: Path) -> None:
    import link_mp_link_scenario as link_scenario

    got = json.loads(json.dumps(asyncio.run(link_scenario.main(str(tmp_path / "dev")))))
    got.pop("link_heap")
    assert got == LINK_EXPECTED


def test_link_backlog_and_signed_acks_micropython(mpy: Any) -> None:
    code = (
        "import json, sys\n"
        "sys.path.insert(0, '/t')\n"
        "import link_mp_link_scenario as s\n"
        "async def main():\n"
        "    print('RESULT ' + json.dumps(await s.main('/dev1')))\n"
        "await main()\n"
    )
    files = {"/t/" + n: (HERE / n).read_bytes() for n in ("link_mp_scenario.py", "link_mp_link_scenario.py")}
    res = mpy(code, files=files, is_async=True, timeout=60)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, res.stdout[-2000:] + res.stderr[-2000:]
    got = json.loads(line[0][7:])
    heap = got.pop("link_heap")
    print("MicroPython heap of one Link + its MQTT client after construction: %d bytes" % heap)
    assert 0 < heap < 8192
    assert got == LINK_EXPECTED

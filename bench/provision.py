#!/usr/bin/env python3
"""Time to provision a fresh virtual board (target <= 20 s), a re-provision of it, and the time
from the end of provisioning to the gateway's answer to the board's first signed hello.

Runs the real flash.py path (flashtool.commands.run_provision) against a virtual serial device
(real MicroPython 1.27 behind a pty) and a real hall: mosquitto + the gateway process with its
HTTP API (tests/flash/flash_hall.py).  --stand-in uses the small aiohttp registration stand-in
instead (no broker, no hello figure), as before issue 7.
Usage: .venv/bin/python bench/provision.py [--runs N] [--stand-in]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "flash"))

import paho.mqtt.client as mqtt  # noqa: E402
from flash_hall import ADMIN_TOKEN, RealHall  # noqa: E402
from flash_support import TOKEN, RegistryServer  # noqa: E402

from flashtool.commands import ProvisionOptions, QuietConsole, run_provision  # noqa: E402
from flashtool.link import Link  # noqa: E402
from protocol import messages, topics  # noqa: E402
from protocol.auth import Key  # noqa: E402
from simulator.serial_device import VirtualSerialDevice  # noqa: E402

TARGET_S = 20.0


@contextlib.contextmanager
def registration_target(stand_in: bool, workdir: Path) -> Iterator[tuple[str, str, str, RealHall | None]]:
    """(gateway url, token, broker HOST:PORT, the hall or None)."""
    if stand_in:
        server = RegistryServer().start()
        try:
            yield server.url, TOKEN, "127.0.0.1:1883", None
        finally:
            server.stop()
    else:
        with RealHall(workdir) as hall:
            yield hall.url, ADMIN_TOKEN, f"{hall.broker.host}:{hall.broker.port}", hall


def board_config(port: str) -> dict[str, Any]:
    with Link(port) as link:
        link.enter_raw(soft_reset=False)
        cfg: dict[str, Any] = json.loads(link.eval("_hcp_read('/config.json')"))
        return cfg


def hello_answer_s(cfg: dict[str, Any]) -> float:
    """Connect as the board (credentials from its config), send a signed hello, wait for the
    gateway's signed answer; seconds from the connect to the answer."""
    t0 = time.monotonic()
    got: queue.Queue[tuple[str, bytes]] = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg["device_id"], protocol=mqtt.MQTTv311)
    c.username_pw_set(cfg["device_id"], cfg["broker"]["password"])
    c.on_message = lambda cl, u, msg: got.put((msg.topic, bytes(msg.payload)))
    c.connect(cfg["broker"]["host"], cfg["broker"]["port"], keepalive=30)
    c.loop_start()
    try:
        c.subscribe(topics.device_sub(cfg["device_id"]), qos=1)
        m = {
            "t": "hello",
            "d": cfg["device_id"],
            "b": 1,
            "n": 1,
            "fw": "bench",
            "up": 1000,
            "rst": "power",
            "cfg": 1,
            "jd": 0,
            "safe": False,
        }
        c.publish(topics.up(cfg["device_id"], "hello"), bytes(messages.sign(m, Key(cfg["secret"]))), qos=1)
        topic, payload = got.get(timeout=15)
        messages.decode(payload, Key(cfg["secret"]), topic)
        return time.monotonic() - t0
    finally:
        c.disconnect()
        c.loop_stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--stand-in", action="store_true", help="register with the aiohttp stand-in")
    args = ap.parse_args()
    fresh, again, boot, hello = [], [], [], []
    uploaded = 0
    with tempfile.TemporaryDirectory() as work, registration_target(args.stand_in, Path(work)) as target:
        url, token, broker, hall = target
        for i in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.monotonic()
                with VirtualSerialDevice(uid=f"{i:012x}", state_dir=tmp) as dev:
                    boot.append(time.monotonic() - t0)
                    opts = ProvisionOptions(dev.path, "hall-1", "auto", "hall-net", "pw", broker, url, token)
                    t1 = time.monotonic()
                    res = run_provision(opts, QuietConsole())
                    fresh.append(time.monotonic() - t1)
                    uploaded = len(res.uploaded)
                    if hall is not None:
                        hello.append(hello_answer_s(board_config(dev.path)))
                    t2 = time.monotonic()
                    res2 = run_provision(opts, QuietConsole())
                    again.append(time.monotonic() - t2)
                    assert not res2.uploaded
    print(f"registration target:    {'aiohttp stand-in' if args.stand_in else 'real gateway + mosquitto'}")
    print(f"files uploaded to a fresh board: {uploaded}")
    print(f"virtual board start:    median {statistics.median(boot):.2f} s")
    print(
        f"fresh provision:        median {statistics.median(fresh):.2f} s  max {max(fresh):.2f} s "
        f"(target <= {TARGET_S:.0f} s)"
    )
    print(f"unchanged re-provision: median {statistics.median(again):.2f} s")
    if hello:
        print(
            f"connect + signed hello -> gateway's answer: median {statistics.median(hello) * 1000:.0f} ms"
            f"  max {max(hello) * 1000:.0f} ms"
        )
    return 0 if max(fresh) <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())

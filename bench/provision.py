#!/usr/bin/env python3
"""Time to provision a fresh virtual board (target <= 20 s), and a re-provision of it.

Runs the real flash.py path (flashtool.commands.run_provision) against a virtual serial
device (real MicroPython 1.27 behind a pty) and a small aiohttp registration server.
Usage: .venv/bin/python bench/provision.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "flash"))

from flash_support import TOKEN, RegistryServer  # noqa: E402

from flashtool.commands import ProvisionOptions, QuietConsole, run_provision  # noqa: E402
from simulator.serial_device import VirtualSerialDevice  # noqa: E402

TARGET_S = 20.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    fresh, again, boot = [], [], []
    registry = RegistryServer().start()
    try:
        for i in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.monotonic()
                with VirtualSerialDevice(uid=f"{i:012x}", state_dir=tmp) as dev:
                    boot.append(time.monotonic() - t0)
                    opts = ProvisionOptions(
                        dev.path, "hall-1", "auto", "hall-net", "pw", "127.0.0.1:1883", registry.url, TOKEN
                    )
                    t1 = time.monotonic()
                    res = run_provision(opts, QuietConsole())
                    fresh.append(time.monotonic() - t1)
                    t2 = time.monotonic()
                    res2 = run_provision(opts, QuietConsole())
                    again.append(time.monotonic() - t2)
                    assert not res2.uploaded
        print(f"files uploaded to a fresh board: {len(res.uploaded)}")
        print(f"virtual board start:   median {statistics.median(boot):.2f} s")
        print(
            f"fresh provision:       median {statistics.median(fresh):.2f} s  max {max(fresh):.2f} s "
            f"(target <= {TARGET_S:.0f} s)"
        )
        print(f"unchanged re-provision: median {statistics.median(again):.2f} s")
    finally:
        registry.stop()
    return 0 if max(fresh) <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())

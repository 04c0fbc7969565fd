"""What TLS to the broker costs the device's RAM, on the 32-bit unix MicroPython 1.27 with Mbed TLS.

    .venv/bin/python bench/tls_memory.py [--builds frozen,mpy]

One evaluator (the unchanged firmware, unix HAL, -X heapsize=94K as in bench/firmware_memory.py)
connects once over plain TCP to a mosquitto listener and once over TLS (a test CA in its
config.json, simulator/pki.py), and the two are compared when connected:
- MicroPython's GC heap (gc.collect(), gc.mem_alloc()): what the TLS objects hold there;
- the C heap, where Mbed TLS allocates its context and record buffers (on an ESP32, the ESP-IDF
  heap, next to the GC heap in the same internal RAM): counted by bench/native/malloc_count.c,
  LD_PRELOADed into the device process, current bytes and the peak from Wi-Fi up to connected
  (the device boots offline, so that peak is the connection's: TCP, TLS handshake, MQTT).
Prints the figures and their differences (the TLS budget in docs/firmware.md, "TLS").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from simulator import unixport  # noqa: E402
from simulator.broker import MOSQUITTO, Mosquitto, _find, standard_acl  # noqa: E402
from simulator.mpdevice import ControlServer, MpDevice  # noqa: E402
from simulator.netutil import free_port, wait_port  # noqa: E402
from simulator.pki import make_pki, tls_listener_conf  # noqa: E402

SECRET = "ab" * 32
COUNT = re.compile(rb"malloc-count current=(\d+) peak=(\d+)")


def build_counter(out: Path) -> Path:
    lib = out / "malloc_count.so"
    subprocess.run(["gcc", "-m32", "-shared", "-fPIC", "-O2", "-o", str(lib),
                    str(REPO / "bench" / "native" / "malloc_count.c"), "-ldl"], check=True, timeout=120)
    return lib


async def connected(dev: MpDevice) -> dict[str, int]:
    dev.provision()
    dev.wifi_up = False                    # boot offline: the peak is then the connection's
    await dev.power_on()
    try:
        await asyncio.sleep(0.5)
        assert dev.pid is not None
        os.kill(dev.pid, signal.SIGUSR1)   # a new peak from here
        await asyncio.sleep(0.2)
        dev.set_wifi(True)
        deadline = time.monotonic() + 30
        while not dev.online:
            if time.monotonic() > deadline:
                raise RuntimeError("not connected: " + (dev.root / "console.log").read_text()[-1000:])
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        alloc, free = await dev.heap()
        assert dev.pid is not None
        os.kill(dev.pid, signal.SIGUSR1)
        await asyncio.sleep(0.3)
        m = COUNT.findall((dev.root / "console.log").read_bytes())
        cur, peak = int(m[-1][0]), int(m[-1][1])
        return {"gc": alloc - dev.heap_base, "gc_free": free, "c_now": cur, "c_peak": peak}
    finally:
        await dev.stop()


async def run(builds: list[str], tmp: Path, lib: Path, tls_port: int, ca: str,
              plain: Mosquitto) -> dict[str, dict[str, dict[str, int]]]:
    control = ControlServer()
    await control.start()
    out: dict[str, dict[str, dict[str, int]]] = {}
    env = {"LD_PRELOAD": str(lib)}
    try:
        for b in builds:
            out[b] = {
                "tcp": await connected(MpDevice("dev-a", tmp / b / "tcp", SECRET, plain.host, plain.port,
                                                "pa", control=control, build=b, env=env)),
                "tls": await connected(MpDevice("dev-a", tmp / b / "tls", SECRET, "127.0.0.1", tls_port, "pw",
                                                control=control, build=b, env=env, broker_ca=ca)),
            }
    finally:
        await control.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--builds", default="frozen,mpy")
    args = ap.parse_args()
    builds = [b for b in args.builds.split(",") if b in unixport.BUILDS]
    with tempfile.TemporaryDirectory(prefix="hcp-tls-bench-") as d:
        tmp = Path(d)
        lib = build_counter(tmp)
        pki = make_pki(tmp / "pki")
        tls_port = free_port()
        (tmp / "tls.conf").write_text(tls_listener_conf(tls_port, pki, tmp / "tls.log"))
        tls_proc = subprocess.Popen([_find(MOSQUITTO, "mosquitto"), "-c", str(tmp / "tls.conf")])
        try:
            wait_port("127.0.0.1", tls_port, time.monotonic() + 10, tls_proc)
            with Mosquitto(tmp / "plain", users={"dev-a": "pa"}, acl=standard_acl()) as plain:
                res = asyncio.run(run(builds, tmp, lib, tls_port, pki["ca"].read_text(), plain))
        finally:
            tls_proc.terminate()
            tls_proc.wait(10)
    print("connected device, -X heapsize=%s; GC heap above the baseline, C heap (Mbed TLS's) in bytes"
          % unixport.HEAPSIZE)
    print("%-8s %-5s %10s %10s %12s %12s"
          % ("build", "link", "GC live", "GC free", "C heap now", "C heap peak"))
    for b, r in res.items():
        for link in ("tcp", "tls"):
            f = r[link]
            print("%-8s %-5s %10d %10d %12d %12d" % (b, link, f["gc"], f["gc_free"], f["c_now"], f["c_peak"]))
        t, s = r["tcp"], r["tls"]
        print("%-8s %-5s %+10d %10s %+12d %+12d" % (b, "TLS", s["gc"] - t["gc"], "",
                                                    s["c_now"] - t["c_now"], s["c_peak"] - t["c_peak"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

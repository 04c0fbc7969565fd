"""A device's root directory and the constants the firmware drivers share (fw_scenarios.py,
fw_image_run.py), under MicroPython 1.27 (wasm) and CPython 3.11.

Kept apart and small: bench/firmware_memory.py loads the image driver before it takes its
baseline, and a driver's names are qstrs in the same pools as the firmware's.
"""

import json
import os

WALL = 1767225600          # 2026-01-01T00:00:00Z, the gateway's time in these scenarios
SECRET = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
SCAN = 10


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def mkdirs(path):
    cur = ""
    for part in path.split("/"):
        if not part:
            continue
        cur = cur + "/" + part
        try:
            os.mkdir(cur)
        except OSError:
            pass


def make_root(root, **over):
    mkdirs(root)
    cfg = {"device_id": "hcp-0a1b2c3d4e5f", "hall": "hall-1", "secret": SECRET,
           "wifi": {"ssid": "hall-net", "password": "pw"},
           "broker": {"host": "127.0.0.1", "port": 1883, "password": "bp"},
           "buttons": ["vs", "s", "bs", "d", "vd"], "debounce_ms": 50, "countdown_s": 60,
           "cooldown_s": 8, "walkup": "accept", "hb_s": 180, "cfg": 1}
    for k in over:
        cfg[k] = over[k]
    with open(root + "/config.json", "w") as f:
        f.write(json.dumps(cfg))
    return root

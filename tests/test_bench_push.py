"""bench/push.py runs on the current store (it had imported a module the store boundary
removed, and nothing noticed): a small run, every record delivered exactly once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_push_bench_small_run_delivers_every_record_once() -> None:
    r = subprocess.run([sys.executable, "bench/push.py", "--records", "600", "--batch-size", "100"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "platform holds 600 records, received 600 in total, 0 rejected" in r.stdout
    assert r.stdout.rstrip().endswith("OK")

"""The operations suite (issue 20) reuses the gateway suite's helpers (gw_support: the
protocol-level TestDevice, the broker/store environment, wait_for)."""

from __future__ import annotations

import sys
from pathlib import Path

_GATEWAY_TESTS = str(Path(__file__).resolve().parent.parent / "gateway")
if _GATEWAY_TESTS not in sys.path:
    sys.path.append(_GATEWAY_TESTS)

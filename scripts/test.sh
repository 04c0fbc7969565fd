#!/usr/bin/env bash
# The README's test command: set up everything, then lint, type-check, compile the firmware
# with mpy-cross and run every test (CPython and real MicroPython).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check .
echo "== mypy (gateway, protocol)"; mypy
echo "== pytest"; pytest -q -rfEs "$@"

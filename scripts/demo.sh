#!/usr/bin/env bash
# The README's first command: set everything up, then simulate a hall's day end to end.
# mosquitto, the gateway, the provincial platform stand-in and 12 virtual evaluators (the real
# firmware) run on this machine; one broker restart and one device power cut are injected;
# then the daily push, the day's report and the reconciliation. Exit code 0 = nothing lost,
# nothing doubled. Everything started is stopped again, also on Ctrl-C or an error.
# Extra options go to `hcp-sim demo` (see docs/cli-hcp-sim.md), e.g. --devices 50 --speed 20.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m simulator.cli demo "$@"

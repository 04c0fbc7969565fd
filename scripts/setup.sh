#!/usr/bin/env bash
# One-time (idempotent) set-up on a fresh Debian machine: system packages, the Python venv,
# the npm MicroPython runtime. Every entry command calls this first; a second run is fast.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_passwd >/dev/null 2>&1 || need_apt+=(mosquitto)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v socat >/dev/null 2>&1 || need_apt+=(socat)
# PostgreSQL 15 for the store's second backend (the tests start their own server).
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_apt+=(postgresql-15)
[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need_apt+=(fonts-wqy-microhei)  # QR plates
command -v pdftoppm >/dev/null 2>&1 || need_apt+=(poppler-utils)  # plate tests rasterise PDFs
/sbin/ldconfig -p 2>/dev/null | grep 'libcairo\.so\.2' >/dev/null || need_apt+=(libcairo2)  # cairosvg
# The web console's browser tests: Debian's Chromium and its driver (Selenium is given the
# driver's path and never downloads one); Chinese in screenshots uses fonts-wqy-microhei above.
need_browser=()
[ -x /usr/bin/chromium ] || need_browser+=(chromium)
[ -x /usr/bin/chromedriver ] || need_browser+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ] || [ ${#need_browser[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing system packages: ${need_apt[*]}"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [ ${#need_browser[@]} -gt 0 ]; then
    echo "setup: installing the headless browser: ${need_browser[*]}"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${need_browser[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
    echo "setup: installing Python packages"
    .venv/bin/pip install -q --upgrade pip >/dev/null
    .venv/bin/pip install -q -e '.[dev]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi

npm_stamp=node_modules/.installed-$(sha256sum package.json | cut -c1-16)
if [ ! -f "$npm_stamp" ]; then
    echo "setup: installing the MicroPython WebAssembly runtime (npm)"
    npm install --silent --no-audit --no-fund >/dev/null
    touch "$npm_stamp"
fi

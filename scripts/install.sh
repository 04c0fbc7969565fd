#!/usr/bin/env bash
# Set up a hall (or district) server on Debian from this checkout, in one command:
#
#   sudo bash scripts/install.sh --hall hall-1 --host gateway.hall.local --host 192.168.10.2
#
# System packages (mosquitto, python3-venv, logrotate; PostgreSQL with --postgres), a copy of
# this checkout in /opt/haochaping/src and its venv in /opt/haochaping/venv, then
# `python -m gateway.deploy.install`: users, directories, TLS, configs, the broker's accounts,
# the store, systemd units (started), log rotation, hcp-gateway/hcp-sim/flash.py in
# /usr/local/bin. Running it again upgrades: the code and venv are replaced, the units rewritten
# and restarted, and the config, certificates, broker accounts and store are kept.
#
# --root DIR: a dry run into DIR (no apt, no users, nothing started; every path in the files
# it writes lies inside DIR, so they can be used there as they are). Every option:
# docs/operations.md, or `bash scripts/install.sh --help`.
set -euo pipefail
# sudo and su keep a user's PATH on some set-ups: the system tools it runs are in the sbin dirs.
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
repo="$(cd "$(dirname "$0")/.." && pwd)"
# Options checked first (a typo costs nothing); only the standard library is needed for it.
python3 "$repo/gateway/deploy/install.py" --parse-only "$@" >/dev/null || exit 2

root=""
postgres=0
store_url=""
args=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root="${2:?--root needs a directory}"; shift 2 ;;
        --root=*) root="${1#--root=}"; shift ;;
        --postgres) postgres=1; shift ;;
        --store-url) store_url="${2:-}"; shift 2 ;;
        -h|--help) exec python3 "$repo/gateway/deploy/install.py" --help ;;
        *) shift ;;
    esac
done

if [ -z "$root" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install: run it as root (sudo bash scripts/install.sh ...), or give --root DIR" >&2
        exit 2
    fi
    need=()
    [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
    python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
    command -v logrotate >/dev/null 2>&1 || need+=(logrotate)
    command -v runuser >/dev/null 2>&1 || need+=(util-linux)
    command -v useradd >/dev/null 2>&1 || need+=(passwd)
    if [ "$postgres" -eq 1 ]; then
        command -v pg_dump >/dev/null 2>&1 || need+=(postgresql)
        [ -d /etc/postgresql ] || need+=(postgresql)
    elif [ -n "$store_url" ]; then
        command -v pg_dump >/dev/null 2>&1 || need+=(postgresql-client)
    fi
    if [ ${#need[@]} -gt 0 ]; then
        echo "install: installing system packages: ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    if [ "$postgres" -eq 1 ] && [ -d /run/systemd/system ]; then
        systemctl enable --now postgresql >/dev/null 2>&1 || true
    fi
else
    mkdir -p "$root"
    root="$(cd "$root" && pwd)"
    python3 -c 'import ensurepip, venv' 2>/dev/null || {
        echo "install: python3 cannot make a venv here (apt-get install python3-venv)" >&2; exit 1; }
fi

prefix="${root}/opt/haochaping"
src="$prefix/src"
venv="$prefix/venv"
mkdir -p "$prefix"
chmod 755 "$prefix"

# The code: a copy of this checkout without its local state (the venv, node modules, git).
echo "install: copying the code to $src"
rm -rf "$src.new"
mkdir -p "$src.new"
tar -C "$repo" --exclude=./.venv --exclude=./node_modules --exclude=./.git --exclude='__pycache__' \
    --exclude='*.egg-info' --exclude=./build --exclude=./dist --exclude=./.pytest_cache \
    --exclude=./.mypy_cache --exclude=./.ruff_cache -cf - . | tar -C "$src.new" -xf -
rm -rf "$src"
mv "$src.new" "$src"

if [ ! -x "$venv/bin/python" ]; then
    echo "install: creating the venv $venv"
    python3 -m venv "$venv"
fi
echo "install: installing the Python packages into $venv"
"$venv/bin/pip" install --quiet --upgrade pip >/dev/null
"$venv/bin/pip" install --quiet --upgrade "$src"

# The rest (users, files, units, services) is Python, from the venv just made.
exec "$venv/bin/python" -m gateway.deploy.install "${args[@]}"

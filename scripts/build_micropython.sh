#!/usr/bin/env bash
# Build the 32-bit unix MicroPython 1.27 the tests, the simulator's hall and the memory bench run
# (called by scripts/setup.sh; idempotent, cached under .cache/micropython/):
#   micropython-plain   the port with TLS (tls + micropython-lib's ssl) and asyncio frozen
#   micropython-frozen  the same with the firmware frozen in (firmware/manifest.py, port="unix")
# 32-bit (MICROPY_FORCE_32BIT, needs gcc-multilib) because that is the ESP32's word size: object
# and heap sizes are the device's. The frozen binary is rebuilt when the firmware, the protocol or
# a manifest changes: only the frozen content is recompiled and the binary relinked, from a copy
# of the plain build's objects.
#
# Source: /work/shared/vendor/micropython-1.27.0-src.tar.xz (or HCP_MICROPYTHON_TARBALL, or a
# shared/vendor/ beside the checkout), checked against its .sha256; without it, the upstream tag
# v1.27.0 with its micropython-lib and mbedtls submodules (needs git and access to GitHub).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CACHE=$REPO/.cache/micropython
mkdir -p "$CACHE"
# One build at a time (parallel test workers each check that the binaries are current).
exec 9>"$CACHE/.lock"
flock 9
JOBS=$(nproc 2>/dev/null || echo 2)
FLAGS=(MICROPY_FORCE_32BIT=1 MICROPY_PY_BTREE=0 MICROPY_PY_FFI=0 MICROPY_PY_SSL=1 MICROPY_SSL_MBEDTLS=1)

find_tarball() {
    local c
    for c in "${HCP_MICROPYTHON_TARBALL:-}" \
             "$REPO/../shared/vendor/micropython-1.27.0-src.tar.xz" \
             "$REPO/../../shared/vendor/micropython-1.27.0-src.tar.xz" \
             /work/shared/vendor/micropython-1.27.0-src.tar.xz; do
        if [ -n "$c" ] && [ -f "$c" ]; then echo "$c"; return 0; fi
    done
    return 1
}

SRC=$CACHE/src
if [ ! -f "$SRC/.ready" ]; then
    rm -rf "$SRC" "$CACHE/src.tmp"
    mkdir -p "$CACHE/src.tmp"
    if tarball=$(find_tarball); then
        want=$(cut -d' ' -f1 "$tarball.sha256")
        have=$(sha256sum "$tarball" | cut -d' ' -f1)
        if [ "$want" != "$have" ]; then
            echo "build_micropython: $tarball does not match its .sha256" >&2; exit 1
        fi
        echo "build_micropython: unpacking $(basename "$tarball")"
        tar -xJf "$tarball" -C "$CACHE/src.tmp" --strip-components=1
    else
        echo "build_micropython: no vendored tarball; cloning upstream v1.27.0"
        git clone -q --depth 1 --branch v1.27.0 https://github.com/micropython/micropython "$CACHE/src.tmp"
        git -C "$CACHE/src.tmp" submodule update -q --init --depth 1 lib/micropython-lib lib/mbedtls
    fi
    mv "$CACHE/src.tmp" "$SRC"
    touch "$SRC/.ready"
fi

# The toolchain: make and a gcc able to build 32-bit (gcc-multilib).
need=()
command -v make >/dev/null 2>&1 || need+=(make)
echo 'int main(void){return 0;}' | gcc -m32 -x c -o /dev/null - >/dev/null 2>&1 || need+=(gcc gcc-multilib)
if [ ${#need[@]} -gt 0 ]; then
    echo "build_micropython: installing ${need[*]} (the 32-bit build)"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

log=$CACHE/build.log
t0=$(date +%s)
plain_key=$(printf '%s\n' "${FLAGS[*]}" "$(cat "$REPO/simulator/mpy/manifest_plain.py")" | sha256sum | cut -c1-16)
if [ ! -x "$CACHE/micropython-plain" ] || [ "$(cat "$CACHE/plain.key" 2>/dev/null)" != "$plain_key" ]; then
    echo "build_micropython: building mpy-cross and the 32-bit unix port with TLS (about 2 min on 2 cores; log $log)"
    make -C "$SRC/mpy-cross" -j"$JOBS" >"$log" 2>&1 || { tail -20 "$log" >&2; exit 1; }
    rm -rf "$SRC/ports/unix/build-plain"
    make -C "$SRC/ports/unix" -j"$JOBS" "${FLAGS[@]}" BUILD=build-plain PROG=micropython-plain \
        FROZEN_MANIFEST="$REPO/simulator/mpy/manifest_plain.py" >>"$log" 2>&1 || { tail -20 "$log" >&2; exit 1; }
    cp "$SRC/ports/unix/build-plain/micropython-plain" "$CACHE/micropython-plain.tmp"
    mv "$CACHE/micropython-plain.tmp" "$CACHE/micropython-plain"
    echo "$plain_key" >"$CACHE/plain.key"
    rm -f "$CACHE/frozen.key"
fi

# The frozen binary's key: everything the manifests read.
frozen_key=$( (echo "$plain_key"; cat "$REPO/simulator/mpy/manifest_frozen.py" "$REPO/firmware/manifest.py" \
    "$REPO/flashtool/bundle.py" "$REPO/flashtool/fwid.py";
    find "$REPO/firmware" "$REPO/protocol" -name '*.py' -not -path '*/__pycache__/*' | LC_ALL=C sort \
    | while read -r f; do echo "$f"; cat "$f"; done) | sha256sum | cut -c1-16)
if [ ! -x "$CACHE/micropython-frozen" ] || [ "$(cat "$CACHE/frozen.key" 2>/dev/null)" != "$frozen_key" ]; then
    echo "build_micropython: freezing the firmware into the unix port (log $log)"
    # From the plain build's objects: only the frozen content is compiled, then the link.
    rm -rf "$SRC/ports/unix/build-frozen"
    cp -a "$SRC/ports/unix/build-plain" "$SRC/ports/unix/build-frozen"
    make -C "$SRC/ports/unix" -j"$JOBS" "${FLAGS[@]}" BUILD=build-frozen PROG=micropython-frozen \
        FROZEN_MANIFEST="$REPO/simulator/mpy/manifest_frozen.py" >>"$log" 2>&1 || { tail -20 "$log" >&2; exit 1; }
    cp "$SRC/ports/unix/build-frozen/micropython-frozen" "$CACHE/micropython-frozen.tmp"
    mv "$CACHE/micropython-frozen.tmp" "$CACHE/micropython-frozen"
    echo "$frozen_key" >"$CACHE/frozen.key"
    echo "build_micropython: done in $(( $(date +%s) - t0 )) s"
fi

#!/usr/bin/env python3
"""Copy the web console's npm assets (ECharts, htmx) into the Python package.

Halls run on intranets without internet: every script the console's pages load is served by
the gateway from gateway/console/static/vendor/, never from a CDN. The copies are committed
(the gateway is installed from the Python package alone, without node or npm on the hall
server); package.json pins the npm versions, `npm install` (scripts/setup.sh) fetches them,
and this script refreshes the copies after a version bump. tests/console/test_assets.py
fails when a copy differs from node_modules or MANIFEST.json is stale.

    .venv/bin/python scripts/vendor_console_assets.py [--check]
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENDOR = REPO / "gateway" / "console" / "static" / "vendor"
# (npm package, file in the package, name in vendor/)
FILES = (
    ("echarts", "dist/echarts.common.min.js", "echarts.common.min.js"),
    ("echarts", "LICENSE", "echarts.LICENSE.txt"),
    ("echarts", "NOTICE", "echarts.NOTICE.txt"),
    ("htmx.org", "dist/htmx.min.js", "htmx.min.js"),
    ("htmx.org", "LICENSE", "htmx.LICENSE.txt"),
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(node_modules: Path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for pkg, src, name in FILES:
        version = json.loads((node_modules / pkg / "package.json").read_text())["version"]
        out[name] = {"package": pkg, "version": version, "source": src,
                     "sha256": sha256(node_modules / pkg / src)}
    return out


def problems(node_modules: Path = REPO / "node_modules") -> list[str]:
    """What differs between vendor/ and node_modules (empty: in step)."""
    found = []
    want = manifest(node_modules)
    try:
        have = json.loads((VENDOR / "MANIFEST.json").read_text())
    except (OSError, ValueError):
        have = {}
    if have != want:
        found.append("vendor/MANIFEST.json does not describe node_modules")
    for name, entry in want.items():
        target = VENDOR / name
        if not target.exists() or sha256(target) != entry["sha256"]:
            found.append("vendor/%s differs from node_modules/%s/%s"
                         % (name, entry["package"], entry["source"]))
    return found


def main(argv: list[str]) -> int:
    node_modules = REPO / "node_modules"
    if "--check" in argv:
        found = problems(node_modules)
        for p in found:
            print(p, file=sys.stderr)
        return 1 if found else 0
    VENDOR.mkdir(parents=True, exist_ok=True)
    for pkg, src, name in FILES:
        shutil.copyfile(node_modules / pkg / src, VENDOR / name)
    (VENDOR / "MANIFEST.json").write_text(json.dumps(manifest(node_modules), indent=1, sort_keys=True) + "\n")
    print("vendored %d files into %s" % (len(FILES), VENDOR.relative_to(REPO)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

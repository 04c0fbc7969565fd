"""Provisioning: bring a board's firmware set and config to the wanted state, all or nothing.

Order (docs/cli-flash.md, "Why a cut cannot leave a half-done board"):
 1. raw REPL with a soft reset: /boot.py finishes any switch a previous run committed;
    anything still pending is finished from here, staged leftovers are removed.
 2. compare SHA-256 computed on the board with the wanted set; only changed files move.
 3. stage: each changed file is written as <path>.hcpnew and its hash checked on the board.
    A cut here leaves the old set untouched (staged files are junk, removed next run).
 4. register the board's secret with the gateway (before the board uses it).
 5. commit: write /.hcp/switch.json.tmp, rename to /.hcp/switch.json.  This rename is the one
    atomic commit point.
 6. apply the switch one idempotent step per exec (boot.py first, then main.py, then the rest,
    then stale deletions, then the manifest).  A cut here is finished by /boot.py at the next
    reset, or by the next flash.py run, before anything imports the firmware.
"""

from __future__ import annotations

import base64
import json
import pathlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flashtool import bundle as bundle_mod
from flashtool import device_config
from flashtool.errors import FlashError
from flashtool.link import Link

SWITCH = "/.hcp/switch.json"
MANIFEST = "/.hcp/manifest.json"
STAGED_SUFFIX = ".hcpnew"
CHUNK = 3072  # raw bytes per write exec: small enough for an ESP32 heap, big enough to be quick
MANAGED_DIRS = ("/firmware/", "/protocol/")

Progress = Callable[[int], None]


@dataclass
class DeviceInfo:
    name: str
    version: tuple[int, int, int]
    mpy: int | None
    machine: str
    uid: str | None
    frozen_fw: str | None = None  # the firmware frozen into the board's image (firmware/manifest.py)

    @property
    def version_text(self) -> str:
        return ".".join(str(x) for x in self.version)


@dataclass
class DeviceState:
    hashes: dict[str, str]
    config: dict[str, Any] | None
    manifest: dict[str, Any] | None


@dataclass
class Plan:
    files: dict[str, bytes]  # the wanted set (without config)
    upload: list[str]  # paths to stage (config included when it changed)
    delete: list[str]  # stale managed files
    manifest: str  # new manifest text
    manifest_changed: bool
    config: dict[str, Any]
    fw: str
    warnings: list[str] = field(default_factory=list)

    @property
    def upload_bytes(self) -> int:
        return sum(len(self.files[p]) for p in self.upload)

    @property
    def nothing_to_do(self) -> bool:
        return not self.upload and not self.delete and not self.manifest_changed


@dataclass
class Result:
    device_id: str
    fw: str
    uploaded: list[str]
    deleted: list[str]
    finished_pending: int
    registered: bool


def read_info(link: Link) -> DeviceInfo:
    raw = link.eval("_hcp_info()")
    if not isinstance(raw, dict) or raw.get("name") != "micropython":
        raise FlashError(f"{link.port}: the board does not run MicroPython ({raw!r:.60})")
    frozen = raw.get("frozen_fw")
    return DeviceInfo(
        raw["name"],
        tuple(raw["version"]),
        raw.get("mpy"),
        raw.get("machine", ""),
        raw.get("uid"),
        frozen if isinstance(frozen, str) and frozen else None,
    )


def read_state(link: Link) -> DeviceState:
    paths = link.eval("print(repr(_hcp_files()))")
    hashes = link.eval(f"_hcp_hashes({paths!r})", timeout=30) if paths else {}
    cfg_raw = link.eval("_hcp_read('/config.json')")
    man_raw = link.eval(f"_hcp_read({MANIFEST!r})")
    manifest = None
    if man_raw is not None:
        try:
            manifest = json.loads(man_raw)
        except ValueError:
            manifest = None
    return DeviceState(hashes, device_config.parse_existing(cfg_raw), manifest)


def finish_pending(link: Link) -> int:
    """Finish a committed switch (if any), one step per exec; remove staged leftovers."""
    link.exec("_HCP_HOST = 1\n" + bundle_mod.BOOT_PY.decode())
    steps = 0
    while link.eval("print(switch_step())") == 1:
        steps += 1
    paths = link.eval("print(repr(_hcp_files()))")
    junk = [p for p in paths if p.endswith(STAGED_SUFFIX) or p.endswith(".tmp")]
    if junk:
        link.exec(f"_hcp_remove_leftovers({junk!r})")
    return steps


def make_manifest(files: dict[str, bytes], config: dict[str, Any], fw: str) -> str:
    identity = {k: config[k] for k in device_config.IDENTITY_KEYS}
    doc = {
        "v": 1,
        "fw": fw,
        "device_id": config["device_id"],
        "files": {p: bundle_mod.sha256(d) for p, d in sorted(files.items())},
        "identity": bundle_mod.sha256(device_config.encode(identity)),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n"


def plan(bundle: bundle_mod.Bundle, state: DeviceState, config: dict[str, Any]) -> Plan:
    fw = bundle.fw_version()
    wanted = dict(bundle.files)
    upload = sorted(p for p, d in wanted.items() if state.hashes.get(p) != bundle_mod.sha256(d))
    # Config is compared by content: the firmware may rewrite the file in another key order.
    config_changed = state.config != config
    manifest = make_manifest(wanted, config, fw)
    files = dict(wanted)
    if config_changed:
        files["/config.json"] = device_config.encode(config)
        upload.append("/config.json")
    delete = sorted(
        p
        for p in state.hashes
        if p.startswith(MANAGED_DIRS) and p not in wanted and not p.endswith(STAGED_SUFFIX)
    )
    # Even a manifest-only change goes through the switch, so the manifest stays truthful.
    manifest_changed = state.manifest is None or (
        json.dumps(state.manifest, sort_keys=True, separators=(",", ":")) + "\n" != manifest
    )
    return Plan(files, upload, delete, manifest, manifest_changed, config, fw)


def _switch_order(paths: list[str]) -> list[str]:
    first = [p for p in ("/boot.py", "/main.py") if p in paths]
    return first + sorted(p for p in paths if p not in first)


def stage(link: Link, p: Plan, progress: Progress) -> None:
    """Write every changed file as <path>.hcpnew and check its hash on the board."""
    for path in p.upload:
        data = p.files[path]
        tmp = path + STAGED_SUFFIX
        link.exec(f"_hcp_mkdirs({tmp!r})\n_hcp_f = open({tmp!r}, 'wb')")
        for i in range(0, max(len(data), 1), CHUNK):
            chunk = data[i : i + CHUNK]
            b64 = base64.b64encode(chunk).decode()
            link.exec(f"_hcp_f.write(binascii.a2b_base64(b{b64!r}))")
            progress(len(chunk))
        link.exec("_hcp_f.close()\ndel _hcp_f")
    staged = [path + STAGED_SUFFIX for path in p.upload]
    if staged:
        got = link.eval(f"_hcp_hashes({staged!r})", timeout=30)
        for path in p.upload:
            if got.get(path + STAGED_SUFFIX) != bundle_mod.sha256(p.files[path]):
                raise FlashError(f"{path}: the board stored different bytes than sent (flash worn or full?)")


def commit_and_apply(link: Link, p: Plan) -> None:
    puts = [[path + STAGED_SUFFIX, path] for path in _switch_order(p.upload)]
    doc = json.dumps({"v": 1, "put": puts, "del": p.delete, "manifest": p.manifest}, separators=(",", ":"))
    tmp = SWITCH + ".tmp"
    b64 = base64.b64encode(doc.encode()).decode()
    link.exec(
        f"_hcp_mkdirs({tmp!r})\n"
        f"with open({tmp!r}, 'wb') as _f:\n    _f.write(binascii.a2b_base64(b{b64!r}))\n"
        f"os.rename({tmp!r}, {SWITCH!r})"
    )
    link.exec("_HCP_HOST = 1\n" + bundle_mod.BOOT_PY.decode())
    while link.eval("print(switch_step())") == 1:
        pass


def check_against(state: DeviceState, expected: dict[str, str]) -> list[str]:
    """Drift lines between a board's hashes and the expected {path: sha256} (managed paths only)."""
    drift = []
    for path, want in sorted(expected.items()):
        got = state.hashes.get(path)
        if got is None:
            drift.append(f"missing  {path}")
        elif got != want:
            drift.append(f"changed  {path}")
    for path in sorted(state.hashes):
        if path.startswith(MANAGED_DIRS) and path not in expected:
            drift.append(f"extra    {path}")
        if path.endswith(STAGED_SUFFIX) or path == SWITCH:
            drift.append(f"pending  {path} (an interrupted provision: run provision again)")
    return drift


def save_label(path: pathlib.Path | None, line: str) -> None:
    if path is not None:
        with path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")

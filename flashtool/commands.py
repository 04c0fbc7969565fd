"""What each flash.py command does, independent of click (flash.py only parses options).

Output goes through a `Console` so flash.py can use click (echo, progress bar) and tests can
call these functions directly.
"""

from __future__ import annotations

import contextlib
import pathlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from flashtool import bundle as bundle_mod
from flashtool import device_config, provision, registry
from flashtool.errors import FlashError
from flashtool.link import Link


class Console(Protocol):
    def info(self, text: str) -> None: ...
    def warn(self, text: str) -> None: ...
    def progress(
        self, total: int, label: str
    ) -> contextlib.AbstractContextManager[Callable[[int], None]]: ...


class QuietConsole:
    """Collects lines; used by tests and the bench."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, text: str) -> None:
        self.lines.append(text)

    def warn(self, text: str) -> None:
        self.lines.append("warning: " + text)

    @contextlib.contextmanager
    def progress(self, total: int, label: str) -> Iterator[Callable[[int], None]]:
        yield lambda n: None


@dataclass
class ProvisionOptions:
    port: str
    hall: str
    device_id: str
    wifi: str
    wifi_password: str
    broker: str
    gateway_url: str
    gateway_token: str
    source: bool = False  # upload .py instead of .mpy
    rotate_secrets: bool = False
    timeout: float = 3.0
    baud: int = 115200
    source_root: pathlib.Path = bundle_mod.REPO  # where firmware/ and protocol/ are read from
    ca: str | None = None  # hall CA (PEM): written into the config; trusted for an https gateway


def _choose_bundle(
    info: provision.DeviceInfo, source: bool, con: Console, root: pathlib.Path = bundle_mod.REPO
) -> bundle_mod.Bundle:
    if info.frozen_fw:
        if source:
            con.warn("--source ignored: the firmware is frozen into this board's image")
        con.info(f"firmware {info.frozen_fw} is frozen into the board's image: uploading the config only")
        return bundle_mod.frozen(info.frozen_fw)
    if source:
        con.warn("uploading .py sources (--source): slower imports and more RAM on the board")
        return bundle_mod.build(compiled=False, root=root)
    want = bundle_mod.mpy_cross_abi()
    have = bundle_mod.device_abi(info.mpy)
    if have != want:
        shown = "none (no .mpy support)" if have is None else f"v{have[0]}.{have[1]}"
        raise FlashError(
            f"the board runs MicroPython {info.version_text} (bytecode {shown}) but our mpy-cross emits "
            f"v{want[0]}.{want[1]} (MicroPython 1.27): flash MicroPython 1.27 first (flash.py firmware), "
            f"or pass --source to upload .py files"
        )
    return bundle_mod.build(compiled=True, root=root)


def run_provision(o: ProvisionOptions, con: Console) -> provision.Result:
    broker_host, broker_port = device_config.parse_broker(o.broker)
    if not o.hall:
        raise FlashError("--hall must not be empty")
    registry.check_url(o.gateway_url)
    if o.device_id != "auto":
        device_config.device_id_for(o.device_id, None)  # bad ids fail before the board is touched
    started = time.monotonic()
    # A wrong token or a gateway out of reach fails here, before a byte goes to the board.
    registry.check_access(o.gateway_url, o.gateway_token, ca=o.ca)
    with Link(o.port, o.baud, o.timeout) as link:
        link.enter_raw(soft_reset=True)
        info = provision.read_info(link)
        con.info(f"board: MicroPython {info.version_text} ({info.machine}), unique id {info.uid or 'none'}")
        finished = provision.finish_pending(link)
        if finished:
            con.warn(f"finished an interrupted provision ({finished} steps)")
        dev_id = device_config.device_id_for(o.device_id, info.uid)
        bundle = _choose_bundle(info, o.source, con, o.source_root)
        state = provision.read_state(link)
        ident = device_config.Identity(dev_id, o.hall, o.wifi, o.wifi_password, broker_host, broker_port,
                                       o.ca)
        cfg = device_config.build(ident, state.config, o.rotate_secrets)
        plan = provision.plan(bundle, state, cfg)
        if plan.nothing_to_do:
            con.info(f"{dev_id}: firmware {plan.fw} and config already in place; nothing to upload")
        else:
            con.info(
                f"{dev_id}: {len(plan.upload)} files to upload ({plan.upload_bytes} bytes), "
                f"{len(plan.delete)} to remove"
            )
            with con.progress(plan.upload_bytes, "uploading") as step:
                provision.stage(link, plan, step)
        # Registered before the commit: the board never runs with a secret the gateway lacks.
        status = registry.register(
            o.gateway_url, o.gateway_token, dev_id, cfg["secret"], cfg["broker"]["password"], plan.fw,
            ca=o.ca,
        )
        con.info(f"{dev_id}: {'registered' if status == 201 else 're-registered'} with the gateway")
        if not plan.nothing_to_do:
            provision.commit_and_apply(link, plan)
        after = provision.read_state(link)
        expected = {p: bundle_mod.sha256(d) for p, d in bundle.files.items()}
        drift = provision.check_against(after, expected)
        if after.config != cfg:
            drift.append("changed  /config.json")
        if drift:
            raise FlashError(f"{dev_id}: read-back after provisioning differs: {'; '.join(drift)}")
    con.info(f"provisioned in {time.monotonic() - started:.1f}s")
    return provision.Result(dev_id, plan.fw, plan.upload, plan.delete, finished, True)


@dataclass
class VerifyReport:
    device_id: str | None
    fw: str | None
    files: int
    drift: list[str]
    frozen: bool = False  # the firmware is frozen into the board's image


def run_verify(port: str, timeout: float = 3.0, baud: int = 115200) -> VerifyReport:
    with Link(port, baud, timeout) as link:
        # No soft reset: verify changes nothing, not even by letting /boot.py finish a switch.
        link.enter_raw(soft_reset=False)
        info = provision.read_info(link)
        state = provision.read_state(link)
    drift: list[str] = []
    man = state.manifest
    if man is None or not isinstance(man.get("files"), dict):
        return VerifyReport(None, None, 0, ["missing  /.hcp/manifest.json (never provisioned by flash.py?)"])
    drift += provision.check_against(state, man["files"])
    if info.frozen_fw is not None and info.frozen_fw != man.get("fw"):
        drift.append(f"firmware frozen image runs {info.frozen_fw}, provisioned with {man.get('fw')}")
    cfg = state.config
    if cfg is None:
        drift.append("missing  /config.json (or not valid JSON)")
    else:
        if cfg.get("device_id") != man.get("device_id"):
            drift.append(
                f"config   device_id {cfg.get('device_id')!r} != provisioned {man.get('device_id')!r}"
            )
        if not isinstance(cfg.get("secret"), str) or not device_config.HEX64.fullmatch(cfg["secret"]):
            drift.append("config   secret is not 64 hex characters")
        try:
            identity: dict[str, Any] = {k: cfg[k] for k in device_config.IDENTITY_KEYS}
        except KeyError as e:
            drift.append(f"config   key {e.args[0]!r} missing")
        else:
            if bundle_mod.sha256(device_config.encode(identity)) != man.get("identity"):
                drift.append(
                    "config   identity keys (hall, secret, wifi, broker) differ from what was provisioned"
                )
    fw = info.frozen_fw or man.get("fw")
    return VerifyReport(man.get("device_id"), fw, len(man["files"]), drift, info.frozen_fw is not None)

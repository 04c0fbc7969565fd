"""`hcp-sim device`: one evaluator from a provisioned flash directory, driven on standard input.

The device is an MpDevice (a real MicroPython process, unix port) or a VirtualDevice (the firmware
in this process), built from the directory's config.json as flash.py wrote it: it connects to the
broker that config names, with its own credentials. Each change of its state is printed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from simulator import unixport
from simulator.mpdevice import ControlServer, MpDevice
from simulator.vdevice import VirtualDevice

HELP = "commands: press N (0-4), wifi down, wifi up, heap, quit"


def _device(root: Path, runtime: str, build: str, control: ControlServer | None) -> Any:
    try:
        cfg = json.loads((root / "config.json").read_text(encoding="utf-8"))
        broker = cfg["broker"]
        args = (cfg["device_id"], root, cfg["secret"], broker["host"], int(broker.get("port", 1883)),
                broker.get("password", ""))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise click.ClickException("%s/config.json is not a provisioned device config (%s: %s)"
                                   % (root, type(e).__name__, e)) from None
    if control is not None:
        if build == "mpy":
            unixport.install_mpy_set(root)
        return MpDevice(*args, control=control, build=build)
    return VirtualDevice(*args)


async def run_device(root: Path, runtime: str, build: str, as_json: bool, now: Callable[[], str],
                     emit_json: Callable[[Any], None]) -> int:
    control = ControlServer() if runtime == "micropython" else None
    if control is not None:
        unixport.binary(build)            # a clear error before anything starts
        await control.start()
    dev = _device(root, runtime, build, control)

    def say(event: str, **fields: Any) -> None:
        if as_json:
            emit_json({"at": now(), "event": event, **fields})
        else:
            click.echo("%s %s %s" % (now(), event, " ".join("%s=%s" % kv for kv in fields.items())))

    try:
        await dev.power_on()
        say("booted", device=dev.device_id, runtime=runtime, fw=getattr(dev, "fw_version", "") or "source")
        if not as_json:
            click.echo(HELP, err=True)
        watch = asyncio.create_task(_watch(dev, say))
        try:
            while True:
                line = await asyncio.to_thread(sys.stdin.readline)
                if not line:
                    return 0
                words = line.split()
                if not words:
                    continue
                if words[0] == "quit":
                    return 0
                if words[0] == "press" and len(words) == 2 and words[1].isdigit() and int(words[1]) < 5:
                    r = await dev.press(int(words[1]))
                    say("press", button=int(words[1]), accepted=r.accepted, record=r.record_id or "-",
                        kind=r.kind or "-")
                elif words[:2] in (["wifi", "down"], ["wifi", "up"]):
                    dev.set_wifi(words[1] == "up")
                    say("wifi", up=words[1] == "up")
                elif words == ["heap"] and isinstance(dev, MpDevice):
                    alloc, free = await dev.heap()
                    say("heap", alloc=alloc, free=free, firmware=alloc - dev.heap_base)
                else:
                    say("unknown", line=line.strip(), help=HELP)
        finally:
            watch.cancel()
    finally:
        await dev.stop()
        if control is not None:
            await control.stop()


async def _watch(dev: Any, say: Callable[..., None]) -> None:
    last = None
    while True:
        st = (dev.state, dev.online, dev.journal_depth(), dev.invitation)
        if st != last:
            last = st
            say("state", state=st[0], online=st[1], journal=st[2], invitation=st[3] or "-")
        await asyncio.sleep(0.1)

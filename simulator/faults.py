"""Faults: parse them (command line, scenario file, random), then play them against a run.

Spec syntax (one fault per --fault option; times are real seconds from the start of the
citizen phase, suffixes ms / s / m):

    broker-restart@30s                mosquitto stopped and started again on the same port
    gateway-kill@45s[+3s]             gateway SIGKILLed, restarted after 3 s (default 2 s)
    power-cut@20s[+2s][:TARGET]       device loses power mid-write, powers up after 2 s
    wifi-loss@10s+15s[:TARGET]        Wi-Fi down for 15 s; TARGET "all" = the whole hall
    clock-unsynced@0s[:TARGET]        device clock loses its sync (w=0 until the gateway re-syncs)
    platform-outage@5s+20s            provincial platform answers 503 for 20 s

TARGET is a device index (0-based), a device id, "random" (default) or "all" (wifi-loss only).

A scenario file (TOML) lists the same things:

    [[fault]]
    kind = "wifi-loss"
    at = "10s"
    duration = "15s"
    target = "all"
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

KINDS = ("broker-restart", "gateway-kill", "power-cut", "wifi-loss", "clock-unsynced", "platform-outage")
DEFAULT_DURATION_S = {
    "broker-restart": 0.0,
    "gateway-kill": 2.0,
    "power-cut": 2.0,
    "wifi-loss": 10.0,
    "clock-unsynced": 0.0,
    "platform-outage": 10.0,
}
TARGETED = ("power-cut", "wifi-loss", "clock-unsynced")


# What a fault means for the hall, in one line each (printed when it happens).
CONSEQUENCE = {
    "broker-restart": "every device and the gateway lose MQTT; devices keep journaling presses and re-send "
                      "unacknowledged ones when they reconnect",
    "gateway-kill": "the gateway dies without warning; the broker queues what devices send, the window "
                    "system retries its invitations, and the restarted gateway acks what it stores",
    "power-cut": "the device stops mid-whatever-it-was-doing; on power-up it rescans its journal, starts a "
                 "new boot number and re-sends what was not acknowledged",
    "wifi-loss": "devices are cut off; presses are still answered and journaled, and delivered after the "
                 "Wi-Fi comes back",
    "clock-unsynced": "the device's records carry no wall time until it re-syncs; the gateway reconstructs "
                      "press times from uptime",
    "platform-outage": "the provincial platform refuses everything; a push now fails and the next one "
                       "delivers what is left, each record once",
}


class FaultSpecError(ValueError):
    """A fault spec or scenario file that cannot be understood; the message says what is wrong."""


@dataclass(frozen=True)
class Fault:
    kind: str
    at_s: float
    duration_s: float
    target: str = "random"

    def describe(self) -> str:
        what = {
            "broker-restart": "restart the MQTT broker",
            "gateway-kill": "kill -9 the gateway, restart it %.0f s later" % self.duration_s,
            "power-cut": "cut power to device %s for %.0f s" % (self.target, self.duration_s),
            "wifi-loss": "cut Wi-Fi of %s for %.0f s" % (
                "the whole hall" if self.target == "all" else "device " + self.target, self.duration_s),
            "clock-unsynced": "make the clock of device %s lose its sync" % self.target,
            "platform-outage": "take the provincial platform down for %.0f s" % self.duration_s,
        }[self.kind]
        return "t+%.0fs: %s" % (self.at_s, what)


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*")
_SPEC = re.compile(r"(?P<kind>[a-z-]+)(?:@(?P<at>[0-9.]+(?:ms|s|m)?))?(?:\+(?P<dur>[0-9.]+(?:ms|s|m)?))?"
                   r"(?::(?P<target>[A-Za-z0-9_-]+))?")


def parse_duration(text: str | int | float) -> float:
    """'30s' -> 30.0, '2m' -> 120.0, '500ms' -> 0.5, 12 -> 12.0 (seconds)."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise FaultSpecError(f"duration {text} must be >= 0")
        return float(text)
    m = _DURATION.fullmatch(str(text))
    if not m:
        raise FaultSpecError(f"{text!r} is not a duration like 30s, 2m or 500ms")
    value = float(m.group(1))
    unit = m.group(2) or "s"
    return value / 1000 if unit == "ms" else value * 60 if unit == "m" else value


def _make(kind: str, at: str | float | None, dur: str | float | None, target: str | None) -> Fault:
    if kind not in KINDS:
        raise FaultSpecError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")
    if target is not None and kind not in TARGETED:
        raise FaultSpecError(f"fault {kind} takes no device target")
    if target == "all" and kind != "wifi-loss":
        raise FaultSpecError(f"target 'all' is only for wifi-loss, not {kind}")
    return Fault(kind=kind,
                 at_s=parse_duration(at) if at is not None else 0.0,
                 duration_s=parse_duration(dur) if dur is not None else DEFAULT_DURATION_S[kind],
                 target=target if target is not None else "random")


def parse_spec(spec: str) -> Fault:
    """One command-line fault: 'wifi-loss@10s+15s:all' (see the module docstring)."""
    m = _SPEC.fullmatch(spec.strip())
    if not m:
        raise FaultSpecError(
            f"fault {spec!r}: expected KIND@TIME[+DURATION][:TARGET], e.g. broker-restart@30s")
    return _make(m.group("kind"), m.group("at"), m.group("dur"), m.group("target"))


def load_scenario(path: str | Path) -> list[Fault]:
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = tomllib.load(f)
    except OSError as e:
        raise FaultSpecError(f"scenario file {p}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise FaultSpecError(f"scenario file {p} is not valid TOML: {e}") from None
    entries = raw.get("fault", [])
    if not isinstance(entries, list):
        raise FaultSpecError(f"scenario file {p}: [[fault]] must be an array of tables")
    faults = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or "kind" not in e:
            raise FaultSpecError(f"scenario file {p}: fault #{i + 1} needs a kind")
        unknown = set(e) - {"kind", "at", "duration", "target"}
        if unknown:
            raise FaultSpecError(f"scenario file {p}: fault #{i + 1} has unknown keys {sorted(unknown)}")
        target = e.get("target")
        faults.append(_make(str(e["kind"]), e.get("at"), e.get("duration"),
                            None if target is None else str(target)))
    return faults


def random_faults(count: int, run_s: float, rng: random.Random,
                  kinds: tuple[str, ...] = KINDS) -> list[Fault]:
    """count faults of random kinds at random times in the middle 80 % of the run."""
    out = []
    for _ in range(count):
        kind = rng.choice(kinds)
        at = rng.uniform(0.1 * run_s, 0.7 * run_s)
        dur = DEFAULT_DURATION_S[kind]
        if kind in ("wifi-loss", "platform-outage"):
            dur = rng.uniform(0.05, 0.2) * run_s
        target = None
        if kind in TARGETED:
            target = "all" if kind == "wifi-loss" and rng.random() < 0.3 else "random"
        out.append(_make(kind, at, dur, target))
    return sorted(out, key=lambda f: f.at_s)


class FaultTarget(Protocol):
    """What a run offers to the fault player (simulator.hall.Hall implements it)."""

    async def restart_broker(self) -> None: ...
    async def kill_gateway(self) -> None: ...
    async def start_gateway(self) -> None: ...
    async def power_off(self, device: str) -> None: ...
    async def power_on(self, device: str) -> None: ...
    async def wifi(self, devices: list[str], up: bool) -> None: ...
    async def unsync_clock(self, device: str) -> None: ...
    async def platform_outage(self, down: bool) -> None: ...
    def device_ids(self) -> list[str]: ...
    def note(self, text: str) -> None: ...


@dataclass
class FaultEvent:
    fault: Fault
    devices: list[str]
    started: float          # real seconds since the player started
    ended: float | None = None
    error: str | None = None


class FaultPlayer:
    """Runs faults at their times against a FaultTarget; remembers what happened when."""

    def __init__(self, faults: list[Fault], target: FaultTarget, rng: random.Random) -> None:
        self.faults = sorted(faults, key=lambda f: f.at_s)
        self.target = target
        self.rng = rng
        self.events: list[FaultEvent] = []
        self._t0 = 0.0

    def resolve(self, fault: Fault) -> list[str]:
        ids = self.target.device_ids()
        if fault.kind not in TARGETED:
            return []
        t = fault.target
        if t == "all":
            return list(ids)
        if t == "random":
            return [self.rng.choice(ids)]
        if t.isdigit():
            i = int(t)
            if i >= len(ids):
                raise FaultSpecError(f"fault {fault.kind}: device index {i} but only {len(ids)} devices")
            return [ids[i]]
        if t not in ids:
            raise FaultSpecError(f"fault {fault.kind}: no device {t!r}")
        return [t]

    def check(self) -> None:
        """Resolve every target before the run starts, so a bad target fails early."""
        for f in self.faults:
            if f.target != "random":
                self.resolve(f)

    async def run(self) -> None:
        self._t0 = time.monotonic()
        await asyncio.gather(*(self._play(f) for f in self.faults))

    async def _play(self, f: Fault) -> None:
        await asyncio.sleep(max(0.0, f.at_s - (time.monotonic() - self._t0)))
        devices = self.resolve(f)
        ev = FaultEvent(f, devices, time.monotonic() - self._t0)
        self.events.append(ev)
        self.target.note("fault: " + f.describe() + (" -> " + ", ".join(devices[:5]) if devices and
                                                     f.target != "all" else ""))
        t = self.target
        t.note("  (%s)" % CONSEQUENCE[f.kind])
        try:
            if f.kind == "broker-restart":
                await t.restart_broker()
            elif f.kind == "gateway-kill":
                await t.kill_gateway()
                await asyncio.sleep(f.duration_s)
                await t.start_gateway()
            elif f.kind == "power-cut":
                for d in devices:
                    await t.power_off(d)
                await asyncio.sleep(f.duration_s)
                for d in devices:
                    await t.power_on(d)
            elif f.kind == "wifi-loss":
                await t.wifi(devices, up=False)
                await asyncio.sleep(f.duration_s)
                await t.wifi(devices, up=True)
            elif f.kind == "clock-unsynced":
                for d in devices:
                    await t.unsync_clock(d)
            elif f.kind == "platform-outage":
                await t.platform_outage(True)
                await asyncio.sleep(f.duration_s)
                await t.platform_outage(False)
        except Exception as e:    # a fault that cannot be applied is reported, the run goes on
            ev.error = "%s: %s" % (type(e).__name__, e)
            t.note("fault %s failed: %s" % (f.kind, ev.error))
        ev.ended = time.monotonic() - self._t0
        t.note("fault over: %s" % f.kind)

    def last_end(self) -> float:
        return max((f.at_s + f.duration_s for f in self.faults), default=0.0)

"""The firmware's TLS path to mosquitto, on a real MicroPython: the 32-bit unix port built with
MICROPY_PY_SSL=1 MICROPY_SSL_MBEDTLS=1 (the `tls` module an ESP32 has), against a real mosquitto
TLS listener whose certificate a test CA signed; the CA travels in the device's config.json
(broker.ca, PEM) as flash.py writes it, and the device checks the broker's certificate against it.

Certificates come from the code of `hcp-gateway tls init` (gateway/tls.py, via simulator/pki.py:
a CA and a server certificate for 127.0.0.1, and an unrelated CA). The heap with TLS on is
printed and bounded here (the budget: docs/firmware.md, "TLS").
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from simulator.broker import MOSQUITTO, Mosquitto, _find
from simulator.mpdevice import ControlServer, MpDevice
from simulator.netutil import free_port, wait_port
from simulator.pki import make_pki, tls_listener_conf
from simulator.vdevice import VirtualDevice

SECRET = "ab" * 32
TLS_HEAP_BOUND = 32 * 1024      # the frozen image connected over TLS (measured 21.5 KB, 2026-12-06)
TLS_COST_BOUND = 8 * 1024       # what TLS adds to a connected device's live heap (measured ~2.5 KB)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, dict[str, Path]]]:
    """mosquitto with one TLS listener on 127.0.0.1 (anonymous: this test is about the transport)."""
    pki = make_pki(tmp_path / "pki")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(tls_listener_conf(port, pki, tmp_path / "mosquitto.log"))
    proc = subprocess.Popen([_find(MOSQUITTO, "mosquitto"), "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port("127.0.0.1", port, time.monotonic() + 10, proc)
        yield port, pki
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
async def control() -> AsyncIterator[ControlServer]:
    c = ControlServer()
    await c.start()
    yield c
    await c.stop()


async def _online(dev: MpDevice | VirtualDevice, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if dev.online:
            return True
        await asyncio.sleep(0.05)
    return False


async def _connected_heap(dev: MpDevice) -> tuple[int, int]:
    dev.provision()
    await dev.power_on()
    try:
        assert await _online(dev, 20), (dev.root / "console.log").read_text()[-2000:]
        await asyncio.sleep(0.5)               # hello, status: the connection settled
        alloc, free = await dev.heap()
        return alloc - dev.heap_base, free
    finally:
        await dev.stop()


async def test_tls_micropython_unix_port_connects_with_the_ca_from_its_config(
        tmp_path: Path, tls_broker: tuple[int, dict[str, Path]], broker: Mosquitto,
        control: ControlServer) -> None:
    """Both builds connect over TLS; the heap connected over TLS against over plain TCP (the same
    device, the same firmware, an ESP32's heap): the TLS budget."""
    port, pki = tls_broker
    ca = pki["ca"].read_text()
    for build in ("frozen", "mpy"):
        plain = await _connected_heap(MpDevice("dev-a", tmp_path / build / "plain", SECRET, broker.host,
                                               broker.port, "pa", control=control, build=build))
        over_tls = await _connected_heap(MpDevice("dev-a", tmp_path / build / "tls", SECRET, "127.0.0.1",
                                                  port, "pw", control=control, build=build, broker_ca=ca))
        print("%s: connected, live heap %d B over TCP, %d B over TLS (+%d B); free %d B / %d B"
              % (build, plain[0], over_tls[0], over_tls[0] - plain[0], plain[1], over_tls[1]))
        assert over_tls[0] - plain[0] <= TLS_COST_BOUND
        if build == "frozen":
            assert over_tls[0] <= TLS_HEAP_BOUND


async def test_tls_micropython_refuses_a_broker_its_ca_did_not_sign(
        tmp_path: Path, tls_broker: tuple[int, dict[str, Path]], control: ControlServer) -> None:
    port, pki = tls_broker
    dev = MpDevice("hcp-tls-bad", tmp_path / "bad", SECRET, "127.0.0.1", port, "pw", control=control,
                   broker_ca=pki["other"].read_text())
    dev.provision()
    await dev.power_on()
    try:
        assert not await _online(dev, 4)
        console = (tmp_path / "bad" / "console.log").read_text()
        assert "mqtt: connection 0 ended: oserror" in console or "ended:" in console, console[-2000:]
        assert dev.crashes == 0
    finally:
        await dev.stop()


async def test_tls_cpython_host_hal_connects_with_the_same_config(
        tmp_path: Path, tls_broker: tuple[int, dict[str, Path]]) -> None:
    """The simulator's in-process devices (host HAL on CPython) take the same config.json."""
    port, pki = tls_broker
    dev = VirtualDevice("hcp-tls-py", tmp_path / "py", SECRET, "127.0.0.1", port, "pw")
    dev.provision()
    import json
    cfg = json.loads((tmp_path / "py" / "config.json").read_text())
    cfg["broker"]["ca"] = pki["ca"].read_text()
    (tmp_path / "py" / "config.json").write_text(json.dumps(cfg))
    await dev.power_on()
    try:
        assert await _online(dev, 20)
    finally:
        await dev.stop()

"""A simulated evaluator that is a real MicroPython process: the unchanged firmware on the 32-bit
unix port (simulator/mpy/device.py on firmware/hal/unix.py), with its own directory as flash, real
sockets to the real broker, and an ESP32's heap (-X heapsize, simulator/unixport.py).

Same interface as simulator/vdevice.py's VirtualDevice (the hall, the faults and the checker use
either), driven over the runner's control channel (one TCP connection per device to a
ControlServer on 127.0.0.1):
- a press is a button pressed in the HAL; the firmware's own 10 ms loop scans it, and the runner
  reports the record it made and the tone it sounded;
- a power cut is SIGKILL of the process (the supply going away, wherever the code was), then a
  torn half record after the last complete one in the journal segment; power on starts a new
  process on the same directory (new boot number, journal re-scanned, unacked records re-sent);
- the gateway's reboot command ends the process with exit 3 and it is started again ("soft").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from protocol.grades import DEFAULT_BUTTONS
from protocol.ids import record_id
from simulator import unixport
from simulator.vdevice import FEEDBACK_EXTRA_HZ, FEEDBACK_OK_HZ, PressResult, write_config

RUNNER = Path(__file__).resolve().parent / "mpy" / "device.py"
REC_SIZE = 64           # firmware/journal.py's record size (a storage format)
EXIT_REBOOT = 3
EXIT_CANNOT_START = 4   # no usable config.json: the runner stops, as the device stops at its REPL
DEBOUNCE_S = 0.065      # after the release: config debounce_ms 50 and a 10 ms scan (the runner says busy)


class MpDeviceError(RuntimeError):
    """The device process could not start."""


class ControlServer:
    """Where the device processes call in: one listening socket for a whole hall."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._waiting: dict[str, asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter, str]]] = {}

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_conn, "127.0.0.1", 0, limit=1 << 16)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def expect(self, device_id: str) -> asyncio.Future[Any]:
        """The (reader, writer, heap before the firmware) of device_id's next call."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[device_id] = fut
        return fut

    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await asyncio.wait_for(reader.readline(), 30)).decode(errors="replace").split()
        except (TimeoutError, ConnectionError):
            writer.close()
            return
        if len(line) != 3 or line[0] != "hi" or line[1] not in self._waiting:
            writer.close()
            return
        fut = self._waiting.pop(line[1])
        if not fut.done():
            fut.set_result((reader, writer, line[2]))


class MpDevice:
    def __init__(self, device_id: str, root: Path, secret_hex: str, broker_host: str, broker_port: int,
                 broker_password: str, *, control: ControlServer, build: str = "frozen",
                 heapsize: str = unixport.HEAPSIZE, hall: str = "hall-1", keepalive_s: int = 30,
                 countdown_s: int = 60, cooldown_s: int = 8, hb_s: int = 60, broker_ca: str | None = None,
                 on_ack: Callable[[str, float], None] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.device_id = device_id
        self.root = Path(root)
        self.secret_hex = secret_hex
        self.broker = (broker_host, broker_port, broker_password)
        self.broker_ca = broker_ca
        self.control = control
        self.build = build
        self.heapsize = heapsize
        self.hall = hall
        self.keepalive_s = keepalive_s
        self.countdown_s = countdown_s
        self.cooldown_s = cooldown_s
        self.hb_s = hb_s
        self.on_ack = on_ack
        self.env = env                     # extra environment of the process (a bench's LD_PRELOAD)
        self.wifi_up = True
        self.powered = False
        self.boots = 0
        self.power_cuts = 0
        self.crashes = 0
        self.fw_version = ""
        self.heap_base = 0                 # heap in use before the firmware was imported
        self.changed = asyncio.Event()     # set on every command the app applied (citizens wait on it)
        self.sent_at: dict[tuple[int, int], float] = {}
        self._state = ("off", False, 0, "")
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._press: asyncio.Future[list[str]] | None = None
        self._mem: asyncio.Future[tuple[int, int]] | None = None
        self._stopping = False
        self._log = None
        self._last_press = [0.0] * len(DEFAULT_BUTTONS)
        self._press_t = 0.0
        self._booted = asyncio.Event()

    # -- provisioning --------------------------------------------------------------------------
    def provision(self) -> None:
        """Write config.json as flash.py would (docs/architecture.md section 2), and the .mpy set
        unless the firmware is frozen into the interpreter."""
        write_config(self.root, self.device_id, self.hall, self.secret_hex, self.broker, self.broker_ca,
                     self.countdown_s, self.cooldown_s, self.hb_s, self.keepalive_s)
        if self.build == "mpy":
            unixport.install_mpy_set(self.root)

    # -- power ---------------------------------------------------------------------------------
    async def power_on(self, reset: str = "power-on", timeout_s: float = 30.0) -> None:
        if self.powered:
            return
        fut = self.control.expect(self.device_id)
        # the console of each boot, appended (a local file: opening it does not block the loop)
        self._log = open(self.root / "console.log", "ab")  # noqa: ASYNC230, SIM115 - closed in _drop_tasks
        self._proc = await asyncio.create_subprocess_exec(
            str(unixport.binary(self.build)), "-X", "heapsize=" + self.heapsize, str(RUNNER),
            str(self.control.port), self.device_id, reset, "1" if self.wifi_up else "0", cwd=str(self.root),
            stdin=asyncio.subprocess.DEVNULL, stdout=self._log, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **self.env} if self.env else None)
        proc = self._proc
        try:
            reader, writer, hello = await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise MpDeviceError("%s did not start within %.0f s (see %s)"
                                % (self.device_id, timeout_s, self.root / "console.log")) from None
        self.heap_base = int(hello)
        self._booted = asyncio.Event()
        self._writer = writer
        self.powered = True
        self.boots += 1
        self._stopping = False
        self._tasks = [asyncio.create_task(self._read(reader), name=self.device_id + "/control"),
                       asyncio.create_task(self._reap(proc), name=self.device_id + "/proc")]
        try:                                # booted: the firmware says its version
            await asyncio.wait_for(self._booted.wait(), timeout_s)
        except TimeoutError:
            await self.power_off(tear=False, count=False)
            raise MpDeviceError("%s did not boot within %.0f s (see %s)"
                                % (self.device_id, timeout_s, self.root / "console.log")) from None
        if not self.powered:                # the runner stopped: config.json is not usable
            lines = (self.root / "console.log").read_text(errors="replace").strip().splitlines()
            raise MpDeviceError("%s %s" % (self.device_id, lines[-1] if lines else "stopped at boot"))

    async def power_off(self, tear: bool = True, count: bool = True) -> None:
        """The supply goes away: SIGKILL, wherever the firmware was; then maybe a torn record."""
        if not self.powered:
            return
        self._stopping = True
        self.powered = False
        if count:
            self.power_cuts += 1
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
        await self._drop_tasks()
        if tear:
            self._tear()
        self._state = ("off", False, self._state[2], "")

    async def stop(self) -> None:
        """Clean shutdown at the end of a run: the runner closes its journal and exits."""
        if not self.powered:
            return
        self._stopping = True
        self._send("q")
        proc = self._proc
        if proc is not None:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        self.powered = False
        await self._drop_tasks()

    async def _drop_tasks(self) -> None:
        proc = self._proc
        if proc is not None:
            await proc.wait()
        for t in self._tasks:
            if t is not asyncio.current_task():
                t.cancel()
        for t in self._tasks:
            if t is not asyncio.current_task():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        self._tasks = []
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self._fail_waiters()

    def _tear(self) -> None:
        """A half-written record after the last complete one (a write the power cut)."""
        jdir = self.root / "data"
        gens = [int(p.name[1:-4]) for p in jdir.glob("j*.log") if (jdir / ("a" + p.name[1:])).exists()]
        if not gens:
            return
        path = jdir / ("j%d.log" % max(gens))
        slot = path.stat().st_size // REC_SIZE
        junk = bytes(random.getrandbits(8) for _ in range(random.randint(1, REC_SIZE - 1)))
        with open(path, "r+b") as f:
            f.seek(slot * REC_SIZE)
            f.write(junk)
            f.truncate()

    async def _reap(self, proc: asyncio.subprocess.Process) -> None:
        """The process ended on its own: the gateway's reboot (exit 3) or a crash: start it again."""
        code = await proc.wait()
        if self._stopping:
            return
        self.powered = False
        if code == EXIT_CANNOT_START:
            self._stopping = True
            self._booted.set()              # wakes a power_on() that waits for the boot
            return
        if code != EXIT_REBOOT:
            self.crashes += 1
        await self._drop_tasks()
        await self.power_on(reset="soft" if code == EXIT_REBOOT else "wdt")

    # -- control channel -----------------------------------------------------------------------
    def _send(self, line: str) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(line.encode() + b"\n")

    def _fail_waiters(self) -> None:
        for fut in (self._press, self._mem):
            if fut is not None and not fut.done():
                fut.set_exception(ConnectionError("device off"))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            raw = await reader.readline()
            if not raw:
                return
            parts = raw.decode(errors="replace").split()
            if not parts:
                continue
            op = parts[0]
            if op == "s" and len(parts) >= 5:
                self._state = (parts[1], parts[2] == "1", int(parts[3]), "" if parts[4] == "-" else parts[4])
                self.changed.set()
            elif op == "a" and len(parts) == 3:
                key = (int(parts[1]), int(parts[2]))
                t0 = self.sent_at.pop(key, None)
                if t0 is not None and self.on_ack is not None:
                    self.on_ack(record_id(self.device_id, key[0], key[1]), time.monotonic() - t0)
            elif op == "r" and self._press is not None and not self._press.done():
                if len(parts) >= 4 and parts[2] not in ("0", "busy"):
                    # before the next line: the record's ack may be the very next one
                    self.sent_at[(int(parts[2]), int(parts[3]))] = self._press_t
                self._press.set_result(parts)
            elif op == "m" and self._mem is not None and not self._mem.done():
                self._mem.set_result((int(parts[1]), int(parts[2])))
            elif op == "c":
                self.changed.set()
            elif op == "v" and len(parts) == 2:
                self.fw_version = parts[1]
                self._booted.set()

    # -- Wi-Fi and clock faults ----------------------------------------------------------------
    def set_wifi(self, up: bool) -> None:
        self.wifi_up = up
        self._send("w 1" if up else "w 0")

    def unsync_clock(self) -> None:
        self._send("u")

    async def heap(self, timeout_s: float = 10.0) -> tuple[int, int]:
        """(gc.mem_alloc(), gc.mem_free()) after a gc.collect() in the device."""
        self._mem = asyncio.get_running_loop().create_future()
        self._send("m")
        return await asyncio.wait_for(self._mem, timeout_s)

    # -- citizen's side ------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    @property
    def state(self) -> str:
        return self._state[0] if self.powered else "off"

    @property
    def invitation(self) -> str:
        return self._state[3] if self.powered else ""

    @property
    def online(self) -> bool:
        return self.powered and self._state[1]

    def journal_depth(self) -> int:
        return self._state[2]

    async def wait_invited(self, invitation_id: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.powered and self._state[0] == "invited" and self._state[3] == invitation_id:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.5))

    async def press(self, index: int, timeout_s: float = 5.0) -> PressResult:
        """Press button index, as a citizen does; returns what the device answered."""
        # A finger does not press one button again before the debounce has seen it released for
        # 50 ms: a press sooner would be swallowed as bounce, as on the device.
        wait = self._last_press[index] + DEBOUNCE_S - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        t = time.monotonic()
        if not self.powered:                # no power: no light, no beep
            return PressResult(False, "", "", "", "", t)
        self._press_t = t
        deadline = t + timeout_s
        try:
            while True:
                self._press = asyncio.get_running_loop().create_future()
                self._send("p %d" % index)
                parts = await asyncio.wait_for(self._press, max(0.01, deadline - time.monotonic()))
                if parts[2] != "busy":
                    break
                await asyncio.sleep(0.01)       # the debounce has not seen the release long enough
        except (TimeoutError, ConnectionError):
            return PressResult(False, "", "", "", "", t)
        finally:
            self._press = None
            self._last_press[index] = time.monotonic()   # the firmware released it just now
        rb, rs, kind, tone = int(parts[2]), int(parts[3]), parts[4], int(parts[5])
        if rb == 0 or kind == "-":
            return PressResult(False, "", "" if kind == "-" else kind, "", "", t)
        inv = "" if parts[6] == "-" else parts[6]
        accepted = kind != "unpaired" and tone in (FEEDBACK_OK_HZ, FEEDBACK_EXTRA_HZ)
        return PressResult(accepted, record_id(self.device_id, rb, rs), kind, DEFAULT_BUTTONS[index], inv, t)

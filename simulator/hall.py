"""One simulated hall run: broker, platform stand-in, gateway, N virtual devices, citizens,
faults, the daily push and the end-to-end check.

    setup      mosquitto (every device a user), platform stand-in (in this process), the
               gateway's config and store (devices, windows, clerks, bindings), gateway process
    devices    N VirtualDevice (real firmware, own directory) boot and connect
    day        per window: cases -> invitations (gateway HTTP API) -> citizens press;
               faults play at their times
    drain      open invitations run out, every journal empties (all acked)
    push       the gateway's uplink sends the day to the platform stand-in
    check      the citizens' ledger against the store and the platform

Everything the run starts is stopped in `close()`, which `run()` calls in a finally block.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from protocol import grades
from protocol.grades import DEFAULT_BUTTONS
from simulator import checker
from simulator.broker import Mosquitto, standard_acl
from simulator.checker import Ledger, Press, Reconciliation, UnratedCase
from simulator.citizens import CitizenProfile, Decisions, InvitationError, SimClock, Window, WindowSystem
from simulator.faults import Fault, FaultPlayer
from simulator.gateway_proc import GatewayProcess
from simulator.mpdevice import ControlServer, MpDevice
from simulator.netutil import free_port
from simulator.report import Console, sim_clock_text
from simulator.vdevice import VirtualDevice

REPO = Path(__file__).resolve().parent.parent

DEPARTMENTS = (
    ("113703030045678905", "公安分局"),
    ("11370303MB2851234N", "市场监督管理局"),
    ("11370303004567901L", "人力资源和社会保障局"),
    ("11370303004568012W", "自然资源局"),
)
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平"


class HallError(RuntimeError):
    """The run could not be set up or driven; the message says which part failed."""


@dataclass
class HallOptions:
    devices: int = 12
    departments: int = 3
    minutes: float = 5.0            # simulated minutes of opening time
    speed: float = 10.0             # simulated seconds per real second of the citizen model
    # The devices' HAL clocks run in real time: their wall clock (synced from the gateway) dates
    # every press, and the gateway judges "in time for its invitation" in real time.
    device_speed: float = 1.0
    seed: int = 1
    profile: CitizenProfile = field(default_factory=CitizenProfile)
    faults: list[Fault] = field(default_factory=list)
    workdir: Path | None = None
    keep: bool = False              # keep the work directory after the run
    countdown_s: int = 20           # invitation countdown on the device (device seconds)
    cooldown_s: int = 8
    tick_ms: int = 200              # device loop period when nothing happens (real ms)
    keepalive_s: int = 20
    drain_timeout_s: float = 60.0
    push: bool = True
    durable: bool = False           # fsync every journal write (slow with many devices)
    boot_spread_s: float = 2.0      # devices power on spread over this many real seconds
    gateway_log_level: str = "INFO"
    # "python": VirtualDevice, the firmware in this CPython process (1,000 devices fit);
    # "micropython": MpDevice, each device a real MicroPython process of the 32-bit unix port.
    runtime: str = "python"
    mp_build: str = "frozen"        # micropython runtime: "frozen" image or the "mpy" set on flash
    complaints: bool = False        # show the 差评 work orders the day opened (the demo)
    extra_config: str = ""          # more TOML for the gateway (e.g. a [console] section)
    console: bool = False           # serve the web console, and keep it open after the run


@dataclass
class RunResult:
    reconciliation: Reconciliation
    ledger: Ledger
    latencies: list[float]
    counters: dict[str, int]
    report_rows: list[dict[str, Any]]
    workdir: Path
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.reconciliation.ok

    def p99_ms(self) -> float | None:
        return percentile(self.latencies, 0.99)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return 1000.0 * s[min(len(s) - 1, int(q * len(s)))]


def clerk_name(i: int) -> str:
    return SURNAMES[i % len(SURNAMES)] + GIVEN[(i // len(SURNAMES) + i) % len(GIVEN)]


class Hall:
    def __init__(self, opts: HallOptions, console: Console | None = None) -> None:
        self.o = opts
        self.c = console or Console()
        self.rng = random.Random(opts.seed)
        self.workdir = Path(opts.workdir) if opts.workdir else Path(tempfile.mkdtemp(prefix="hcp-sim-"))
        self._own_workdir = opts.workdir is None
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger()
        self.latencies: list[float] = []
        self.counters: dict[str, int] = {
            "cases": 0, "invitations": 0, "invite_refused": 0, "invite_not_shown": 0,
            "presses": 0, "presses_no_feedback": 0, "walkups": 0, "doubles": 0, "walked_away": 0}
        self.devices: list[Any] = []       # VirtualDevice or MpDevice (same interface)
        self.control: ControlServer | None = None
        self.windows: list[Window] = []
        self.broker: Mosquitto | None = None
        self.gateway: GatewayProcess | None = None
        self.platform: Any = None
        self.http_port = 0
        self.admin_token = secrets.token_hex(16)
        self.window_token = secrets.token_hex(16)
        self.gw_password = secrets.token_hex(12)
        self.config_path = self.workdir / "gateway.toml"
        self.store_path = self.workdir / "gateway.db"
        self.day = dt.date.today().strftime("%Y%m%d")
        self._session: aiohttp.ClientSession | None = None
        self._stopping = False
        self.sim = SimClock(opts.speed)
        self.api = False
        self._background: list[asyncio.Task[None]] = []
        self.outage_push_ok: bool | None = None
        self.platform_stats: dict[str, Any] = {}
        self.fault_events: list[Any] = []

    # -- FaultTarget ------------------------------------------------------------------------
    def device_ids(self) -> list[str]:
        return [d.device_id for d in self.devices]

    def _dev(self, device_id: str) -> Any:
        for d in self.devices:
            if d.device_id == device_id:
                return d
        raise HallError("no device %s" % device_id)

    def note(self, text: str) -> None:
        self.c.phase(text)

    async def restart_broker(self) -> None:
        assert self.broker is not None
        await asyncio.to_thread(self.broker.restart)

    async def kill_gateway(self) -> None:
        assert self.gateway is not None
        await asyncio.to_thread(self.gateway.kill)

    async def start_gateway(self) -> None:
        assert self.gateway is not None
        await asyncio.to_thread(self.gateway.start, 60.0)

    async def power_off(self, device: str) -> None:
        await self._dev(device).power_off(tear=True)

    async def power_on(self, device: str) -> None:
        await self._dev(device).power_on()

    async def wifi(self, devices: list[str], up: bool) -> None:
        for d in devices:
            self._dev(d).set_wifi(up)

    async def unsync_clock(self, device: str) -> None:
        self._dev(device).unsync_clock()

    async def platform_outage(self, down: bool) -> None:
        self.platform.faults.outage = down
        if down:
            # Make the outage bite: a push attempt while the platform is down.
            self._background.append(asyncio.get_running_loop().create_task(self._push_attempt_during_outage()))

    async def _push_attempt_during_outage(self) -> None:
        await asyncio.sleep(0.5)
        ok, text = await self.push_day()
        self.outage_push_ok = ok
        self.c.note("push during the outage: %s" % text)

    # -- setup ------------------------------------------------------------------------------
    def _make_hall(self) -> None:
        o = self.o
        depts = DEPARTMENTS[:max(1, min(o.departments, len(DEPARTMENTS)))]
        for i in range(o.devices):
            code, name = depts[i % len(depts)]
            self.windows.append(Window(
                window_id="W%03d" % (i + 1), staff_account="clerk%03d" % (i + 1), staff_name=clerk_name(i),
                dept_code=code, dept_name=name, device_id="hcp-sim-%04d" % (i + 1)))

    def _gateway_toml(self, mqtt_port: int) -> str:
        o = self.o
        return "\n".join([
            "[mqtt]", 'host = "127.0.0.1"', "port = %d" % mqtt_port, 'username = "gateway"',
            'password = "%s"' % self.gw_password, 'client_id = "hcp-gateway-sim"', "keepalive_s = 10",
            "", self.broker.gateway_broker_toml(),
            "", "[store]", 'path = "gateway.db"',
            "", "[hall]", 'id = "hall-1"', 'area_code = "370303"', 'timezone = "Asia/Shanghai"',
            'opening_hours = ["00:00-24:00"]', "opening_days = [1, 2, 3, 4, 5, 6, 7]",
            "", "[devices]", "silent_after_s = 600", "health_check_s = 30",
            "", "[ingest]", "batch_ms = 5", "batch_max = 500",
            "", "[http]", 'host = "127.0.0.1"', "port = %d" % self.http_port,
            'admin_token = "%s"' % self.admin_token, 'window_token = "%s"' % self.window_token,
            # The device counts the countdown on its (accelerated) HAL clock; the gateway's
            # expiry runs in real time and only ever comes later, so it never races the device.
            "", "[invitations]", "default_countdown_s = %d" % o.countdown_s, "grace_s = 30",
            "", "[uplink]", "enabled = true", 'url = "%s"' % self.platform.url,
            'app_key = "hall-1"', 'app_secret = "sim-secret"', 'adapter = "default"',
            "request_timeout_s = 5.0", "backoff_base_s = 0.2", "backoff_max_s = 1.0", "max_attempts = 3",
            'daily_at = "03:30"', "realtime_minutes = 0", "retry_minutes = 1",
            "",
        ]) + (("\n" + o.extra_config + "\n") if o.extra_config else "") + (
            '\n[console]\ntitle = "模拟政务服务中心"\n' if o.console else "")

    async def _provision_store(self) -> None:
        """Devices, windows, clerks and bindings, through the gateway's own store functions.

        The same rows `POST /api/v1/devices` and `hcp-gateway windows add / staff add / pair`
        write; done in-process before the gateway starts because 1,000 HTTP registrations
        (each a mosquitto reload) would take minutes."""
        from gateway import bindings
        from gateway.clock import now_ms
        from gateway.devices import add_device
        from gateway.store import open_store

        db = await open_store(self.store_path)
        try:
            t = now_ms()
            await db.write(lambda tx: [add_device(tx, d.device_id, d.secret_hex, "sim", "hcp-sim", t)
                                       for d in self.devices])
            depts_done: set[str] = set()
            for w in self.windows:
                if w.dept_code not in depts_done:
                    depts_done.add(w.dept_code)
                await bindings.add_window(db, w.window_id, w.dept_code, w.dept_name + " " + w.window_id,
                                          "hcp-sim")
                await bindings.add_staff(db, w.staff_account, w.staff_name, "hcp-sim")
                await bindings.pair(db, w.device_id, w.window_id, w.staff_account, "hcp-sim")
        finally:
            await db.close()

    async def setup(self) -> None:
        o = self.o
        self._make_hall()
        self.c.phase("Work directory %s" % self.workdir)
        passwords = {w.device_id: secrets.token_hex(8) for w in self.windows}
        if o.runtime == "micropython":
            self.control = ControlServer()
            await self.control.start()
        for w in self.windows:
            root = self.workdir / "devices" / w.device_id
            if self.control is not None:
                self.devices.append(MpDevice(
                    w.device_id, root, secrets.token_hex(32), "127.0.0.1", 0, passwords[w.device_id],
                    control=self.control, build=o.mp_build, keepalive_s=o.keepalive_s,
                    countdown_s=o.countdown_s, cooldown_s=o.cooldown_s, on_ack=self._on_ack))
            else:
                self.devices.append(VirtualDevice(
                    w.device_id, root, secrets.token_hex(32), "127.0.0.1", 0, passwords[w.device_id],
                    clock_speed=o.device_speed, tick_ms=o.tick_ms, keepalive_s=o.keepalive_s,
                    durable=o.durable, countdown_s=o.countdown_s, cooldown_s=o.cooldown_s,
                    on_ack=self._on_ack))

        users = {"gateway": self.gw_password, **passwords}
        self.broker = Mosquitto(self.workdir / "broker", users=users, acl=standard_acl(),
                                client_ids={"gateway": "hcp-gateway-sim"})
        self.c.phase("Starting mosquitto (MQTT broker) with %d accounts, each tied to its client id, and the"
                     " project's ACL (dynamic security plugin)" % len(users))
        await asyncio.to_thread(self.broker.start)
        self.c.note("mosquitto listening on 127.0.0.1:%d" % self.broker.port)

        from simulator.platform import PlatformStandIn, schema_for
        self.platform = PlatformStandIn(schema_for("default"), self.workdir / "platform.sqlite",
                                        app_key="hall-1", app_secret="sim-secret")
        await self.platform.start()
        self.c.phase("Provincial platform stand-in listening on %s" % self.platform.url)

        self.http_port = free_port()
        self.config_path.write_text(self._gateway_toml(self.broker.port))
        self.config_path.chmod(0o600)   # secrets: serve refuses a config everyone may read
        self.c.phase("Registering %d devices, %d windows and clerks (一码一账号 bindings) in the store"
                     % (len(self.devices), len(self.windows)))
        await self._provision_store()

        self.gateway = GatewayProcess(self.config_path, self.workdir, log_level=o.gateway_log_level)
        self.c.phase("Starting the gateway (python -m gateway serve)")
        line = await asyncio.to_thread(self.gateway.start, 60.0)
        self.c.note(line.strip())
        # The readiness line names the HTTP API when the gateway has one; without it there are
        # no invitations and no pairing commands, so citizens can only walk up (unpaired presses).
        self.api = " http=" in line
        if not self.api:
            self.c.note("the gateway has no HTTP API (gateway/api missing): devices stay unpaired, "
                        "citizens walk up without invitations")
        self._session = aiohttp.ClientSession()

    async def boot_devices(self, timeout_s: float = 120.0, ready_state: str = "idle") -> None:
        o = self.o
        self.c.phase("Powering on %d virtual evaluators (%s)" % (len(self.devices), (
            "real firmware on the host HAL" if self.control is None else
            "real MicroPython processes, 32-bit unix port, firmware %s" % (
                "frozen in" if self.o.mp_build == "frozen" else "as the .mpy set on flash"))))
        assert self.broker is not None
        for d in self.devices:
            d.broker = ("127.0.0.1", self.broker.port, d.broker[2])
            d.provision()
        gap = o.boot_spread_s / max(1, len(self.devices))
        for d in self.devices:
            await d.power_on()
            if gap:
                await asyncio.sleep(gap)
        if not self.api:
            ready_state = "unpaired"
        deadline = time.monotonic() + timeout_s
        while True:
            online = sum(1 for d in self.devices if d.online)
            ready = sum(1 for d in self.devices if d.state == ready_state)
            if ready == len(self.devices):
                break
            if time.monotonic() > deadline:
                raise HallError("only %d/%d devices online and %d paired after %.0f s (see %s)"
                                % (online, len(self.devices), ready, timeout_s, self.gateway_log()))
            if self.gateway is not None and not self.gateway.running:
                raise HallError("the gateway died while devices were booting:\n" + self.gateway.log_tail())
            self.c.progress("devices online %d/%d, paired and idle %d" % (online, len(self.devices), ready))
            await asyncio.sleep(0.25)
        self.c.phase("All %d devices online and %s" % (
            len(self.devices), "paired to their window, idle" if self.api else "unpaired"))

    def gateway_log(self) -> str:
        return str(self.gateway.log_path) if self.gateway else "?"

    # -- the citizens' day ------------------------------------------------------------------
    def _on_ack(self, rid: str, latency_s: float) -> None:
        self.latencies.append(latency_s)

    async def _press(self, dev: VirtualDevice, w: Window, grade: str, case_no: str) -> str:
        r = await dev.press(DEFAULT_BUTTONS.index(grade))
        self.counters["presses"] += 1
        if not r.accepted:
            self.counters["presses_no_feedback"] += 1
            self.ledger.rejected_presses += 1
        if not r.record_id:
            return ""
        self.ledger.press(Press(record_id=r.record_id, device_id=dev.device_id, kind=r.kind, grade=r.grade,
                                invitation_id=r.invitation_id, case_no=case_no if r.invitation_id else "",
                                window_id=w.window_id, staff_account=w.staff_account))
        return r.kind

    async def _window_day(self, w: Window, dev: VirtualDevice, dec: Decisions, ws: WindowSystem,
                          end_sim: float) -> None:
        p = self.o.profile
        def until_end(sim_s: float) -> float:
            return min(sim_s, max(0.0, end_sim - self.sim.now()))

        await self.sim.sleep(until_end(dec.rng.uniform(0, p.service_s)))   # windows start staggered
        while self.sim.now() < end_sim and not self._stopping:
            await self.sim.sleep(until_end(dec.service_time()))
            if self.sim.now() >= end_sim or self._stopping:
                break
            if not self.api:
                self.counters["walkups"] += 1
                await self._press(dev, w, dec.grade(), "")
                continue
            if dec.walkup() and dev.state == "idle":
                self.counters["walkups"] += 1
                await self._press(dev, w, dec.grade(), "")
                await asyncio.sleep((self.o.cooldown_s + 1) / self.o.device_speed)   # device time
            case = ws.new_case(w, dec, self.day)
            self.counters["cases"] += 1
            try:
                inv = await ws.invite(case, timeout_s=30.0)
            except InvitationError as e:
                self.counters["invite_refused"] += 1
                if self.counters["invite_refused"] <= 5:
                    self.c.note("window %s: %s" % (w.window_id, e))
                continue
            self.counters["invitations"] += 1
            # The device shows it within milliseconds normally; a device without Wi-Fi or power
            # never does, and the citizen leaves (the gateway then expires the invitation).
            if not await dev.wait_invited(inv, timeout_s=max(2.0, 15.0 / self.o.speed)):
                self.counters["invite_not_shown"] += 1
                continue
            n = dec.presses()
            if n == 0:
                self.counters["walked_away"] += 1
                self.ledger.walked_away(UnratedCase(dev.device_id, inv, case.case_no))
                continue
            await self.sim.sleep(dec.think_time())
            first = dec.grade()
            kind = await self._press(dev, w, first, case.case_no)
            if n == 2 and kind == "rated":
                self.counters["doubles"] += 1
                await self.sim.sleep(p.double_gap_s)
                await self._press(dev, w, dec.grade(), case.case_no)

    async def _progress(self) -> None:
        every = 1.0 if self.c.live else 5.0
        while True:
            await asyncio.sleep(every)
            n = len(self.devices)
            online = sum(1 for d in self.devices if d.online)
            backlog = sum(d.journal_depth() for d in self.devices)
            self.c.progress("sim %s  online %d/%d  invitations %d  presses accepted %d  unacked %d" % (
                sim_clock_text(self.sim.now()), online, n, self.counters["invitations"],
                len(self.ledger.presses), backlog))

    async def run_day(self) -> None:
        o = self.o
        end_sim = o.minutes * 60.0
        self.c.phase("Opening the hall: %d windows, %.0f simulated minutes at %gx speed (%.0f s real); "
                     "the window system invites, citizens rate" % (len(self.windows), o.minutes, o.speed,
                                                                   end_sim / o.speed))
        assert self._session is not None
        ws = WindowSystem("http://127.0.0.1:%d" % self.http_port, self.window_token, self._session)
        self.sim = SimClock(o.speed)
        player = FaultPlayer(o.faults, self, random.Random(o.seed + 1))
        player.check()
        for f in o.faults:
            self.c.note("scheduled fault: " + f.describe())
        tasks = [asyncio.create_task(
            self._window_day(w, d, Decisions(o.profile, o.seed * 7919 + i), ws, end_sim))
            for i, (w, d) in enumerate(zip(self.windows, self.devices, strict=True))]
        prog = asyncio.create_task(self._progress())
        faults = asyncio.create_task(player.run())
        try:
            await asyncio.gather(*tasks)
            await faults           # faults scheduled past the citizens' end still play out
            for b in self._background:
                await b
        finally:
            prog.cancel()
            for t in tasks:
                t.cancel()
        self.fault_events = player.events
        self.c.phase("Hall closed: %d cases, %d invitations, %d presses (%d journaled, %d without the "
                     "thanks signal), %d citizens walked away, %d double presses, %d walk-ups" % (
                         self.counters["cases"], self.counters["invitations"], self.counters["presses"],
                         len(self.ledger.presses), self.counters["presses_no_feedback"],
                         self.counters["walked_away"], self.counters["doubles"], self.counters["walkups"]))

    async def drain(self) -> bool:
        """Wait until no invitation is open on a device and every journal is acked."""
        o = self.o
        self.c.phase("Waiting for open countdowns to end and every journal to be acknowledged by the gateway")
        for d in self.devices:     # a device still off (power-cut fault at the very end) comes back
            if not d.powered:
                await d.power_on()
            d.set_wifi(True)
        deadline = time.monotonic() + o.drain_timeout_s + o.countdown_s / o.device_speed
        while time.monotonic() < deadline:
            invited = sum(1 for d in self.devices if d.state in ("invited", "thanks"))
            backlog = sum(d.journal_depth() for d in self.devices)
            if invited == 0 and backlog == 0:
                self.c.note("all journals empty: every record is acknowledged")
                return True
            self.c.progress("open invitations %d, unacked records %d" % (invited, backlog))
            await asyncio.sleep(0.25)
        backlog = sum(d.journal_depth() for d in self.devices)
        self.c.note("drain timed out: %d records still unacknowledged" % backlog)
        return False

    async def stop_devices(self) -> None:
        for d in self.devices:
            await d.stop()

    # -- push, report, check -------------------------------------------------------------------
    def store_dates(self) -> list[str]:
        import sqlite3
        from zoneinfo import ZoneInfo
        tz = ZoneInfo("Asia/Shanghai")
        with sqlite3.connect("file:%s?mode=ro" % self.store_path, uri=True) as conn:
            rows = conn.execute("SELECT min(pressed_at_ms), max(pressed_at_ms) FROM records").fetchone()
        if rows[0] is None:
            return [dt.datetime.now(tz).date().isoformat()]
        d0 = dt.datetime.fromtimestamp(rows[0] / 1000, tz).date()
        d1 = dt.datetime.fromtimestamp(rows[1] / 1000, tz).date()
        out = []
        while d0 <= d1:
            out.append(d0.isoformat())
            d0 += dt.timedelta(days=1)
        return out

    async def push_day(self) -> tuple[bool, str]:
        """The daily push for every local date the store has records on."""
        texts = []
        ok = True
        for date in self.store_dates():
            done, text = await self._push_one(date)
            ok = ok and done
            texts.append(text if date in text else "%s: %s" % (date, text))
        return ok, "; ".join(texts)

    async def _push_one(self, date: str) -> tuple[bool, str]:
        cli = REPO / "gateway" / "cli.py"
        if cli.exists():
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.cli", "--config", str(self.config_path),
                "push", "--date", date,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(self.workdir),
                env={**os.environ, "PYTHONPATH": str(REPO)})
            out, _ = await proc.communicate()
            text = out.decode(errors="replace").strip().splitlines()
            return proc.returncode == 0, (text[-1] if text else "exit %d" % proc.returncode)
        # No admin CLI yet: the uplink's own Pusher, in this process, on the same store.
        from gateway.config import load_config
        from gateway.store import open_store
        from gateway.uplink.push import Pusher
        from gateway.uplink.settings import load_settings
        cfg = load_config(self.config_path)
        db = await open_store(self.store_path, run_migrations=False)
        pusher = Pusher(db, load_settings(cfg))
        try:
            rep = await pusher.run(date=date, trigger="hcp-sim")
        finally:
            await pusher.close()
            await db.close()
        return rep.ok, "%s, %d batches, %d accepted, %d duplicates, %d rejected%s" % (
            rep.outcome, rep.batches, rep.accepted, rep.duplicates, rep.rejected + rep.local_rejected,
            (" (" + rep.error + ")") if rep.error else "")

    async def _gateway_cli(self, *args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "--config", str(self.config_path), *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(self.workdir),
            env={**os.environ, "PYTHONPATH": str(REPO)})
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode(errors="replace")

    async def complaints_step(self) -> None:
        """Every 差评 of the day opened a work order by itself: show them with their deadlines
        (working days, hall time), then the liaison works the first one (hcp-gateway complaints)."""
        import json
        self.c.phase("差评 work orders: every 不满意 / 非常不满意 opened a complaint by itself, with its "
                     "deadlines in working days (hall time)")
        code, out = await self._gateway_cli("complaints", "list", "--json")
        rows = json.loads(out)["complaints"] if code == 0 else []
        if code != 0:
            self.c.note("complaints list failed: %s" % out.strip()[-300:])
        for v in sorted(rows, key=lambda v: v["id"]):
            d = v["deadlines"]
            when = ("contact by %s, rectify by %s, the clerk may appeal until %s" % (
                d["contact"]["due"], d["rectify"]["due"], d["appeal"]["due"])
                if not v["calendar_error"] else "deadlines unknown: %s" % v["calendar_error"])
            self.c.phase("  #%d %s窗口 %s %s, case %s: %s" % (
                v["id"], v["window_id"], v["staff_name"], v["grade_zh"], v["case_no"], when))
        if not rows:
            self.c.note("no 差评 today (try --grades vs=70,s=15,bs=5,d=7,vd=3)")
            return
        first = min(v["id"] for v in rows)
        for args in (("contact", str(first), "--note", "电话联系办事群众，了解情况", "--by", "账号经办人"),
                     ("verify", str(first), "--valid", "--note", "12345 热线核实属实", "--by", "12345")):
            code, out = await self._gateway_cli("complaints", *args)
            last = out.strip().splitlines()[-1] if out.strip() else "exit %d" % code
            self.c.phase("  hcp-gateway complaints %s %s: %s" % (args[0], args[1], last))

    async def day_report_rows(self) -> list[dict[str, Any]]:
        """The day's report per window and clerk: gateway/reports.py's day_report for each date,
        or (without that module) a plain count from the store."""
        try:
            from gateway.reports import ReportSettings, day_report
        except ImportError:
            return await asyncio.to_thread(self.report_rows)
        from gateway.config import load_config
        from gateway.store import open_store
        cfg = load_config(self.config_path)
        db = await open_store(self.store_path, run_migrations=False)
        merged: dict[tuple[str, str], Any] = {}
        try:
            for date in self.store_dates():
                rep = await day_report(db, cfg, date)
                for r in rep.rows:
                    key = (r.window_id, r.staff_account)
                    if key in merged:
                        merged[key].add(r)
                    else:
                        merged[key] = r
        finally:
            await db.close()
        names = {w.staff_account: w.staff_name for w in self.windows}
        out = []
        for (win, staff), r in sorted(merged.items()):
            r.finish(ReportSettings.from_config(cfg).weights)
            out.append({"window": win, "staff": "%s %s" % (staff, names.get(staff, r.display_name)),
                        "cases": r.cases, "unrated": r.unrated + r.expired + r.superseded,
                        "valid_bad": r.valid_bad, **r.grades,
                        "satisfaction": None if r.satisfaction is None else 100 * r.satisfaction,
                        "score": r.score})
        return out

    def report_rows(self) -> list[dict[str, Any]]:
        """Per window and clerk: cases, counts per grade, unrated (from the gateway's store)."""
        import sqlite3
        devs = set(self.device_ids())
        rows: dict[str, dict[str, Any]] = {}
        for w in self.windows:
            rows[w.staff_account] = {
                "window": w.window_id, "staff": "%s %s" % (w.staff_account, w.staff_name),
                "cases": 0, "unrated": 0, **{g: 0 for g in grades.GRADES}}
        with sqlite3.connect("file:%s?mode=ro" % self.store_path, uri=True) as conn:
            for dev, staff, kind, grade in conn.execute(
                    "SELECT r.device_id, COALESCE(r.staff_account, i.staff_account), r.kind, r.grade"
                    " FROM records r LEFT JOIN invitations i ON i.id = r.invitation_id"):
                if dev not in devs or staff not in rows:
                    continue
                if kind == "rated" and grade in grades.GRADES:
                    rows[staff][grade] += 1
                elif kind == "unrated":
                    rows[staff]["unrated"] += 1
            try:
                for staff, n in conn.execute("SELECT staff_account, count(*) FROM invitations GROUP BY 1"):
                    if staff in rows:
                        rows[staff]["cases"] = n
            except sqlite3.OperationalError:
                pass
        return list(rows.values())

    async def platform_counts(self) -> dict[str, int]:
        rows = self.platform.db.execute("SELECT record_id, times_received FROM accepted")
        return {r[0]: int(r[1]) for r in rows}

    async def check(self) -> Reconciliation:
        from gateway.config import load_config
        from gateway.uplink.settings import load_settings
        rec = Reconciliation()
        await asyncio.to_thread(checker.check_store, self.ledger, self.store_path, self.device_ids(), rec)
        if self.o.push:
            settings = load_settings(load_config(self.config_path))
            kinds = settings.uploadable_kinds()
            expected = await asyncio.to_thread(checker.uploadable, self.store_path, self.device_ids(), kinds)
            checker.check_platform(expected, await self.platform_counts(), rec)
            await self._uplink_reconcile(settings, rec)
        return rec

    async def _uplink_reconcile(self, settings: Any, rec: Reconciliation) -> None:
        """The uplink's own per-date reconciliation (gateway/uplink/reconcile.py), one row per date.

        Its `device_backlog` (journal depth from the last heartbeat) is only a note here: that
        heartbeat may predate the final acks, and the drain phase checked the journals directly."""
        from gateway.store import open_store
        from gateway.uplink.reconcile import reconcile
        db = await open_store(self.store_path, run_migrations=False)
        try:
            for date in self.store_dates():
                ids = [r[0] for r in self.platform.db.execute(
                    "SELECT record_id FROM accepted WHERE assess_date = ?", (date,))]
                res = await reconcile(db, settings, date, ids)
                counts = dict(res.mismatch_counts)
                stale = counts.pop("device_backlog", 0)
                if stale:
                    rec.notes.append("uplink reconcile %s: %d devices' last heartbeat showed a backlog"
                                     % (date, stale))
                row = checker.Row("uplink reconcile " + date, expected=res.uplink.get("uploadable", 0),
                                  found=res.uplink.get("acked", 0),
                                  lost=counts.get("not_delivered", 0) + counts.get("platform_missing", 0)
                                  + counts.get("seq_gap", 0),
                                  doubled=counts.get("platform_extra", 0), wrong=counts.get("rejected", 0))
                rec.rows.append(row)
                for m in res.mismatches:
                    if m.kind != "device_backlog":
                        rec.problem("uplink reconcile: %s %s %s"
                                    % (m.kind, m.record_id or m.device_id, m.detail))
        finally:
            await db.close()

    # -- the web console after the run -----------------------------------------------------------
    async def offer_console(self) -> None:
        """Keep broker, gateway and devices running and print the console's address with a
        one-time login (a new admin account whose first login must set its own password);
        wait until cancelled (Ctrl-C). The caller closes the hall afterwards."""
        for d in self.devices:
            if not d.powered:
                await d.power_on()
        password = secrets.token_urlsafe(9)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "--config", str(self.config_path), "users", "add",
            "demo-admin", "--role", "admin", "--name", "演示管理员", "--must-change",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=str(self.workdir), env={**os.environ, "PYTHONPATH": str(REPO)})
        out, _ = await proc.communicate((password + "\n").encode())
        if proc.returncode != 0:
            raise HallError("console account not created: " + out.decode(errors="replace").strip())
        self.c.phase("The web console is open: http://127.0.0.1:%d/" % self.http_port)
        self.c.phase("  one-time login: account demo-admin, password %s (the first login sets your own)"
                     % password)
        self.c.phase("  the hall keeps running (devices online, the gateway serving); Ctrl-C stops it")
        await asyncio.Event().wait()

    # -- whole run ------------------------------------------------------------------------------
    async def run(self, close: bool = True) -> RunResult:
        """The whole run; close=False leaves everything running after a successful run (the
        caller then calls close())."""
        t0 = time.monotonic()
        completed = False   # not "ok": the push step below has its own
        try:
            await self.setup()
            await self.boot_devices()
            await self.run_day()
            await self.drain()
            await self.stop_devices()
            if self.o.push:
                self.c.phase("Daily push: the gateway's uplink sends the day's ratings to the platform")
                ok, text = await self.push_day()
                self.c.note(text)
            if self.o.complaints:
                await self.complaints_step()
            rows = await self.day_report_rows()
            self.c.phase("Checking end to end: citizens' truth vs the gateway's store vs the platform")
            rec = await self.check()
            completed = True
            return RunResult(rec, self.ledger, self.latencies, dict(self.counters), rows, self.workdir,
                             time.monotonic() - t0)
        finally:
            if close or not completed:
                await self.close()

    async def close(self) -> None:
        self._stopping = True
        self.c.phase("Stopping everything this run started (devices, gateway, platform stand-in, mosquitto)")
        for d in self.devices:
            try:
                await d.stop()
            except Exception:  # noqa: BLE001 - shutting down: keep stopping the rest
                pass
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.gateway is not None:
            await asyncio.to_thread(self.gateway.terminate)
        if self.platform is not None:
            self.platform_stats = self.platform.stats()
            await self.platform.stop()
            self.platform = None
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop)
        if self.control is not None:
            await self.control.stop()
        if self._own_workdir and not self.o.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


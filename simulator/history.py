"""A quarter of a Zhangdian-like district, made through the gateway's real paths, so that
`hcp-gateway bulletin` prints the seed's two attachment tables (docs/bulletin.md).

The seed (../shared/seeds/000_*.txt): 张店区, 2021 Q2, 90,438 ratings uploaded to the provincial
platform, 7 差评 (0 valid), 3,338 ratings from the 8 town (镇/街道) centres; the towns invite
too little (主动评价率不高). This run builds the same shape at `scale` (1.0 = the seed's volume):

  organisation  the district centre (张店区政务服务中心, 20 departments, their windows, clerks and
                evaluators), 8 town centres with 3 windows each and 5 village points each (one
                window each): gateway/org.py, the bindings service
  each working day of the quarter (China's calendar, gateway/workdays.py), per window:
                cases accepted and finished in opening hours; the window system invites (most
                cases at the centre, fewer in the towns: one town clerk never does, one invites
                hours late, 事后补录); the citizen presses, or lets the countdown run out; a few
                walk-ups, a burst, presses after closing, a clerk who presses himself a second
                after inviting; one evaluator unplugged on some afternoons
  through       the HTTP API in this process on 127.0.0.1 (POST /api/v1/invitations and
                /api/v1/cases with the window token, the app's clock set to the simulated time),
                and signed device messages (hello, hb, rec: protocol.messages.sign with each
                device's key) handed to the gateway's Ingest entry point (verify, dedupe,
                attribution, group commit) — never written to the store directly
  uplink        the gateway's Pusher to the platform stand-in (simulator/platform.py, real HTTP)
                every `push_minutes` of opening time, with a two-hour platform outage one day
  check         the platform holds each uploaded rating once; the bulletin's totals equal the
                generator's own ledger; then both tables are printed (and written as XLSX)

Used by `hcp-sim history` (simulator/cli.py) and tests/simulator/test_sim_history.py (small scale).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import itertools
import json
import os
import random
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

from gateway import bindings, org, supervision, timesync, uscc
from gateway.api import make_app
from gateway.attribution import Attribution, AttributionRules
from gateway.bulletin import Bulletin, make_bulletin
from gateway.complaint_figures import complaint_figures
from gateway.config import Config, load_config
from gateway.devices import add_device
from gateway.district_text import bulletin_text, supervision_text
from gateway.export import ExportSettings, write_table
from gateway.ingest import Ingest
from gateway.mqtt import Downlink
from gateway.periods import Period, parse_period
from gateway.registry import DeviceRegistry
from gateway.store import Store, open_store
from gateway.uplink.push import Pusher
from gateway.uplink.settings import load_settings
from gateway.workdays import UnknownYearError, WorkCalendar
from protocol import messages, topics
from protocol.auth import Key
from simulator.netutil import free_port
from simulator.platform import PlatformStandIn, schema_for

TZ = ZoneInfo("Asia/Shanghai")
MIN = 60_000
HOUR = 60 * MIN
# The seed's quarter.
SEED_RATINGS = 90_438
SEED_TOWN_RATINGS = 3_338
SEED_BAD = 7
ISSUER = "淄博市张店区政务服务管理办公室"

# The district centre's departments: name, share of the centre's cases, windows.
CENTRE_DEPARTMENTS = (
    ("区行政审批服务局", 0.22, 10), ("区人力资源和社会保障局", 0.16, 7), ("区医疗保障局", 0.15, 7),
    ("区不动产登记中心", 0.11, 5), ("区公安分局", 0.07, 4), ("区税务局", 0.06, 4),
    ("区市场监督管理局", 0.05, 3),
    ("区住房和城乡建设局", 0.03, 2), ("区住房公积金管理中心", 0.03, 2), ("区民政局", 0.02, 2),
    ("区卫生健康局", 0.02, 2), ("区教育和体育局", 0.015, 1), ("区交通运输局", 0.015, 1),
    ("区城市管理局", 0.01, 1), ("区司法局", 0.01, 1), ("区退役军人事务局", 0.01, 1),
    ("区残疾人联合会", 0.008, 1),
    ("区自然资源局", 0.008, 1), ("区生态环境分局", 0.007, 1), ("区供电服务中心", 0.007, 1),
)
TOWNS = ("车站街道", "公园街道", "和平街道", "科苑街道", "马尚街道", "湖田街道", "房镇镇", "中埠镇")
TOWN_WINDOWS = (("综合窗口", 0.55), ("社保医保窗口", 0.3), ("民政残联窗口", 0.15))
VILLAGES_PER_TOWN = 5
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红鹏辉"
CENTRE_HOURS = ("08:30-12:00", "13:30-17:30")
TOWN_HOURS = ("08:30-12:00", "14:00-17:30")
TASKS = (("370303-001", "居民身份证换领"), ("370303-002", "社会保险参保登记"),
         ("370303-003", "医保异地就医备案"),
         ("370303-004", "不动产登记"), ("370303-005", "营业执照设立登记"), ("370303-006", "住房公积金提取"),
         ("370303-007", "最低生活保障申请"), ("370303-008", "残疾人证办理"))


class HistoryError(RuntimeError):
    """The run could not be set up or driven; the message says which part."""


@dataclass
class HistoryOptions:
    quarter: str = "2026-Q2"
    scale: float = 1.0
    seed: int = 1
    workdir: Path | None = None
    store_url: str | None = None        # default: SQLite in the work directory
    push_minutes: int = 3               # realtime push during opening hours (sim minutes)
    hb_minutes: int = 60                # heartbeat period of every evaluator (sim minutes)
    outage: bool = True                 # a two-hour platform outage on one day
    keep: bool = False


def _org_code(n: int) -> str:
    """A 9-character organisation code (GB 11714) with its check character."""
    body = "%08d" % n
    c = 11 - sum(int(ch) * w for ch, w in zip(body, (3, 7, 9, 10, 5, 8, 4, 2), strict=True)) % 11
    return body + ("X" if c == 10 else "0" if c == 11 else str(c))


def credit_code(kind: str, n: int) -> str:
    """A unified social credit code of an organ in 张店区 (370303): "11" state organ, "12" public
    institution."""
    return uscc.complete(kind + "370303" + _org_code(n))


def clerk_name(i: int) -> str:
    return SURNAMES[i % len(SURNAMES)] + GIVEN[(i * 7 + i // len(SURNAMES)) % len(GIVEN)]


@dataclass
class SimWindow:
    window_id: str
    name: str
    hall_id: str
    dept_code: str
    staff: str
    staff_name: str
    device: SimDevice
    town: str                    # the hall's town id ("" at the centre)
    cases_per_day: float = 0.0
    invite_p: float = 0.97       # share of cases the clerk offers a rating
    press_p: float = 0.96        # share of invited citizens who press
    late_inviter: bool = False   # invites hours after the case (事后补录)
    self_rater: bool = False     # presses himself a second after inviting, now and then
    hours: tuple[str, ...] = CENTRE_HOURS


@dataclass
class SimDevice:
    device_id: str
    secret_hex: str
    n: int = 0
    rs: int = 0
    boot: int = 1

    @property
    def key(self) -> Key:
        return Key(self.secret_hex)

    def message(self, t: str, fields: dict[str, Any]) -> tuple[str, bytes]:
        self.n += 1
        m = dict(fields)
        m.update(t=t, d=self.device_id, b=self.boot, n=self.n)
        return topics.up(self.device_id, t), bytes(messages.sign(m, self.key))

    def record(self, kind: str, grade: str, inv: str, pressed_ms: int) -> tuple[str, bytes, str]:
        self.rs += 1
        topic, payload = self.message("rec", {"k": kind, "rb": self.boot, "rs": self.rs, "g": grade, "i": inv,
                                              "w": pressed_ms // 1000, "u": 1000 * self.rs})
        return topic, payload, "%s:%d:%d" % (self.device_id, self.boot, self.rs)


@dataclass
class Ledger:
    """What the generator did, to check the gateway's bulletin against."""

    cases: dict[str, int] = field(default_factory=dict)          # by town id ("" = centre)
    ratings: dict[str, int] = field(default_factory=dict)        # real ratings, by town id
    defaults: int = 0
    bad: int = 0
    walkups: int = 0
    invitations: int = 0
    records_sent: int = 0
    messages: int = 0

    def add(self, d: dict[str, int], k: str, n: int = 1) -> None:
        d[k] = d.get(k, 0) + n


@dataclass
class HistoryResult:
    ok: bool
    problems: list[str]
    ledger: Ledger
    department: Bulletin
    town: Bulletin
    platform: dict[str, Any]
    supervision: dict[str, int]
    workdir: Path
    wall_s: float
    files: list[Path]


class SimClock:
    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def working_days(period: Period) -> list[dt.date]:
    cal = WorkCalendar()
    out = []
    d = period.start
    while d < period.end:
        try:
            working = cal.is_working_day(d)
        except UnknownYearError:
            working = d.weekday() < 5    # a year the calendar does not know: Monday to Friday
        if working:
            out.append(d)
        d += dt.timedelta(days=1)
    return out


def _slots(day: dt.date, hours: tuple[str, ...]) -> list[tuple[int, int]]:
    out = []
    for h in hours:
        a, b = h.split("-")
        out.append(tuple(int(dt.datetime.combine(day, dt.time.fromisoformat(x), TZ).timestamp() * 1000)
                         for x in (a, b)))
    return out  # type: ignore[return-value]


class History:
    def __init__(self, o: HistoryOptions, say: Callable[[str], None] = print) -> None:
        self.o = o
        self.say = say
        self.rng = random.Random(o.seed)
        self.period = parse_period(o.quarter)
        if self.period.kind != "quarter":
            raise HistoryError("--quarter must be a quarter like 2026-Q2")
        if self.period.bounds(TZ)[1] > time.time() * 1000:
            raise HistoryError("%s has not ended yet: the window systems' times would be in the future"
                               % self.period.text)
        self.workdir = Path(o.workdir) if o.workdir else Path(tempfile.mkdtemp(prefix="hcp-history-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.own_workdir = o.workdir is None
        self.clock = SimClock(self.period.bounds(TZ)[0])
        self.ledger = Ledger()
        self.windows: list[SimWindow] = []
        self.window_token = secrets.token_hex(16)
        self.admin_token = secrets.token_hex(16)
        self.invites: dict[str, str] = {}          # device -> the last invitation id it was sent
        self.store: Store | None = None
        self.platform: PlatformStandIn | None = None
        self.cfg: Config | None = None
        self._seq = itertools.count()
        self._case_no = itertools.count(1)
        self._pending_cases: dict[str, list[dict[str, Any]]] = {}
        self.silent: dict[str, list[tuple[int, int]]] = {}   # device -> silent spans

    # -- organisation ------------------------------------------------------------------------------

    def _plan(self) -> None:
        """Windows, clerks and devices of the district, and each window's daily volume."""
        s = self.o.scale
        days = len(working_days(self.period))
        centre_ratings = (SEED_RATINGS - SEED_TOWN_RATINGS) * s
        i = 0

        def device() -> SimDevice:
            return SimDevice("zd-%04d" % (len(self.windows) + 1), secrets.token_hex(32))

        for d, (name, share, n_windows) in enumerate(CENTRE_DEPARTMENTS):
            code = credit_code("12" if "中心" in name or "联合会" in name else "11", 10_000 + d)
            for k in range(n_windows):
                i += 1
                w = SimWindow("Z%02d%02d" % (d + 1, k + 1), "%s%d号窗口" % (name.removeprefix("区"), k + 1),
                              "zd-centre", code, "zd%04d" % i, clerk_name(i), device(), "")
                # Citizens rate 0.93-0.99 of the invitations; centre clerks invite 97-99.5%.
                w.invite_p = self.rng.uniform(0.97, 0.995)
                w.press_p = self.rng.uniform(0.94, 0.985)
                w.cases_per_day = centre_ratings * share / n_windows / days / (w.invite_p * w.press_p)
                self.windows.append(w)
        town_ratings = SEED_TOWN_RATINGS * s
        for t, town in enumerate(TOWNS):
            tid = "town-%d" % (t + 1)
            code = credit_code("11", 20_000 + t)
            for k, (wname, share) in enumerate(TOWN_WINDOWS):
                i += 1
                w = SimWindow("T%d%02d" % (t + 1, k + 1), town + wname, tid, code, "tn%04d" % i,
                              clerk_name(i),
                              device(), tid, hours=TOWN_HOURS)
                w.invite_p = self.rng.uniform(0.3, 0.6)
                w.press_p = self.rng.uniform(0.88, 0.95)
                w.cases_per_day = town_ratings * 0.85 / len(TOWNS) * share / days / (w.invite_p * w.press_p)
                self.windows.append(w)
            for v in range(VILLAGES_PER_TOWN):
                i += 1
                w = SimWindow("V%d%02d" % (t + 1, v + 1), "%s第%d社区代办窗口" % (town, v + 1),
                              "%s-v%d" % (tid, v + 1),
                              code, "vl%04d" % i, clerk_name(i), device(), tid, hours=TOWN_HOURS)
                w.invite_p = self.rng.uniform(0.3, 0.6)
                w.press_p = self.rng.uniform(0.88, 0.95)
                per_village = town_ratings * 0.15 / (len(TOWNS) * VILLAGES_PER_TOWN)
                w.cases_per_day = per_village / days / (w.invite_p * w.press_p)
                self.windows.append(w)
        towns = [w for w in self.windows if w.town]
        # The seed's complaints, planted: a town clerk who never invites, one who invites hours
        # late, a centre clerk who rates himself now and then, an evaluator unplugged some afternoons.
        towns[1].invite_p = 0.0
        towns[4].late_inviter = True
        self.windows[3].self_rater = True
        self.silent[towns[7].device.device_id] = []

    def _gateway_toml(self, platform_url: str, http_port: int, store_line: str) -> str:
        return "\n".join([
            "[store]", store_line, "",
            "[hall]", 'id = "zd-centre"', 'name = "张店区政务服务中心"', 'area_code = "370303"',
            'timezone = "Asia/Shanghai"', 'opening_hours = ["08:30-12:00", "13:30-17:30"]',
            "opening_days = [1, 2, 3, 4, 5]", "",
            "[district]", 'name = "张店区"', 'area_code = "370303"', "",
            "[bulletin]", 'issuer = "%s"' % ISSUER, 'rate_without_base = "full"', "",
            "[http]", 'host = "127.0.0.1"', "port = %d" % http_port,
            'window_token = "%s"' % self.window_token, 'admin_token = "%s"' % self.admin_token, "",
            "[invitations]", "default_countdown_s = 60", "grace_s = 30", "",
            "[uplink]", "enabled = true", 'url = "%s"' % platform_url, 'app_key = "zhangdian"',
            'app_secret = "history-secret"', 'adapter = "default"', 'area_code = "370303"',
            "request_timeout_s = 10.0", "backoff_base_s = 0.0", "backoff_max_s = 0.0", "max_attempts = 1",
            "max_batches_per_second = 1000.0", "batch_size = 1000", "", ""])

    async def _provision(self, store: Store, cfg: Config) -> None:
        """Halls, departments, windows, clerks, devices and bindings through the org services."""
        before = self.period.bounds(TZ)[0] - 30 * 86_400_000
        default = cfg.hall
        actor = "hcp-sim:history"
        await store.write(lambda tx: [add_device(tx, w.device.device_id, w.device.secret_hex, "sim-1", actor,
                                                 before)
                                      for w in self.windows])
        for t, town in enumerate(TOWNS):
            tid = "town-%d" % (t + 1)
            await org.add_hall(store, default, tid, org.HallSpec(
                name=town + "便民服务中心", kind="town", area_code="370303%03d" % (t + 1),
                opening_hours=TOWN_HOURS), actor, at_ms=before)
            for v in range(VILLAGES_PER_TOWN):
                await org.add_hall(store, default, "%s-v%d" % (tid, v + 1), org.HallSpec(
                    name="%s第%d社区便民服务站" % (town, v + 1), kind="village", parent_id=tid,
                    area_code="370303%03d%03d" % (t + 1, v + 1)), actor, at_ms=before)
            office = town.removesuffix("镇") + ("镇人民政府" if town.endswith("镇") else "办事处")
            await org.add_department(store, default, credit_code("11", 20_000 + t), office, tid, actor,
                                     at_ms=before)
        for d, (name, _share, _n) in enumerate(CENTRE_DEPARTMENTS):
            await org.add_department(store, default,
                                     credit_code("12" if "中心" in name or "联合会" in name else "11",
                                                                 10_000 + d), name, None, actor, at_ms=before)
        for w in self.windows:
            hall = None if w.hall_id == "zd-centre" else w.hall_id
            await org.add_window(store, default, w.window_id, w.dept_code, w.name, hall, actor, at_ms=before)
            await org.add_staff(store, w.staff, w.staff_name, w.dept_code, actor, at_ms=before)
            if hall is not None:
                await org.move_device(store, default, w.device.device_id, hall, actor, at_ms=before)
            await bindings.pair(store, w.device.device_id, w.window_id, w.staff, actor, at_ms=before + 1000)

    # -- the day ------------------------------------------------------------------------------------

    def _push(self, heap: list[tuple[int, int, str, Any]], t: int, kind: str, data: Any = None) -> None:
        heapq.heappush(heap, (t, next(self._seq), kind, data))

    def _plan_day(self, day: dt.date, heap: list[tuple[int, int, str, Any]], bad_days: set[int],
                  day_index: int, outage_day: int) -> None:
        rng = self.rng
        for w in self.windows:
            slots = _slots(day, w.hours)
            n = int(w.cases_per_day) + (rng.random() < w.cases_per_day % 1)
            silent = w.device.device_id in self.silent and day_index % 9 == 4
            off_from = slots[-1][0] + 30 * MIN
            if silent:   # unplugged from 30 minutes after the afternoon opening to the close
                self.silent[w.device.device_id].append((off_from, slots[-1][1]))
            # One case after another: each in its own stretch of the opening hours, so that an
            # invitation is answered (pressed or timed out) before the window's next one.
            opening = sum(b - a for a, b in slots)
            # 8 minutes of handling, the invitation, up to 40 s to press: each case has 10 minutes
            # of its own, inside one opening slot (not across the lunch break or past closing).
            gap = max(10 * MIN, int(opening / max(n, 1) / 1.05))
            t = slots[0][0] + rng.randint(0, gap // 2)
            si, late = 0, 0
            for _ in range(n):
                while si < len(slots) and t + 10 * MIN > slots[si][1]:
                    si += 1
                    if si < len(slots):
                        t = max(t, slots[si][0])
                if si == len(slots):
                    break
                accepted = t
                finished = accepted + rng.randint(3 * MIN, 8 * MIN)
                late = self._case(heap, w, day, accepted, finished, silent and finished > off_from, late)
                t = accepted + max(10 * MIN, rng.randint(int(0.6 * gap), int(1.4 * gap)))
            if not w.town and rng.random() < min(0.5, 0.01 * w.cases_per_day):   # a walk-up, ~1% of cases
                a, b = rng.choice(slots)
                self._press(heap, w, "walkup", rng.choice(("vs", "vs", "s")), "", rng.randint(a, b - 1))
            first, last = _slots(day, ("08:00-18:00",))[0]
            for h in range(first, last, self.o.hb_minutes * MIN):
                self._push(heap, h + rng.randint(0, 59_000), "hb", w)
        # Every push_minutes of the centre's opening hours, and once in the evening.
        for a, b in _slots(day, CENTRE_HOURS):
            for t in range(a, b + self.o.push_minutes * MIN, self.o.push_minutes * MIN):
                self._push(heap, t, "push", day)
        self._push(heap, _slots(day, ("21:00-21:01",))[0][0], "push", day)
        # What the service's presence job does every minute, every hour here (on the hour: every
        # message handled so far arrived before it, so each hour's last message marks that hour).
        for h in range(_slots(day, ("08:00-09:00",))[0][0], _slots(day, ("19:00-20:00",))[0][0], HOUR):
            self._push(heap, h, "presence", None)
        self._push(heap, _slots(day, ("18:30-18:31",))[0][0], "report_cases", day)
        if self.o.outage and day_index == outage_day:
            self._push(heap, _slots(day, ("10:00-10:01",))[0][0], "outage", True)
            self._push(heap, _slots(day, ("12:00-12:01",))[0][0], "outage", False)
        if day_index in bad_days:
            self._push(heap, 0, "bad", None)   # the day's next centre rating is a 差评
        # A clerk working past closing: a case invited after hours, once a week.
        if day_index % 5 == 2:
            w = self.windows[0]
            self._case(heap, w, day, _slots(day, ("17:40-17:41",))[0][0], _slots(day, ("17:55-17:56",))[0][0],
                       False, 0)
        # A burst at a town evaluator, once in the quarter.
        if day_index == 10:
            w = [x for x in self.windows if x.town][2]
            t0 = _slots(day, ("10:15-10:16",))[0][0]
            for k in range(6):
                self._press(heap, w, "walkup", "vs", "", t0 + 1500 * k)

    def _press(self, heap: list[tuple[int, int, str, Any]], w: SimWindow, kind: str, grade: str, inv: str,
               pressed: int) -> None:
        """A journal record of the device, handled when it reaches the gateway (0.1-0.9 s later)."""
        self._push(heap, pressed + self.rng.randint(100, 900), "press", (w, kind, grade, inv, pressed))

    def _case(self, heap: list[tuple[int, int, str, Any]], w: SimWindow, day: dt.date, accepted: int,
              finished: int, device_off: bool, late: int) -> int:
        """One case: reported by the window system at the day's end, invited (or not). Returns
        how many of the day's invitations the window has put off to the evening so far."""
        rng = self.rng
        task = rng.choice(TASKS)
        no = "370303%s%06d" % (day.strftime("%y%m%d"), next(self._case_no))
        self._pending_cases.setdefault(w.hall_id, []).append({
            "case_no": no, "accepted_at": accepted, "finished_at": finished, "window": w.window_id,
            "staff_account": w.staff, "staff_name": w.staff_name, "task_code": task[0], "task_name": task[1]})
        self.ledger.add(self.ledger.cases, w.town)
        if device_off or rng.random() >= w.invite_p:
            return late
        invite_at = finished + rng.randint(5_000, 40_000)
        if w.late_inviter and rng.random() < 0.5:
            # 事后补录: entered after closing, one every two minutes.
            invite_at = _slots(day, ("17:35-17:36",))[0][0] + late * 2 * MIN
            late += 1
        self._push(heap, invite_at, "invite", (w, no, task))
        return late

    # -- running the events ---------------------------------------------------------------------------

    async def _invite(self, http: aiohttp.ClientSession, base: str, w: SimWindow, case_no: str,
                      task: tuple[str, str]) -> str:
        body = {"window": w.window_id, "case_no": case_no, "task_code": task[0], "task_name": task[1],
                "dept_code": w.dept_code, "applicant_type": 1 if self.rng.random() < 0.9 else 2}
        async with http.post(base + "/api/v1/invitations", json=body) as r:
            data = await r.json()
            if r.status != 201:
                raise HistoryError("invitation refused: HTTP %d %s" % (r.status, data))
        inv = str(data["invitation_id"])
        if self.invites.get(w.device.device_id) != inv:
            raise HistoryError("device %s was not sent invitation %s" % (w.device.device_id, inv))
        self.ledger.invitations += 1
        return inv

    async def _send(self, ingest: Ingest, topic: str, payload: bytes, arrival: int) -> None:
        self.clock.t = arrival
        await ingest.handle(topic, payload)
        self.ledger.messages += 1

    async def run(self) -> HistoryResult:
        t_wall = time.monotonic()
        try:
            return await self._run(t_wall)
        finally:
            if self.platform is not None:
                await self.platform.stop()
            if self.store is not None:
                await self.store.close()
            if self.own_workdir and not self.o.keep:
                shutil.rmtree(self.workdir, ignore_errors=True)

    async def _run(self, t_wall: float) -> HistoryResult:
        o = self.o
        self._plan()
        self.platform = PlatformStandIn(schema_for("default"), self.workdir / "platform.sqlite",
                                        app_key="zhangdian", app_secret="history-secret")
        await self.platform.start()
        store_line = ('url = "%s"' % o.store_url) if o.store_url else 'path = "gateway.db"'
        http_port = free_port()
        cfg_path = self.workdir / "gateway.toml"
        # It holds the API tokens and the platform secret: 0600 from the start, never world-readable.
        fd = os.open(cfg_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)     # an existing file keeps its mode through O_CREAT
            f.write(self._gateway_toml(self.platform.url, http_port, store_line))
        cfg = self.cfg = load_config(cfg_path)
        store = self.store = await open_store(cfg.store.url)
        centre = sum(not w.town for w in self.windows)
        self.say("organisation: %d windows (%d at the district centre, %d in 8 towns and their village"
                 " points), %d departments" % (len(self.windows), centre, len(self.windows) - centre,
                                               len(CENTRE_DEPARTMENTS) + len(TOWNS)))
        await self._provision(store, cfg)
        registry = DeviceRegistry(store)
        await registry.load()
        downlink = Downlink(registry)    # not connected: acks are not needed by these devices
        ingest = Ingest(cfg, store, registry, timesync.Anchors(), downlink, clock_ms=self.clock,
                        attribute=Attribution(AttributionRules.from_config(cfg)))

        async def send_command(device: str, t: str, fields: dict[str, Any]) -> None:
            if t == "invite":
                self.invites[device] = fields["i"]

        app = make_app(store, cfg, send_command, clock=self.clock)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", http_port).start()
        base = "http://127.0.0.1:%d" % http_port
        pusher = Pusher(store, load_settings(cfg), now_ms=self.clock)
        files: list[Path] = []
        try:
            auth = {"Authorization": "Bearer " + self.window_token}
            async with aiohttp.ClientSession(headers=auth) as http:
                await self._quarter(http, base, ingest, registry, pusher)
            await self._finish(ingest, registry, pusher)
            result = await self._report(store, cfg, t_wall, files)
        finally:
            await pusher.close()
            await runner.cleanup()
        return result

    async def _quarter(self, http: aiohttp.ClientSession, base: str, ingest: Ingest, registry: DeviceRegistry,
                       pusher: Pusher) -> None:
        days = working_days(self.period)
        n_bad = max(2, round(SEED_BAD * self.o.scale))
        bad_days = set(self.rng.sample(range(len(days)), min(n_bad, len(days))))
        outage_day = len(days) // 2
        start = _slots(days[0], ("07:00-07:01",))[0][0]
        for w in self.windows:
            topic, payload = w.device.message("hello", {"fw": "sim-1", "up": 5000, "rst": "power", "cfg": 1,
                                                        "jd": 0,
                                                        "safe": False})
            await self._send(ingest, topic, payload, start)
        bad_due = 0
        for i, day in enumerate(days):
            heap: list[tuple[int, int, str, Any]] = []
            self._plan_day(day, heap, bad_days, i, outage_day)
            while heap:
                t, _, kind, data = heapq.heappop(heap)
                if kind == "bad":
                    bad_due += 1
                    continue
                self.clock.t = max(self.clock.t, t)
                if kind == "invite":
                    w, case_no, task = data
                    inv = await self._invite(http, base, w, case_no, task)
                    if self.rng.random() < w.press_p:
                        rng = self.rng
                        think = 1_000 if w.self_rater and rng.random() < 0.05 else rng.randint(4_000, 40_000)
                        grade = "vs" if rng.random() < 0.976 else rng.choice(("s", "s", "s", "s", "bs"))
                        if bad_due and not w.town:
                            grade, bad_due = self.rng.choice(("d", "vd")), bad_due - 1
                            self.ledger.bad += 1
                        self._press(heap, w, "rated", grade, inv, t + think)
                        self.ledger.add(self.ledger.ratings, w.town)
                    else:
                        self._press(heap, w, "unrated", "", inv, t + 60_000)   # the countdown ran out
                        self.ledger.defaults += 1
                elif kind == "press":    # at its arrival at the gateway, a moment after the press
                    w, rkind, grade, inv, pressed = data
                    self.ledger.walkups += rkind == "walkup"
                    topic, payload, _rid = w.device.record(rkind, grade, inv, pressed)
                    self.ledger.records_sent += 1
                    await self._send(ingest, topic, payload, t)
                    if ingest.pending >= 400:
                        await ingest.drain()
                elif kind == "hb":
                    w = data
                    if any(a <= t < b for a, b in self.silent.get(w.device.device_id, [])):
                        continue
                    topic, payload = w.device.message("hb", {
                        "up": t - start, "heap": 52000, "rssi": -55, "jd": 0, "fw": "sim-1", "rc": 0,
                        "rst": "power", "sync": True, "st": "idle"})
                    await self._send(ingest, topic, payload, t)
                elif kind == "presence":
                    await ingest.drain()
                    await registry.flush()
                    await supervision.note_presence(self.store_or_fail, t - 2 * HOUR)
                elif kind == "push":
                    await ingest.drain()
                    await pusher.run(date=data.isoformat(), trigger="realtime")
                elif kind == "report_cases":
                    await self._report_cases(http, base)
                elif kind == "outage":
                    assert self.platform is not None
                    self.platform.faults.outage = bool(data)
            await ingest.drain()
            if (i + 1) % 10 == 0 or i + 1 == len(days):
                self.say("%s: %d of %d working days, %d invitations, %d records sent" % (
                    day.isoformat(), i + 1, len(days), self.ledger.invitations, self.ledger.records_sent))

    @property
    def store_or_fail(self) -> Store:
        if self.store is None:
            raise HistoryError("store not open")
        return self.store

    async def _report_cases(self, http: aiohttp.ClientSession, base: str) -> None:
        """The window systems' daily report of every case (invited or not), per hall."""
        for hall in sorted(self._pending_cases):
            cases = self._pending_cases[hall]
            for k in range(0, len(cases), 1000):
                async with http.post(base + "/api/v1/cases", json={"cases": cases[k:k + 1000]}) as r:
                    if r.status not in (200, 201):
                        raise HistoryError("case report refused: HTTP %d %s" % (r.status, await r.text()))
        self._pending_cases.clear()

    async def _finish(self, ingest: Ingest, registry: DeviceRegistry, pusher: Pusher) -> None:
        from gateway import invitations
        store = self.store_or_fail
        await ingest.drain()
        await registry.flush()
        end = self.period.bounds(TZ)[1]
        self.clock.t = end + 2 * HOUR
        await invitations.expire_due(store, self.clock.t)
        assert self.platform is not None
        self.platform.faults.outage = False
        rep = await pusher.run(trigger="daily")     # everything still pending, the whole quarter
        if not rep.ok:
            raise HistoryError("the final push did not complete: %s" % rep.error)

    async def _report(self, store: Store, cfg: Config, t_wall: float, files: list[Path]) -> HistoryResult:
        figures = complaint_figures(cfg)
        dept = await make_bulletin(store, cfg, self.period, "department", "zd-centre", figures)
        town = await make_bulletin(store, cfg, self.period, "town", None, figures)
        sv = await supervision.supervise(store, cfg, self.period, at_ms=self.clock.t)
        assert self.platform is not None
        stats = self.platform.stats()
        problems = []
        led = self.ledger
        real = sum(led.ratings.values())
        uplink = await store.read(lambda tx: tx.uplink.status_counts())
        if town.totals.counts.ratings != real:
            problems.append("bulletin counts %d ratings, the generator made %d"
                            % (town.totals.counts.ratings, real))
        if town.totals.counts.defaults != led.defaults:
            problems.append("bulletin counts %d default ratings, the generator left %d invitations unrated"
                            % (town.totals.counts.defaults, led.defaults))
        if town.totals.counts.bad != led.bad:
            problems.append("bulletin counts %d 差评, the generator made %d"
                            % (town.totals.counts.bad, led.bad))
        if stats["accepted"] != real + led.defaults:
            problems.append("the platform holds %d ratings, expected %d"
                            % (stats["accepted"], real + led.defaults))
        if stats["received_total"] < stats["accepted"]:
            problems.append("platform counters inconsistent")
        stored = await store.read(lambda tx: tx.records.count())
        if stored != led.records_sent:
            problems.append("the store has %d records, the devices sent %d" % (stored, led.records_sent))
        towns = sum(r.counts.ratings for r in town.rows if r.key[0] != "zd-centre")
        if towns != sum(v for k, v in led.ratings.items() if k):
            problems.append("the towns' bulletin rows count %d ratings, the generator made %d"
                            % (towns, sum(v for k, v in led.ratings.items() if k)))
        settings = cfg.sections.get("export")
        es = settings if isinstance(settings, ExportSettings) else ExportSettings()
        for b, name in ((dept, "bulletin-department.xlsx"), (town, "bulletin-town.xlsx")):
            files.append(await write_table(b.table(), self.workdir / name, "xlsx", es))
        (self.workdir / "supervision.json").write_text(json.dumps(sv.to_json(), ensure_ascii=False, indent=1))
        files.append(self.workdir / "supervision.json")
        self.say("uplink items: %s" % json.dumps(uplink, sort_keys=True))
        self._supervision_text = supervision_text(sv, 0)
        return HistoryResult(not problems, problems, led, dept, town, stats, sv.counts(), self.workdir,
                             time.monotonic() - t_wall, files)


def summary_lines(res: HistoryResult) -> list[str]:
    led = res.ledger
    real = sum(led.ratings.values())
    town = sum(v for k, v in led.ratings.items() if k)
    return [
        "generated: %d cases, %d invitations, %d ratings (%d from the towns), %d default ratings, %d 差评,"
        " %d walk-ups; %d device messages" % (sum(led.cases.values()), led.invitations, real, town,
                                               led.defaults, led.bad, led.walkups, led.messages),
        "platform stand-in: %d ratings accepted (%d received in all, duplicates deduped)"
        % (res.platform["accepted"], res.platform["received_total"]),
        "supervision findings: " + ", ".join("%s %d" % (k, n) for k, n in res.supervision.items() if n),
        "run took %.0f s; files: %s" % (res.wall_s, ", ".join(str(p) for p in res.files)),
    ]


def print_tables(res: HistoryResult, say: Callable[[str], None] = print) -> None:
    say(bulletin_text(res.department))
    say("")
    say(bulletin_text(res.town))


def options(**kw: Any) -> HistoryOptions:
    known = {f.name for f in dataclasses.fields(HistoryOptions)}
    return HistoryOptions(**{k: v for k, v in kw.items() if k in known})

"""Alerts: conditions a person must hear about, each announced once, and its recovery.

Run by the leader only (gateway/leader.py: one instance of a district at a time). Every
`check_every_s` the engine asks each source for the conditions that hold now; a condition
not yet open is stored (table `alerts`) and announced through gateway/notify.py (kind
`alert.<what>`); an open one is never announced again, whatever restarts or leader changes
happen; when its source no longer reports it, it is resolved and a recovery notice follows
(kind `alert.<what>.recovered`). The state is in the store, so a new leader carries on where
the old one stopped. Notification ids are derived from the alert's row (`alert-17`,
`alert-17-recovered`): a notice sent twice after a crash has the same X-HCP-Delivery.

Built-in sources (settings in `[alerts]`):
  device_silent     an enabled device not heard for `silent_after_s` while the hall is open
                    (open now and `silent_after_s` ago: no storm at opening for devices
                    switched off at night); closes when it is heard again, opening hours or not
  journal           a device's journal (hb `jd`) holds >= `journal_depth` records: they are
                    not reaching the store; closes at <= `journal_clear`
  push_failed       the last `push_failures` push runs failed (a refused run, i.e. the
                    platform refused our credentials, at once); closes on a successful run
  platform_rejected records the platform (or the mapping) rejected and nobody re-queued, one
                    alert per reason code with at least `rejections` records
  disk              a watched file system (`disk_paths`, default the SQLite store's
                    directory) has less than `disk_min_free_pct` free, or fewer than
                    `disk_min_days` days left at the rate the store grew over the last 7 days
Further sources plug in with `Source` (a name, a key prefix, `conditions(now_ms)`), appended
to the engine's sources in gateway/service.py where the engine is built. The 差评 work orders
(issue 16, gateway/complaints.py) need none: their leader job announces a new 差评, a deadline
due soon and a deadline missed through the same Notifier (kinds `complaint.*`), each once,
recorded in the store like these alerts.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from gateway.clock import fmt_ms
from gateway.clock import now_ms as wall_ms
from gateway.config import Config, ConfigError, HallConfig
from gateway.notify import Notification, Notifier, Severity
from gateway.store import Store
from gateway.store.api import Tx
from gateway.store.rows import AlertRow

log = logging.getLogger("gateway.alerts")

DAY_MS = 86_400_000
FAILED_OUTCOMES = ("unavailable", "refused", "error")


# ---- settings ------------------------------------------------------------------------------

@dataclass(frozen=True)
class AlertSettings:
    enabled: bool = True
    check_every_s: float = 30.0
    silent_after_s: int = 600
    journal_depth: int = 50
    journal_clear: int = 5
    push_failures: int = 3
    rejections: int = 1
    disk_paths: tuple[Path, ...] = ()
    disk_min_free_pct: float = 10.0
    disk_min_days: int = 30

    @classmethod
    def from_config(cls, cfg: Config, base: Path | None = None) -> AlertSettings:
        """base: where relative disk_paths start (the config file's directory)."""
        sec: dict[str, Any] = cfg.raw.get("alerts", {})
        base = base or (cfg.path.parent if cfg.path is not None else Path.cwd())
        paths = tuple(p if p.is_absolute() else base / p
                      for p in (Path(x).expanduser() for x in sec.get("disk_paths", [])))
        if "disk_paths" not in sec and cfg.store.path is not None:
            paths = (cfg.store.path.parent,)
        s = cls(enabled=sec.get("enabled", True), check_every_s=float(sec.get("check_every_s", 30.0)),
                silent_after_s=sec.get("silent_after_s", cfg.devices.silent_after_s),
                journal_depth=sec.get("journal_depth", 50), journal_clear=sec.get("journal_clear", 5),
                push_failures=sec.get("push_failures", 3), rejections=sec.get("rejections", 1),
                disk_paths=paths, disk_min_free_pct=float(sec.get("disk_min_free_pct", 10.0)),
                disk_min_days=sec.get("disk_min_days", 30))
        if s.journal_clear >= s.journal_depth:
            raise ConfigError("[alerts] journal_clear (%d) must be below journal_depth (%d)"
                              % (s.journal_clear, s.journal_depth))
        return s


# ---- conditions and sources ----------------------------------------------------------------

@dataclass(frozen=True)
class Condition:
    """A condition that holds now. `key` is unique per condition (e.g. device_silent:ID) and
    starts with its source's prefix; raise_new=False keeps an open alert open but opens no new
    one (a silent device outside opening hours, a journal between clear and alert)."""

    key: str
    kind: str                       # alert.<what>
    severity: Severity
    subject: str                    # Chinese, one line
    body: str                       # Chinese
    detail: dict[str, Any] = field(default_factory=dict)
    raise_new: bool = True


class Source(Protocol):
    name: str
    prefix: str          # the keys this source owns: an open one it no longer reports is resolved

    async def conditions(self, now_ms: int) -> list[Condition]: ...


def fmt_time(ms: int | None, tz: ZoneInfo) -> str:
    """gateway.clock.fmt_ms (the time with its zone), "-" for none, raw when out of range."""
    if ms is None:
        return "-"
    try:
        return fmt_ms(ms, tz)
    except (OverflowError, ValueError, OSError):
        return "epoch-ms %d" % ms


def _minutes(ms: int) -> str:
    m = max(1, round(ms / 60_000))
    return "%d 分钟" % m if m < 120 else "%.1f 小时" % (m / 60)


def _labels(tx: Tx) -> dict[str, str]:
    """device id -> "A07窗口 · 张三" for the active bindings."""
    return {b.device_id: "%s窗口 · %s" % (b.window_id, b.display_name or b.staff_account)
            for b in tx.bindings.listing()}


class SilentDevices:
    name = "device_silent"
    prefix = "device_silent:"

    def __init__(self, store: Store, hall: HallConfig, silent_after_s: int) -> None:
        self.store, self.hall, self.after_ms = store, hall, silent_after_s * 1000

    async def conditions(self, now_ms: int) -> list[Condition]:
        devices, labels = await self.store.read(lambda tx: (tx.devices.all(enabled_only=True), _labels(tx)))
        in_hours = self.hall.is_open(now_ms) and self.hall.is_open(now_ms - self.after_ms)
        out = []
        for d in devices:
            last = d.last_seen if d.last_seen is not None else d.created_at
            if now_ms - last <= self.after_ms:
                continue
            where = labels.get(d.device_id, "未绑定窗口")
            since = fmt_time(last, self.hall.tz)
            out.append(Condition(
                self.prefix + d.device_id, "alert.device_silent", Severity.WARNING,
                "评价器无消息：%s（%s）" % (d.device_id, where),
                "评价器 %s（%s）自 %s 起没有任何消息（已 %s），现在是办公时间。请检查设备的电源和网络；"
                "设备恢复后会自动补传期间的评价。" % (d.device_id, where, since, _minutes(now_ms - last)),
                {"device_id": d.device_id, "last_seen_ms": d.last_seen, "silent_ms": now_ms - last},
                raise_new=in_hours))
        return out


class JournalGrowing:
    name = "journal"
    prefix = "journal:"

    def __init__(self, store: Store, depth: int, clear: int) -> None:
        self.store, self.depth, self.clear = store, depth, clear

    async def conditions(self, now_ms: int) -> list[Condition]:
        devices, labels = await self.store.read(lambda tx: (tx.devices.all(enabled_only=True), _labels(tx)))
        out = []
        for d in devices:
            jd = d.journal_depth or 0
            if jd <= self.clear:
                continue
            where = labels.get(d.device_id, "未绑定窗口")
            out.append(Condition(
                self.prefix + d.device_id, "alert.journal_growing", Severity.WARNING,
                "评价器积压：%s 有 %d 条评价未确认（%s）" % (d.device_id, jd, where),
                "评价器 %s（%s）报告其存储中有 %d 条评价尚未被网关确认：评价没有送达网关。"
                "请检查网关服务、消息服务器与设备网络（hcp-gateway doctor）。评价仍保存在设备中，不会丢失。"
                % (d.device_id, where, jd),
                {"device_id": d.device_id, "journal_depth": jd}, raise_new=jd >= self.depth))
        return out


class PushFailures:
    name = "push_failed"
    prefix = "push_failed"

    def __init__(self, store: Store, failures: int) -> None:
        self.store, self.failures = store, failures

    async def conditions(self, now_ms: int) -> list[Condition]:
        runs = await self.store.read(lambda tx: tx.uplink.recent_runs(self.failures + 20))
        finished = [r for r in runs if r.get("outcome") and r["outcome"] != "stopped"]
        failed: list[dict[str, Any]] = []
        for r in finished:
            if r["outcome"] not in FAILED_OUTCOMES:
                break
            failed.append(r)
        if not failed:
            return []
        last = failed[0]
        refused = last["outcome"] == "refused"
        reason = str(last.get("error") or last["outcome"])
        creds = "平台拒绝了网关的凭据，请核对 [uplink] app_key / app_secret。" if refused else ""
        return [Condition(
            self.prefix, "alert.push_failed", Severity.CRITICAL if refused else Severity.WARNING,
            "向省平台上报失败：连续 %d 次" % len(failed),
            "最近 %d 次向省级好差评平台的上报都没有成功（最近一次：%s）。%s评价保存在网关中，恢复后自动补报；"
            "查看：hcp-gateway uplink status。" % (
                len(failed), reason, creds),
            {"failed_runs": len(failed), "last_outcome": last["outcome"], "last_error": last.get("error")},
            raise_new=refused or len(failed) >= self.failures)]


class PlatformRejections:
    name = "platform_rejected"
    prefix = "platform_rejected:"

    def __init__(self, store: Store, at_least: int) -> None:
        self.store, self.at_least = store, at_least

    async def conditions(self, now_ms: int) -> list[Condition]:
        codes = await self.store.read(lambda tx: tx.ops.rejection_codes())
        return [Condition(
            self.prefix + (code or "-"), "alert.platform_rejected", Severity.WARNING,
            "省平台拒收评价：%d 条（原因代码 %s）" % (n, code or "-"),
            "有 %d 条评价被省平台（或网关的字段映射）拒收，原因代码 %s，不会自动重发。"
            "查看原因：hcp-gateway uplink rejections；修正后：hcp-gateway uplink requeue。"
            % (n, code or "-"),
            {"code": code, "records": n}, raise_new=n >= self.at_least)
            for code, n in sorted(codes.items())]


@dataclass(frozen=True)
class DiskFigures:
    path: str
    free_bytes: int
    total_bytes: int
    growth_per_day: float      # bytes/day at the measured rate (0 when nothing grew)

    @property
    def free_pct(self) -> float:
        return 100.0 * self.free_bytes / self.total_bytes if self.total_bytes else 0.0

    @property
    def days_left(self) -> float | None:
        return self.free_bytes / self.growth_per_day if self.growth_per_day > 0 else None


async def store_growth_per_day(store: Store, now_ms: int) -> float:
    """Bytes a day the store grows by: its bytes per record times the records received a day
    over the last 7 days."""
    def read(tx: Tx) -> tuple[int, int, int]:
        week = tx.ops.records_received_since(now_ms - 7 * DAY_MS)
        return tx.ops.database_bytes(), tx.ops.record_count(), week
    size, count, week = await store.read(read)
    per_record = size / count if count else 1024.0
    return per_record * week / 7.0


def disk_figures(path: Path, growth_per_day: float) -> DiskFigures:
    st = os.statvfs(path)
    return DiskFigures(str(path), st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize, growth_per_day)


def _gb(n: float) -> str:
    return "%.1f GB" % (n / 1e9) if n >= 1e8 else "%.0f MB" % (n / 1e6)


class DiskSpace:
    name = "disk"
    prefix = "disk:"
    MARGIN = 1.1     # recovers only 10% above the limits: no flapping at the edge

    def __init__(self, store: Store, paths: Sequence[Path], min_free_pct: float, min_days: int) -> None:
        self.store, self.paths, self.min_pct, self.min_days = store, list(paths), min_free_pct, min_days

    async def conditions(self, now_ms: int) -> list[Condition]:
        growth = await store_growth_per_day(self.store, now_ms)
        out = []
        for p in self.paths:
            f = await asyncio.to_thread(disk_figures, p, growth)
            days = f.days_left
            low = f.free_pct < self.min_pct or (days is not None and days < self.min_days)
            near = (f.free_pct < self.min_pct * self.MARGIN
                    or (days is not None and days < self.min_days * self.MARGIN))
            if not (low or near):
                continue
            left = "约 %.0f 天" % days if days is not None else "用量未见增长"
            out.append(Condition(
                self.prefix + f.path, "alert.disk", Severity.CRITICAL if f.free_pct < self.min_pct / 2
                else Severity.WARNING,
                "磁盘空间不足：%s 剩余 %s（%.1f%%，%s）" % (f.path, _gb(f.free_bytes), f.free_pct, left),
                "服务器 %s 所在磁盘剩余 %s（%.1f%%）；按最近 7 天的增长（每天约 %s）%s。"
                "磁盘写满后网关无法保存新的评价（设备会暂存并重发）。请清理磁盘或扩容。"
                % (f.path, _gb(f.free_bytes), f.free_pct, _gb(f.growth_per_day), "还可用" + left
                   if days is not None else "用量未见增长"),
                {"path": f.path, "free_bytes": f.free_bytes, "free_pct": round(f.free_pct, 2),
                 "days_left": None if days is None else round(days, 1),
                 "growth_bytes_per_day": round(f.growth_per_day)}, raise_new=low))
        return out


def builtin_sources(store: Store, cfg: Config, settings: AlertSettings, uplink: bool) -> list[Source]:
    sources: list[Source] = [SilentDevices(store, cfg.hall, settings.silent_after_s),
                             JournalGrowing(store, settings.journal_depth, settings.journal_clear),
                             PlatformRejections(store, settings.rejections)]
    if uplink:
        sources.append(PushFailures(store, settings.push_failures))
    if settings.disk_paths:
        sources.append(DiskSpace(store, settings.disk_paths, settings.disk_min_free_pct,
                                 settings.disk_min_days))
    return sources


# ---- the engine ----------------------------------------------------------------------------

@dataclass
class Cycle:
    opened: list[str] = field(default_factory=list)      # condition keys announced now
    resolved: list[str] = field(default_factory=list)    # keys recovered now
    failed_sources: list[str] = field(default_factory=list)


class AlertEngine:
    def __init__(self, store: Store, notifier: Notifier, sources: Sequence[Source], tz: ZoneInfo,
                 clock: Callable[[], int] = wall_ms, hall_id: str = "") -> None:
        self.store, self.notifier, self.sources, self.tz = store, notifier, list(sources), tz
        self.clock = clock
        self.hall_id = hall_id

    async def run_once(self) -> Cycle:
        now = self.clock()
        cycle = Cycle()
        open_rows = {a.cond_key: a for a in await self.store.read(lambda tx: tx.alerts.open_alerts())}
        # Announcements a stopped leader owed (stored, not yet queued) go first.
        for a in open_rows.values():
            if a.notified_ms is None:
                await self._announce(a, now)
        for a in await self.store.read(lambda tx: tx.alerts.unannounced_recoveries()):
            await self._announce_recovery(a, now)
        for src in self.sources:
            try:
                conds = await src.conditions(now)
            except Exception as e:  # noqa: BLE001 - one failing source must not stop the others
                log.warning("alert source %s failed: %s: %s", src.name, type(e).__name__, e)
                cycle.failed_sources.append(src.name)
                continue
            active = {c.key: c for c in conds}
            for c in conds:
                if c.key in open_rows or not c.raise_new:
                    continue
                alert_id = await self.store.write(self._opener(c, now))
                if alert_id is None:
                    continue   # opened meanwhile (another leader's last cycle): already announced
                row = AlertRow(alert_id, c.key, c.kind, c.severity.value, c.subject,
                               {"body": c.body, **c.detail}, now, None, None, None)
                await self._announce(row, now)
                cycle.opened.append(c.key)
            for key, a in open_rows.items():
                if key.startswith(src.prefix) and key not in active:
                    if await self.store.write(self._resolver(a.id, now)):
                        await self._announce_recovery(a, now)
                        cycle.resolved.append(key)
        return cycle

    @staticmethod
    def _opener(c: Condition, now: int) -> Callable[[Tx], int | None]:
        return lambda tx: tx.alerts.open(c.key, c.kind, c.severity.value, c.subject,
                                         {"body": c.body, **c.detail}, now)

    @staticmethod
    def _resolver(alert_id: int, now: int) -> Callable[[Tx], bool]:
        return lambda tx: tx.alerts.resolve(alert_id, now)

    def _payload(self, a: AlertRow, event: str) -> dict[str, Any]:
        detail = {k: v for k, v in a.detail.items() if k != "body"}
        return {"alert_id": a.id, "key": a.cond_key, "event": event, "hall": self.hall_id,
                "opened_at": fmt_time(a.opened_ms, self.tz), **detail}

    async def _announce(self, a: AlertRow, now: int) -> None:
        body = str(a.detail.get("body", a.subject))
        await self.notifier.send(Notification(
            kind=a.kind, severity=Severity(a.severity), subject=a.subject, body=body,
            payload=self._payload(a, "raised"), id="alert-%d" % a.id))
        await self.store.write(lambda tx: tx.alerts.mark_notified(a.id, now))
        log.warning("alert raised: %s (%s)", a.cond_key, a.kind)

    async def _announce_recovery(self, a: AlertRow, now: int) -> None:
        await self.notifier.send(Notification(
            kind=a.kind + ".recovered", severity=Severity.INFO, subject="已恢复：" + a.subject,
            body="已恢复（%s）：%s。该提醒自 %s 起生效，持续 %s。" % (
                fmt_time(now, self.tz), a.subject, fmt_time(a.opened_ms, self.tz),
                _minutes(now - a.opened_ms)),
            payload=self._payload(a, "recovered") | {"resolved_at": fmt_time(now, self.tz)},
            id="alert-%d-recovered" % a.id))
        await self.store.write(lambda tx: tx.alerts.mark_recovery_notified(a.id, now))
        log.info("alert recovered: %s (%s)", a.cond_key, a.kind)

    async def run(self, stop: asyncio.Event, every_s: float) -> None:
        """The leader job: a cycle every every_s until stop is set."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as e:  # noqa: BLE001 - the store may be away for a moment
                log.warning("alerts not checked: %s: %s", type(e).__name__, e)
            try:
                await asyncio.wait_for(stop.wait(), every_s)
            except TimeoutError:
                pass


def alerts_job(engine: AlertEngine, every_s: float) -> Callable[[asyncio.Event], Any]:
    async def job(stop: asyncio.Event) -> None:
        await engine.run(stop, every_s)
    return job

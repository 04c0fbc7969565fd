"""The district's organisation: district -> halls -> departments -> windows -> clerks, and
which hall each device is in. The one domain service the CLI (`gateway/cli_org.py`), the HTTP
API (`gateway/api/org.py`) and the web console call; every change is audited with its actor.

- **District**: one per deployment, from the config's `[district]` (name, area code).
- **Halls** (`centre` 区政务服务中心, `town` 镇/街道便民服务中心, `village` 村/社区代办点, a village
  point's parent is its town centre), each with its time zone and opening hours. The config's
  `[hall]` is the *default hall*: anything that names no hall (a NULL hall_id in the store)
  is in it, so a one-hall config keeps working unchanged. A hall added to the store under the
  same id overrides the config's values for it.
- **Departments**: an 18-character unified social credit code (GB 32100-2015, checked with its
  check character by gateway/uscc.py) and a name; they sit in a hall.
- **Windows**: in a hall and a department; a move keeps the history (`window_places`), so a
  press is credited to where its window was at press time, even when it arrives later.
- **Clerks** (staff accounts): a name and their own department.
- Add, rename, move and retire each. Nothing is deleted: a retired hall, department, window or
  clerk keeps its rows, its past records and its place in past bulletins; it only takes no new
  windows, bindings or invitations. Retiring something still in use is refused with what uses it.

**Press-time attribution** (for the complaints service, bulletins and the console):
`org_at_press_time(tx, record_id, default_hall)` gives the hall, department, window and clerk
of a record *as they were at the press*: the binding at press time gave the window and clerk
(gateway/attribution.py, unchanged), the window's place at press time gave the hall and
department (stamped on the record at ingest); names are today's names.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway import uscc
from gateway.bindings import WINDOW_NO_MAX_BYTES, audit, check_text
from gateway.clock import now_ms
from gateway.config import Config, ConfigError, HallConfig, OpeningRange, parse_opening_hours
from gateway.errors import BadInput, Conflict, NotFound
from gateway.store import Store
from gateway.store.api import Tx
from gateway.store.errors import IntegrityError
from gateway.store.rows import Department, HallRow, Staff, Window, WindowPlace
from gateway.workdays import UnknownYearError, WorkCalendar

HALL_KINDS = ("centre", "town", "village")
# China's national holidays and adjusted working days (the [calendar] section's local holidays
# are the complaints work's; halls follow the national arrangement).
_CALENDAR = WorkCalendar()
HALL_KIND_ZH = {"centre": "政务服务中心", "town": "便民服务中心", "village": "便民服务站"}
HALL_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")
AREA_CODE = re.compile(r"\d{6,12}")


# ---- district -------------------------------------------------------------------------------

@dataclass(frozen=True)
class DistrictSettings:
    """[district]: the one district a deployment serves."""

    name: str = ""
    area_code: str = ""          # 6-digit administrative division code, e.g. 370303 (张店区)

    @classmethod
    def from_config(cls, cfg: Config) -> DistrictSettings:
        sec = cfg.raw.get("district", {})
        area = sec.get("area_code", cfg.hall.area_code[:6] if AREA_CODE.fullmatch(cfg.hall.area_code) else "")
        if area and not re.fullmatch(r"\d{6}", area):
            raise ConfigError("[district] area_code must be 6 digits (administrative division), got %r"
                              % area)
        return cls(name=sec.get("name", ""), area_code=area)


# ---- halls ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hall:
    """A hall as the domain sees it (a stored hall, or the config's default hall)."""

    hall_id: str
    name: str
    kind: str
    parent_id: str | None
    area_code: str
    timezone: str
    opening_hours: tuple[OpeningRange, ...]
    opening_days: tuple[int, ...]
    created_ms: int | None = None
    retired_ms: int | None = None
    from_config: bool = False     # the default hall, not (yet) in the store

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def retired(self) -> bool:
        return self.retired_ms is not None

    def opens_on(self, day: dt.date) -> bool:
        """Whether the hall opens on a local date: its opening days, except China's statutory
        holidays (closed) and adjusted working days (调休: open), from gateway/workdays.py. A hall
        open all seven days ignores the calendar; a year the calendar does not know falls back
        to the weekdays alone (a press is never refused over a calendar)."""
        if len(set(self.opening_days)) == 7:
            return True
        reason = _day_reason(day)
        if reason in ("national_holiday", "local_holiday"):
            return False
        if reason in ("national_working_day", "local_working_day"):
            return any(d <= 5 for d in self.opening_days)
        return day.isoweekday() in self.opening_days

    def is_open(self, epoch_ms: int) -> bool:
        """Whether the hall is open at this UTC instant (its local opening hours and days)."""
        local = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=self.tz)
        if not self.opens_on(local.date()):
            return False
        minute = local.hour * 60 + local.minute
        return any(r.start_min <= minute < r.end_min for r in self.opening_hours)

    @property
    def hours_text(self) -> list[str]:
        return [_hm(r.start_min) + "-" + _hm(r.end_min) for r in self.opening_hours]

    def public(self) -> dict[str, Any]:
        return {"hall_id": self.hall_id, "name": self.name, "kind": self.kind, "parent_id": self.parent_id,
                "area_code": self.area_code, "timezone": self.timezone, "opening_hours": self.hours_text,
                "opening_days": list(self.opening_days), "created_ms": self.created_ms,
                "retired_ms": self.retired_ms, "from_config": self.from_config}


@functools.lru_cache(maxsize=4096)
def _day_reason(day: dt.date) -> str:
    """The national calendar's reason for a date (weekday, weekend, national_holiday, ...), or
    "unknown" for a year it does not know."""
    try:
        return _CALENDAR.day_info(day).reason
    except UnknownYearError:
        return "unknown"


def _hm(minutes: int) -> str:
    return "%02d:%02d" % divmod(minutes, 60)


def default_hall(h: HallConfig) -> Hall:
    return Hall(h.id, h.name or h.id, "centre", None, h.area_code, h.timezone, h.opening_hours,
                h.opening_days, from_config=True)


def _from_row(r: HallRow) -> Hall:
    return Hall(r.hall_id, r.name, r.kind, r.parent_id, r.area_code, r.timezone,
                parse_opening_hours([t for t in r.opening_hours.split(",") if t], "hall %s" % r.hall_id),
                tuple(int(d) for d in r.opening_days.split(",") if d), r.created_ms, r.retired_ms)


def find_hall(tx: Tx, default: HallConfig, hall_id: str | None) -> Hall | None:
    """The hall hall_id (None: the default hall), or None when there is no such hall."""
    key = default.id if hall_id is None else hall_id
    row = tx.org.get_hall(key)
    if row is not None:
        return _from_row(row)
    return default_hall(default) if key == default.id else None


def get_hall(tx: Tx, default: HallConfig, hall_id: str | None) -> Hall:
    h = find_hall(tx, default, hall_id)
    if h is None:
        raise NotFound("unknown hall %s" % hall_id, "unknown_hall")
    return h


class HallDirectory:
    """Halls read once per unit of work (attribution asks for the same few halls per batch)."""

    def __init__(self, default: HallConfig) -> None:
        self.default = default
        self._cache: dict[str | None, Hall] = {}

    def get(self, tx: Tx, hall_id: str | None) -> Hall:
        """The hall (the default hall for None or an id no longer known: a press is never lost
        over a hall that was mistyped in the store)."""
        h = self._cache.get(hall_id)
        if h is None:
            h = find_hall(tx, self.default, hall_id) or default_hall(self.default)
            self._cache[hall_id] = h
        return h


def list_halls_tx(tx: Tx, default: HallConfig) -> list[Hall]:
    halls = [_from_row(r) for r in tx.org.list_halls()]
    if all(h.hall_id != default.id for h in halls):
        halls.insert(0, default_hall(default))
    return halls


async def list_halls(store: Store, default: HallConfig) -> list[Hall]:
    return await store.read(lambda tx: list_halls_tx(tx, default))


@dataclass(frozen=True)
class HallSpec:
    """What `halls add` / `halls set` give; None leaves a field as it is (set) or defaulted (add)."""

    name: str | None = None
    kind: str | None = None
    parent_id: str | None = None
    area_code: str | None = None
    timezone: str | None = None
    opening_hours: tuple[str, ...] | None = None
    opening_days: tuple[int, ...] | None = None
    no_parent: bool = False       # set: remove the parent


def _check_hall_spec(spec: HallSpec) -> dict[str, Any]:
    """Validated store fields of the spec (only those given)."""
    out: dict[str, Any] = {}
    if spec.name is not None:
        out["name"] = check_text("hall name", spec.name, 1, 64)
    if spec.kind is not None:
        if spec.kind not in HALL_KINDS:
            raise BadInput("hall kind must be one of %s" % ", ".join(HALL_KINDS), "bad_hall_kind")
        out["kind"] = spec.kind
    if spec.area_code is not None:
        if spec.area_code and not AREA_CODE.fullmatch(spec.area_code):
            raise BadInput("area code must be 6 to 12 digits", "bad_area_code")
        out["area_code"] = spec.area_code
    if spec.timezone is not None:
        try:
            zoneinfo.ZoneInfo(spec.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise BadInput("time zone %r is not a known IANA zone (e.g. Asia/Shanghai)" % spec.timezone,
                           "bad_timezone") from None
        out["timezone"] = spec.timezone
    if spec.opening_hours is not None:
        try:
            ranges = parse_opening_hours(list(spec.opening_hours), "opening hours")
        except ConfigError as e:
            raise BadInput(str(e), "bad_opening_hours") from None
        if not ranges:
            raise BadInput("opening hours need at least one HH:MM-HH:MM range", "bad_opening_hours")
        out["opening_hours"] = ",".join(_hm(r.start_min) + "-" + _hm(r.end_min) for r in ranges)
    if spec.opening_days is not None:
        if not spec.opening_days or not all(type(d) is int and 1 <= d <= 7 for d in spec.opening_days):
            raise BadInput("opening days must be ISO weekdays 1..7 (1 = Monday)", "bad_opening_days")
        out["opening_days"] = ",".join(str(d) for d in sorted(set(spec.opening_days)))
    return out


def _check_parent(tx: Tx, default: HallConfig, hall_id: str, parent_id: str) -> None:
    parent = find_hall(tx, default, parent_id)
    if parent is None:
        raise NotFound("unknown parent hall %s" % parent_id, "unknown_hall")
    if parent.retired:
        raise Conflict("parent hall %s is retired" % parent_id, "hall_retired")
    seen = {hall_id}
    h: Hall | None = parent
    while h is not None:
        if h.hall_id in seen:
            raise Conflict("hall %s cannot be inside itself (parent chain %s)" % (hall_id, parent_id),
                           "hall_cycle")
        seen.add(h.hall_id)
        h = find_hall(tx, default, h.parent_id) if h.parent_id else None


async def add_hall(store: Store, default: HallConfig, hall_id: str, spec: HallSpec, actor: str,
                   at_ms: int | None = None) -> Hall:
    """A new hall. name and kind are required; time zone and opening hours default to its
    parent's (a village point keeps its town's), else to the default hall's."""
    if not isinstance(hall_id, str) or not HALL_ID.fullmatch(hall_id):
        raise BadInput("hall id must match [A-Za-z0-9_.-]{1,32}", "bad_hall_id")
    fields = _check_hall_spec(spec)
    if "name" not in fields or "kind" not in fields:
        raise BadInput("a hall needs a name and a kind (%s)" % ", ".join(HALL_KINDS), "missing_field")
    t = now_ms() if at_ms is None else at_ms

    def unit(tx: Tx) -> Hall:
        if tx.org.get_hall(hall_id) is not None:
            raise Conflict("hall %s already exists" % hall_id, "hall_exists")
        base = default_hall(default)
        if spec.parent_id:
            _check_parent(tx, default, hall_id, spec.parent_id)
            base = get_hall(tx, default, spec.parent_id)
        row = HallRow(hall_id, fields["name"], fields["kind"], spec.parent_id or None,
                      fields.get("area_code", ""), fields.get("timezone", base.timezone),
                      fields.get("opening_hours", ",".join(base.hours_text)),
                      fields.get("opening_days", ",".join(str(d) for d in base.opening_days)), t, None)
        try:
            tx.org.add_hall(row)
        except IntegrityError:
            raise Conflict("hall %s already exists" % hall_id, "hall_exists") from None
        audit(tx, actor, "hall.add", hall_id, {k: v for k, v in asdict(row).items()
                                               if k not in ("hall_id", "created_ms", "retired_ms")}, t)
        return _from_row(row)
    return await store.write(unit)


async def update_hall(store: Store, default: HallConfig, hall_id: str, spec: HallSpec, actor: str,
                      at_ms: int | None = None) -> Hall:
    """Rename, move (parent), re-time (zone, hours, days) or re-kind a hall. The default hall is
    first copied into the store (its config values stay the defaults of what is not given)."""
    fields = _check_hall_spec(spec)
    t = now_ms() if at_ms is None else at_ms

    def unit(tx: Tx) -> Hall:
        h = get_hall(tx, default, hall_id)
        if spec.no_parent:
            fields["parent_id"] = None
        elif spec.parent_id:
            _check_parent(tx, default, hall_id, spec.parent_id)
            fields["parent_id"] = spec.parent_id
        if not fields:
            raise BadInput("nothing to change", "nothing_to_change")
        if h.from_config:
            days = ",".join(str(d) for d in h.opening_days)
            tx.org.add_hall(HallRow(h.hall_id, h.name, h.kind, None, h.area_code, h.timezone,
                                    ",".join(h.hours_text), days, t, None))
        before = {k: h.public().get(k) for k in fields}
        tx.org.update_hall(hall_id, fields)
        audit(tx, actor, "hall.update", hall_id, {"before": before, "after": fields}, t)
        return get_hall(tx, default, hall_id)
    return await store.write(unit)


async def retire_hall(store: Store, default: HallConfig, hall_id: str, actor: str,
                      at_ms: int | None = None) -> Hall:
    t = now_ms() if at_ms is None else at_ms

    def unit(tx: Tx) -> Hall:
        h = get_hall(tx, default, hall_id)
        if h.from_config or hall_id == default.id:
            raise Conflict("hall %s is the default hall ([hall] in the config): it cannot be retired"
                           % hall_id, "default_hall")
        if h.retired:
            raise Conflict("hall %s is already retired" % hall_id, "already_retired")
        used = {k: n for k, n in tx.org.count_in_hall(hall_id).items() if n}
        if used:
            raise Conflict("hall %s still has %s: move or retire them first" % (
                hall_id, ", ".join("%d %s" % (n, k) for k, n in sorted(used.items()))), "hall_in_use")
        tx.org.update_hall(hall_id, {"retired_ms": t})
        audit(tx, actor, "hall.retire", hall_id, {}, t)
        return get_hall(tx, default, hall_id)
    return await store.write(unit)


def _usable_hall(tx: Tx, default: HallConfig, hall_id: str | None) -> str | None:
    """hall_id checked for new things (exists, not retired); None stays None (default hall)."""
    if hall_id is None:
        return None
    h = get_hall(tx, default, hall_id)
    if h.retired:
        raise Conflict("hall %s is retired" % hall_id, "hall_retired")
    return hall_id


# ---- departments ----------------------------------------------------------------------------

def check_dept_code(code: Any, name: str = "department code") -> str:
    if not isinstance(code, str):
        raise BadInput("%s must be a string" % name, "bad_dept_code")
    text: str = code.strip().upper()
    why = uscc.problem(text)
    if why is not None:
        raise BadInput("%s %s: %s" % (name, text, why), "bad_dept_code")
    return text


async def add_department(store: Store, default: HallConfig, dept_code: str, name: str,
                         hall_id: str | None, actor: str, at_ms: int | None = None) -> Department:
    code = check_dept_code(dept_code)
    name = check_text("department name", name, 1, 64)
    t = now_ms() if at_ms is None else at_ms

    def unit(tx: Tx) -> Department:
        if tx.org.get_department(code) is not None:
            raise Conflict("department %s already exists" % code, "department_exists")
        hall = _usable_hall(tx, default, hall_id)
        d = Department(code, name, hall, t, None)
        try:
            tx.org.add_department(d)
        except IntegrityError:
            raise Conflict("department %s already exists" % code, "department_exists") from None
        audit(tx, actor, "department.add", code, {"name": name, "hall": hall}, t)
        return d
    return await store.write(unit)


def get_department(tx: Tx, dept_code: str) -> Department:
    d = tx.org.get_department(dept_code.strip().upper())
    if d is None:
        raise NotFound("unknown department %s" % dept_code, "unknown_department")
    return d


async def update_department(store: Store, default: HallConfig, dept_code: str, actor: str, *,
                            name: str | None = None, hall_id: str | None = None,
                            at_ms: int | None = None) -> Department:
    """Rename and/or move (to another hall) a department. Its windows stay where they are
    (move them with move_window): a department may have windows in several halls."""
    t = now_ms() if at_ms is None else at_ms
    fields: dict[str, Any] = {}
    if name is not None:
        fields["name"] = check_text("department name", name, 1, 64)

    def unit(tx: Tx) -> Department:
        d = get_department(tx, dept_code)
        if hall_id is not None:
            fields["hall_id"] = _usable_hall(tx, default, hall_id)
        if not fields:
            raise BadInput("nothing to change", "nothing_to_change")
        tx.org.update_department(d.dept_code, fields)
        audit(tx, actor, "department.update", d.dept_code,
              {"before": {k: getattr(d, k) for k in fields}, "after": fields}, t)
        return get_department(tx, d.dept_code)
    return await store.write(unit)


async def retire_department(store: Store, dept_code: str, actor: str, at_ms: int | None = None) -> Department:
    t = now_ms() if at_ms is None else at_ms

    def unit(tx: Tx) -> Department:
        d = get_department(tx, dept_code)
        if d.retired:
            raise Conflict("department %s is already retired" % d.dept_code, "already_retired")
        windows = tx.org.windows_of_department(d.dept_code)
        if windows:
            raise Conflict("department %s still has windows %s: move or retire them first"
                           % (d.dept_code, ", ".join(windows[:10])), "department_in_use")
        tx.org.update_department(d.dept_code, {"retired_ms": t})
        audit(tx, actor, "department.retire", d.dept_code, {}, t)
        return get_department(tx, d.dept_code)
    return await store.write(unit)


async def list_departments(store: Store) -> list[Department]:
    return await store.read(lambda tx: tx.org.list_departments())


def _usable_dept(tx: Tx, dept_code: str | None) -> str:
    """A department code for a window or clerk: "" (none), a registered department that is
    not retired, or a valid code of a department not registered (yet): it is shown by its code."""
    if not dept_code:
        return ""
    code = check_dept_code(dept_code)
    d = tx.org.get_department(code)
    if d is not None and d.retired:
        raise Conflict("department %s is retired" % code, "department_retired")
    return code


# ---- windows --------------------------------------------------------------------------------

def get_window(tx: Tx, window_id: str) -> Window:
    w = tx.org.get_window(window_id)
    if w is None:
        raise NotFound("unknown window %s" % window_id, "unknown_window")
    return w


async def add_window(store: Store, default: HallConfig, window_id: str, dept_code: str, name: str,
                     hall_id: str | None, actor: str, at_ms: int | None = None) -> Window:
    window_id = check_text("window", window_id, 1, 16, max_bytes=WINDOW_NO_MAX_BYTES)
    name = check_text("name", name, 0, 64)
    t = now_ms() if at_ms is None else at_ms

    def unit(tx: Tx) -> Window:
        if tx.org.get_window(window_id) is not None:
            raise Conflict("window %s already exists" % window_id, "window_exists")
        dept = _usable_dept(tx, dept_code)
        hall = _usable_hall(tx, default, hall_id)
        try:
            tx.org.add_window(window_id, dept, name, t, hall)
        except IntegrityError:
            raise Conflict("window %s already exists" % window_id, "window_exists") from None
        audit(tx, actor, "window.add", window_id, {"dept_code": dept, "name": name, "hall": hall}, t)
        return get_window(tx, window_id)
    return await store.write(unit)


async def rename_window(store: Store, window_id: str, name: str, actor: str,
                        at_ms: int | None = None) -> Window:
    name = check_text("name", name, 0, 64)
    t = now_ms() if at_ms is None else at_ms

    def unit(tx: Tx) -> Window:
        w = get_window(tx, window_id)
        tx.org.update_window(w.window_id, {"name": name})
        audit(tx, actor, "window.rename", w.window_id, {"before": w.name, "after": name}, t)
        return get_window(tx, w.window_id)
    return await store.write(unit)


_KEEP = object()   # move_window: leave this part of the place as it is


async def move_window(store: Store, default: HallConfig, window_id: str, actor: str, *,
                      hall_id: Any = _KEEP, dept_code: Any = _KEEP, at_ms: int | None = None) -> Window:
    """Move a window to another hall and/or department from now on. Presses before the move
    stay credited to the old place (window_places keeps the history)."""
    t = now_ms() if at_ms is None else at_ms

    def unit(tx: Tx) -> Window:
        w = get_window(tx, window_id)
        if w.retired:
            raise Conflict("window %s is retired" % window_id, "window_retired")
        hall = w.hall_id if hall_id is _KEEP else _usable_hall(tx, default, hall_id)
        dept = w.dept_code if dept_code is _KEEP else _usable_dept(tx, dept_code)
        if (hall, dept) == (w.hall_id, w.dept_code):
            raise BadInput("window %s is already there" % window_id, "nothing_to_change")
        tx.org.place_window(w.window_id, hall, dept, t)
        audit(tx, actor, "window.move", w.window_id,
              {"before": {"hall": w.hall_id, "dept_code": w.dept_code},
               "after": {"hall": hall, "dept_code": dept}}, t)
        return get_window(tx, w.window_id)
    return await store.write(unit)


async def retire_window(store: Store, window_id: str, actor: str, at_ms: int | None = None) -> Window:
    t = now_ms() if at_ms is None else at_ms

    def unit(tx: Tx) -> Window:
        w = get_window(tx, window_id)
        if w.retired:
            raise Conflict("window %s is already retired" % window_id, "already_retired")
        b = tx.bindings.active_for_window(w.window_id)
        if b is not None:
            raise Conflict("window %s is bound to device %s (clerk %s): unpair it first"
                           % (w.window_id, b.device_id, b.staff_account), "window_in_use")
        tx.org.update_window(w.window_id, {"retired_ms": t})
        audit(tx, actor, "window.retire", w.window_id, {}, t)
        return get_window(tx, w.window_id)
    return await store.write(unit)


async def window_history(store: Store, window_id: str) -> list[WindowPlace]:
    def read(tx: Tx) -> list[WindowPlace]:
        get_window(tx, window_id)
        return tx.org.window_places(window_id)
    return await store.read(read)


# ---- clerks ---------------------------------------------------------------------------------

def get_staff(tx: Tx, account: str) -> Staff:
    s = tx.org.get_staff(account)
    if s is None:
        raise NotFound("unknown staff account %s" % account, "unknown_staff")
    return s


async def add_staff(store: Store, account: str, display_name: str, dept_code: str, actor: str,
                    at_ms: int | None = None) -> Staff:
    account = check_text("account", account, 1, 64)
    display_name = check_text("display name", display_name, 1, 64)
    t = now_ms() if at_ms is None else at_ms

    def unit(tx: Tx) -> Staff:
        if tx.org.get_staff(account) is not None:
            raise Conflict("staff account %s already exists" % account, "staff_exists")
        dept = _usable_dept(tx, dept_code)
        try:
            tx.org.add_staff(account, display_name, t, dept)
        except IntegrityError:
            raise Conflict("staff account %s already exists" % account, "staff_exists") from None
        audit(tx, actor, "staff.add", account, {"display_name": display_name, "dept_code": dept}, t)
        return get_staff(tx, account)
    return await store.write(unit)


async def update_staff(store: Store, account: str, actor: str, *, display_name: str | None = None,
                       dept_code: str | None = None, at_ms: int | None = None) -> Staff:
    """Rename a clerk and/or move them to another department. Their past ratings stay where
    they were earned (credited through the binding and window at press time)."""
    t = now_ms() if at_ms is None else at_ms
    fields: dict[str, Any] = {}
    if display_name is not None:
        fields["display_name"] = check_text("display name", display_name, 1, 64)

    def unit(tx: Tx) -> Staff:
        s = get_staff(tx, account)
        if dept_code is not None:
            fields["dept_code"] = _usable_dept(tx, dept_code)
        if not fields:
            raise BadInput("nothing to change", "nothing_to_change")
        tx.org.update_staff(s.account, fields)
        audit(tx, actor, "staff.update", s.account, {"before": {k: getattr(s, k) for k in fields},
                                                     "after": fields}, t)
        return get_staff(tx, s.account)
    return await store.write(unit)


async def retire_staff(store: Store, account: str, actor: str, at_ms: int | None = None) -> Staff:
    t = now_ms() if at_ms is None else at_ms

    def unit(tx: Tx) -> Staff:
        s = get_staff(tx, account)
        if s.retired:
            raise Conflict("staff account %s is already retired" % account, "already_retired")
        b = tx.bindings.active_for_staff(s.account)
        if b is not None:
            raise Conflict("clerk %s is bound to device %s at window %s: unpair first"
                           % (s.account, b.device_id, b.window_id), "staff_in_use")
        tx.org.update_staff(s.account, {"retired_ms": t})
        audit(tx, actor, "staff.retire", s.account, {}, t)
        return get_staff(tx, s.account)
    return await store.write(unit)


# ---- devices ------------------------------------------------------------------------------

async def move_device(store: Store, default: HallConfig, device_id: str, hall_id: str, actor: str,
                      at_ms: int | None = None) -> str:
    """Put a device in a hall (its records without a binding are that hall's)."""
    t = now_ms() if at_ms is None else at_ms

    def unit(tx: Tx) -> str:
        if not tx.devices.exists(device_id):
            raise NotFound("unknown device %s" % device_id, "unknown_device")
        before = tx.org.device_hall(device_id)
        hall = _usable_hall(tx, default, hall_id)
        tx.org.set_device_hall(device_id, hall)
        audit(tx, actor, "device.move", device_id, {"before": before, "after": hall}, t)
        return str(hall_id)
    return await store.write(unit)


# ---- what retiring and pairing need -------------------------------------------------------------

def check_active(tx: Tx, window_id: str | None = None, staff_account: str | None = None) -> None:
    """Conflict when the window, its hall or the clerk is retired (pairing refuses them)."""
    if window_id is not None:
        w = tx.org.get_window(window_id)
        if w is not None:
            if w.retired:
                raise Conflict("window %s is retired" % window_id, "window_retired")
            h = tx.org.get_hall(w.hall_id) if w.hall_id is not None else None
            if h is not None and h.retired_ms is not None:
                raise Conflict("window %s is in retired hall %s" % (window_id, h.hall_id), "hall_retired")
    if staff_account is not None:
        s = tx.org.get_staff(staff_account)
        if s is not None and s.retired:
            raise Conflict("staff account %s is retired" % staff_account, "staff_retired")


# ---- press-time attribution ----------------------------------------------------------------

def place_at(tx: Tx, window_id: str, at_ms: int) -> tuple[str | None, str]:
    """(hall_id, dept_code) of the window at at_ms: its place then; before its first place (a
    device clock a little behind) its first place; with no history its current place."""
    p = tx.org.place_at(window_id, at_ms)
    if p is not None:
        return p.hall_id, p.dept_code
    return place_from(tx.org.window_places(window_id), at_ms) or _current_place(tx, window_id)


def place_from(places: list[WindowPlace], at_ms: int) -> tuple[str | None, str] | None:
    """place_at over a window's places (oldest first), without the store."""
    for p in reversed(places):   # latest-starting first
        if p.valid_from_ms <= at_ms and (p.valid_to_ms is None or p.valid_to_ms > at_ms):
            return p.hall_id, p.dept_code
    if places and at_ms < places[0].valid_from_ms:
        return places[0].hall_id, places[0].dept_code
    return None


def _current_place(tx: Tx, window_id: str) -> tuple[str | None, str]:
    w = tx.org.get_window(window_id)
    return (w.hall_id, w.dept_code) if w is not None else (None, "")


@dataclass(frozen=True)
class PressOrg:
    """Who and where a record is credited to, as at its press (names as they are today)."""

    record_id: str
    pressed_at_ms: int
    device_id: str
    hall_id: str
    hall_name: str
    dept_code: str             # "" when the window had no department
    dept_name: str
    window_id: str | None      # None: no binding at press time (record flagged unbound)
    window_name: str
    staff_account: str | None
    staff_name: str
    binding_id: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def org_at_press_time(tx: Tx, record_id: str, default: HallConfig) -> PressOrg:
    """The hall, department, window and clerk of a record as they were when it was pressed.

    Inside a unit of work (`await store.read(lambda tx: org_at_press_time(tx, rid, cfg.hall))`).
    The window and clerk are the binding's at press time (attribution), the hall and department
    the window's place at press time; a record without a binding is its device's hall's, with
    no department. NotFound for an unknown record id."""
    return orgs_at_press_time(tx, [record_id], default)[0]


def orgs_at_press_time(tx: Tx, record_ids: Iterable[str], default: HallConfig) -> list[PressOrg]:
    """org_at_press_time for many records (in the order given), reading each name once."""
    out: list[PressOrg] = []
    halls = HallDirectory(default)
    depts: dict[str, Department | None] = {}
    windows: dict[str, Window | None] = {}
    staff: dict[str, Staff | None] = {}
    for rid in record_ids:
        r = tx.records.get(rid)
        if r is None:
            raise NotFound("unknown record %s" % rid, "unknown_record")
        win, acct = r.get("window_id"), r.get("staff_account")
        hall_id, dept = r.get("hall_id"), r.get("dept_code")
        if win is not None and dept is None:   # a record stored before the organisation existed
            hall_id, dept = place_at(tx, win, int(r["pressed_at_ms"]))
        if win is None and hall_id is None:
            hall_id = tx.org.device_hall(r["device_id"])
        hall = halls.get(tx, hall_id)
        dept = dept or ""
        if dept not in depts:
            depts[dept] = tx.org.get_department(dept) if dept else None
        if win is not None and win not in windows:
            windows[win] = tx.org.get_window(win)
        if acct is not None and acct not in staff:
            staff[acct] = tx.org.get_staff(acct)
        d, w, s = depts[dept], windows.get(win) if win else None, staff.get(acct) if acct else None
        out.append(PressOrg(rid, int(r["pressed_at_ms"]), r["device_id"], hall.hall_id, hall.name, dept,
                            d.name if d else dept, win, w.name if w else "", acct,
                            s.display_name if s else (acct or ""),
                            None if r.get("binding_id") is None else int(r["binding_id"])))
    return out


# ---- the whole tree --------------------------------------------------------------------------

@dataclass
class OrgTree:
    district: DistrictSettings
    halls: list[Hall]
    departments: list[Department]
    windows: list[Window]
    staff: list[Staff]
    device_halls: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self, include_retired: bool = True) -> dict[str, Any]:
        def keep(x: Any) -> bool:
            return include_retired or getattr(x, "retired_ms", None) is None
        return {"district": asdict(self.district),
                "halls": [h.public() for h in self.halls if keep(h)],
                "departments": [asdict(d) for d in self.departments if keep(d)],
                "windows": [asdict(w) for w in self.windows if keep(w)],
                "staff": [asdict(s) for s in self.staff if keep(s)],
                "devices": [{"device_id": k, "hall_id": v} for k, v in sorted(self.device_halls.items())]}


async def tree(store: Store, cfg: Config) -> OrgTree:
    district = cfg.sections.get("district") or DistrictSettings.from_config(cfg)

    def read(tx: Tx) -> OrgTree:
        return OrgTree(district, list_halls_tx(tx, cfg.hall), tx.org.list_departments(),
                       tx.org.list_windows(), tx.org.list_staff(), tx.org.device_halls())
    return await store.read(read)

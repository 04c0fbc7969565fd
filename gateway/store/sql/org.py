"""Organisation (windows, clerks) and the bindings history (一码一账号)."""

from __future__ import annotations

from typing import Any

from gateway.store.rows import Binding, Department, HallRow, Staff, Window, WindowPlace
from gateway.store.sql.conn import Conn

_WINDOW = "SELECT window_id, dept_code, name, hall_id, retired_ms FROM windows"
_STAFF = "SELECT account, display_name, dept_code, retired_ms FROM staff"
_HALL = ("SELECT hall_id, name, kind, parent_id, area_code, timezone, opening_hours, opening_days,"
         " created_ms, retired_ms FROM halls")
_DEPT = "SELECT dept_code, name, hall_id, created_ms, retired_ms FROM departments"
_PLACE = "SELECT window_id, hall_id, dept_code, valid_from_ms, valid_to_ms FROM window_places"
_NEW_PLACE = "INSERT INTO window_places (window_id, hall_id, dept_code, valid_from_ms) VALUES (?, ?, ?, ?)"


def _opt(v: Any) -> int | None:
    return None if v is None else int(v)


def _window(r: tuple[Any, ...]) -> Window:
    return Window(r[0], r[1], r[2], r[3], _opt(r[4]))


def _staff(r: tuple[Any, ...]) -> Staff:
    return Staff(r[0], r[1], r[2], _opt(r[3]))


def _hall(r: tuple[Any, ...]) -> HallRow:
    return HallRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], int(r[8]), _opt(r[9]))


def _dept(r: tuple[Any, ...]) -> Department:
    return Department(r[0], r[1], r[2], int(r[3]), _opt(r[4]))


def _place(r: tuple[Any, ...]) -> WindowPlace:
    return WindowPlace(r[0], r[1], r[2], int(r[3]), _opt(r[4]))


class SqlOrg:
    """Halls, departments, windows (with their place history), clerks, devices' halls.
    Rows are never deleted: retiring sets retired_ms."""

    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def _update(self, table: str, key_col: str, key: str, fields: dict[str, Any], allowed: set[str]) -> None:
        bad = set(fields) - allowed
        if bad:
            raise ValueError("cannot update %s of %s" % (sorted(bad), table))
        if fields:
            cols = sorted(fields)
            sets = ", ".join(c + " = ?" for c in cols)
            self.c.execute("UPDATE %s SET %s WHERE %s = ?" % (table, sets, key_col),
                           [*(fields[c] for c in cols), key])

    # -- windows ---------------------------------------------------------------------------------

    def add_window(self, window_id: str, dept_code: str, name: str, at_ms: int,
                   hall_id: str | None = None) -> None:
        """IntegrityError if the window exists. Opens its first place (hall, department)."""
        self.c.execute("INSERT INTO windows (window_id, dept_code, name, created_ms, hall_id)"
                       " VALUES (?, ?, ?, ?, ?)", (window_id, dept_code, name, at_ms, hall_id))
        self.c.execute(_NEW_PLACE, (window_id, hall_id, dept_code, at_ms))

    def get_window(self, window_id: str) -> Window | None:
        r = self.c.one(_WINDOW + " WHERE window_id = ?", (window_id,))
        return None if r is None else _window(r)

    def list_windows(self) -> list[Window]:
        return [_window(r) for r in self.c.rows(_WINDOW + " ORDER BY window_id")]

    def update_window(self, window_id: str, fields: dict[str, Any]) -> None:
        """name / retired_ms (a place change goes through place_window)."""
        self._update("windows", "window_id", window_id, fields, {"name", "retired_ms"})

    def place_window(self, window_id: str, hall_id: str | None, dept_code: str, at_ms: int) -> None:
        """Move the window from at_ms on: its open place closes, a new one opens."""
        self.c.execute("UPDATE window_places SET valid_to_ms = %s(valid_from_ms, ?)"
                       " WHERE window_id = ? AND valid_to_ms IS NULL" % self.c.greatest, (at_ms, window_id))
        self.c.execute(_NEW_PLACE, (window_id, hall_id, dept_code, at_ms))
        self.c.execute("UPDATE windows SET hall_id = ?, dept_code = ? WHERE window_id = ?",
                       (hall_id, dept_code, window_id))

    def window_places(self, window_id: str) -> list[WindowPlace]:
        """The window's places, oldest first."""
        return [_place(r) for r in self.c.rows(_PLACE + " WHERE window_id = ? ORDER BY valid_from_ms, id",
                                                (window_id,))]

    def place_at(self, window_id: str, at_ms: int) -> WindowPlace | None:
        """Where the window was at at_ms (a place is [from, to)); the latest-starting one."""
        r = self.c.one(_PLACE + " WHERE window_id = ? AND valid_from_ms <= ? AND (valid_to_ms IS NULL"
                       " OR valid_to_ms > ?) ORDER BY valid_from_ms DESC, id DESC LIMIT 1",
                       (window_id, at_ms, at_ms))
        return None if r is None else _place(r)

    # -- clerks ----------------------------------------------------------------------------------

    def add_staff(self, account: str, display_name: str, at_ms: int, dept_code: str = "") -> None:
        """IntegrityError if the account exists."""
        self.c.execute("INSERT INTO staff (account, display_name, created_ms, dept_code) VALUES (?, ?, ?, ?)",
                       (account, display_name, at_ms, dept_code))

    def get_staff(self, account: str) -> Staff | None:
        r = self.c.one(_STAFF + " WHERE account = ?", (account,))
        return None if r is None else _staff(r)

    def list_staff(self) -> list[Staff]:
        return [_staff(r) for r in self.c.rows(_STAFF + " ORDER BY account")]

    def update_staff(self, account: str, fields: dict[str, Any]) -> None:
        """display_name / dept_code / retired_ms."""
        self._update("staff", "account", account, fields, {"display_name", "dept_code", "retired_ms"})

    # -- halls -----------------------------------------------------------------------------------

    def add_hall(self, h: HallRow) -> None:
        """IntegrityError if the hall exists."""
        self.c.execute(
            "INSERT INTO halls (hall_id, name, kind, parent_id, area_code, timezone, opening_hours,"
            " opening_days, created_ms, retired_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (h.hall_id, h.name, h.kind, h.parent_id, h.area_code, h.timezone, h.opening_hours, h.opening_days,
             h.created_ms, h.retired_ms))

    def get_hall(self, hall_id: str) -> HallRow | None:
        r = self.c.one(_HALL + " WHERE hall_id = ?", (hall_id,))
        return None if r is None else _hall(r)

    def list_halls(self) -> list[HallRow]:
        return [_hall(r) for r in self.c.rows(_HALL + " ORDER BY hall_id")]

    def update_hall(self, hall_id: str, fields: dict[str, Any]) -> None:
        self._update("halls", "hall_id", hall_id, fields,
                     {"name", "kind", "parent_id", "area_code", "timezone", "opening_hours", "opening_days",
                      "retired_ms"})

    # -- departments -----------------------------------------------------------------------------

    def add_department(self, d: Department) -> None:
        """IntegrityError if the code exists."""
        self.c.execute("INSERT INTO departments (dept_code, name, hall_id, created_ms, retired_ms)"
                       " VALUES (?, ?, ?, ?, ?)",
                       (d.dept_code, d.name, d.hall_id, d.created_ms, d.retired_ms))

    def get_department(self, dept_code: str) -> Department | None:
        r = self.c.one(_DEPT + " WHERE dept_code = ?", (dept_code,))
        return None if r is None else _dept(r)

    def list_departments(self) -> list[Department]:
        return [_dept(r) for r in self.c.rows(_DEPT + " ORDER BY dept_code")]

    def update_department(self, dept_code: str, fields: dict[str, Any]) -> None:
        self._update("departments", "dept_code", dept_code, fields, {"name", "hall_id", "retired_ms"})

    # -- devices' halls --------------------------------------------------------------------------

    def device_hall(self, device_id: str) -> str | None:
        v = self.c.scalar("SELECT hall_id FROM devices WHERE device_id = ?", (device_id,))
        return None if v is None else str(v)

    def device_halls(self) -> dict[str, str | None]:
        return {str(r[0]): r[1] for r in self.c.rows("SELECT device_id, hall_id FROM devices")}

    def set_device_hall(self, device_id: str, hall_id: str | None) -> None:
        self.c.execute("UPDATE devices SET hall_id = ? WHERE device_id = ?", (hall_id, device_id))

    # -- usage, for retiring ---------------------------------------------------------------------

    def count_in_hall(self, hall_id: str) -> dict[str, int]:
        """Active (not retired) things placed in the hall: windows, departments, devices, child halls."""
        return {
            "windows": int(self.c.scalar("SELECT count(*) FROM windows WHERE hall_id = ?"
                                         " AND retired_ms IS NULL", (hall_id,))),
            "departments": int(self.c.scalar("SELECT count(*) FROM departments WHERE hall_id = ?"
                                             " AND retired_ms IS NULL", (hall_id,))),
            "devices": int(self.c.scalar("SELECT count(*) FROM devices WHERE hall_id = ? AND enabled = 1",
                                         (hall_id,))),
            "halls": int(self.c.scalar("SELECT count(*) FROM halls WHERE parent_id = ?"
                                       " AND retired_ms IS NULL", (hall_id,))),
        }

    def windows_of_department(self, dept_code: str) -> list[str]:
        return [str(r[0]) for r in self.c.rows("SELECT window_id FROM windows WHERE dept_code = ?"
                                               " AND retired_ms IS NULL ORDER BY window_id", (dept_code,))]


_SELECT = (
    "SELECT b.id, b.device_id, b.window_id, b.staff_account, s.display_name,"
    " b.valid_from_ms, b.valid_to_ms, b.created_by, b.ended_by"
    " FROM bindings b JOIN staff s ON s.account = b.staff_account"
)


def _b(r: tuple[Any, ...]) -> Binding:
    return Binding(int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), None if r[6] is None else int(r[6]),
                   r[7], r[8])


class SqlBindings:
    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def _where(self, where: str, args: tuple[Any, ...]) -> list[Binding]:
        return [_b(r) for r in self.c.rows(_SELECT + " WHERE " + where, args)]

    def active_for_device(self, device_id: str) -> Binding | None:
        rows = self._where("b.device_id = ? AND b.valid_to_ms IS NULL", (device_id,))
        return rows[0] if rows else None

    def active_for_window(self, window_id: str) -> Binding | None:
        rows = self._where("b.window_id = ? AND b.valid_to_ms IS NULL", (window_id,))
        return rows[0] if rows else None

    def active_for_staff(self, account: str) -> Binding | None:
        rows = self._where("b.staff_account = ? AND b.valid_to_ms IS NULL", (account,))
        return rows[0] if rows else None

    def at(self, device_id: str, at_ms: int) -> Binding | None:
        """The binding of device_id at the instant at_ms (a period is [from, to))."""
        rows = self._where(
            "b.device_id = ? AND b.valid_from_ms <= ? AND (b.valid_to_ms IS NULL OR b.valid_to_ms > ?)"
            " ORDER BY b.valid_from_ms DESC LIMIT 1", (device_id, at_ms, at_ms))
        return rows[0] if rows else None

    def of_device(self, device_id: str) -> list[Binding]:
        """Every binding of the device, latest start first."""
        return self._where("b.device_id = ? ORDER BY b.valid_from_ms DESC, b.id DESC", (device_id,))

    def listing(self, history: bool = False) -> list[Binding]:
        if history:
            return self._where("1=1 ORDER BY b.device_id, b.valid_from_ms, b.id", ())
        return self._where("b.valid_to_ms IS NULL ORDER BY b.window_id", ())

    def open(self, device_id: str, window_id: str, staff_account: str, at_ms: int, actor: str) -> int:
        """A new active binding; its id. IntegrityError on an overlap or a second active one."""
        return int(self.c.scalar(
            "INSERT INTO bindings (device_id, window_id, staff_account, valid_from_ms, created_by)"
            " VALUES (?, ?, ?, ?, ?) RETURNING id", (device_id, window_id, staff_account, at_ms, actor)))

    def close(self, binding_id: int, at_ms: int, actor: str) -> None:
        self.c.execute("UPDATE bindings SET valid_to_ms = ?, ended_by = ? WHERE id = ?",
                       (at_ms, actor, binding_id))

"""Organisation (windows, clerks) and the bindings history (一码一账号)."""

from __future__ import annotations

from typing import Any

from gateway.store.rows import Binding, Staff, Window
from gateway.store.sql.conn import Conn


class SqlOrg:
    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def add_window(self, window_id: str, dept_code: str, name: str, at_ms: int) -> None:
        """IntegrityError if the window exists."""
        self.c.execute("INSERT INTO windows (window_id, dept_code, name, created_ms) VALUES (?, ?, ?, ?)",
                       (window_id, dept_code, name, at_ms))

    def get_window(self, window_id: str) -> Window | None:
        r = self.c.one("SELECT window_id, dept_code, name FROM windows WHERE window_id = ?", (window_id,))
        return None if r is None else Window(*r)

    def list_windows(self) -> list[Window]:
        return [Window(*r) for r in self.c.rows("SELECT window_id, dept_code, name FROM windows"
                                                " ORDER BY window_id")]

    def add_staff(self, account: str, display_name: str, at_ms: int) -> None:
        """IntegrityError if the account exists."""
        self.c.execute("INSERT INTO staff (account, display_name, created_ms) VALUES (?, ?, ?)",
                       (account, display_name, at_ms))

    def get_staff(self, account: str) -> Staff | None:
        r = self.c.one("SELECT account, display_name FROM staff WHERE account = ?", (account,))
        return None if r is None else Staff(*r)

    def list_staff(self) -> list[Staff]:
        return [Staff(*r) for r in self.c.rows("SELECT account, display_name FROM staff ORDER BY account")]


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

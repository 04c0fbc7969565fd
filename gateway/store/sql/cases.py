"""The case feed (table cases): every 办件 the window systems report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.store.rows import CaseRow
from gateway.store.sql.conn import Conn

_COLS = ("case_no, hall_id, window_id, staff_account, staff_name, dept_code, task_code, task_name, status,"
         " accepted_ms, finished_ms, reported_ms, updated_ms, reported_by")
_IN_CHUNK = 500


def _row(r: tuple[Any, ...]) -> CaseRow:
    return CaseRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], int(r[9]),
                   None if r[10] is None else int(r[10]), int(r[11]), int(r[12]), r[13])


class SqlCases:
    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def get(self, case_no: str) -> CaseRow | None:
        r = self.c.one("SELECT %s FROM cases WHERE case_no = ?" % _COLS, (case_no,))
        return None if r is None else _row(r)

    def get_many(self, case_nos: Sequence[str]) -> dict[str, CaseRow]:
        out: dict[str, CaseRow] = {}
        for i in range(0, len(case_nos), _IN_CHUNK):
            chunk = case_nos[i:i + _IN_CHUNK]
            for r in self.c.rows("SELECT %s FROM cases WHERE case_no IN (%s)"
                                 % (_COLS, self.c.placeholders(len(chunk))), chunk):
                out[r[0]] = _row(r)
        return out

    def insert_many(self, rows: Sequence[CaseRow]) -> None:
        self.c.executemany("INSERT INTO cases (%s) VALUES (%s)" % (_COLS, self.c.placeholders(14)),
                           [_values(c) for c in rows])

    def update_many(self, rows: Sequence[CaseRow]) -> None:
        """Replace the reported facts of known cases (reported_ms and reported_by stay the first's)."""
        self.c.executemany(
            "UPDATE cases SET hall_id = ?, window_id = ?, staff_account = ?, staff_name = ?, dept_code = ?,"
            " task_code = ?, task_name = ?, status = ?, accepted_ms = ?, finished_ms = ?, updated_ms = ?"
            " WHERE case_no = ?",
            [(c.hall_id, c.window_id, c.staff_account, c.staff_name, c.dept_code, c.task_code, c.task_name,
              c.status, c.accepted_ms, c.finished_ms, c.updated_ms, c.case_no) for c in rows])

    def find(self, lo: int, hi: int, window_id: str | None = None, staff_account: str | None = None,
             limit: int = 1000) -> tuple[list[CaseRow], int]:
        """Cases accepted in [lo, hi) (oldest first, at most limit) and how many matched."""
        where, args = ["accepted_ms >= ?", "accepted_ms < ?"], [lo, hi]  # type: tuple[list[str], list[Any]]
        for cond, val in (("window_id = ?", window_id), ("staff_account = ?", staff_account)):
            if val is not None:
                where.append(cond)
                args.append(val)
        w = " AND ".join(where)
        total = int(self.c.scalar("SELECT count(*) FROM cases WHERE " + w, args))
        rows = [_row(r) for r in self.c.rows("SELECT %s FROM cases WHERE %s ORDER BY accepted_ms, case_no"
                                              " LIMIT ?" % (_COLS, w), [*args, limit])]
        return rows, total


def _values(c: CaseRow) -> tuple[Any, ...]:
    return (c.case_no, c.hall_id, c.window_id, c.staff_account, c.staff_name, c.dept_code, c.task_code,
            c.task_name, c.status, c.accepted_ms, c.finished_ms, c.reported_ms, c.updated_ms, c.reported_by)

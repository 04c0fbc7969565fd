"""Grouped counts for bulletins and supervision (read only): records with their uplink state,
invitations, cases. Every query takes a *scope*: one or more (halls, lo, hi) segments, because
a period's bounds depend on each hall's time zone; halls None means every hall. A NULL hall_id
(the default hall) is reported as the default hall's id, given by the caller.

Group keys: every query groups by hall and department (as stored: NULL is the default hall, or
no department; the caller maps them), plus one optional extra key:
    window  the window        clerk  the clerk account        item  the service item (code, name)
The domain (gateway/bulletin.py) sums them into the rows it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.store.sql.conn import Conn

Segment = tuple[tuple[str, ...] | None, int, int]
_IN_CHUNK = 500

# The extra key's columns per table alias: r records (item via its invitation i), i invitations,
# c cases.
_EXTRA: dict[str | None, dict[str, tuple[str, ...]]] = {
    None: {"r": (), "i": (), "c": ()},
    "window": {"r": ("r.window_id",), "i": ("i.window_id",), "c": ("c.window_id",)},
    "clerk": {"r": ("r.staff_account",), "i": ("i.staff_account",), "c": ("c.staff_account",)},
    "item": {"r": ("COALESCE(i.task_code, '')", "COALESCE(i.task_name, '')"),
             "i": ("i.task_code", "i.task_name"), "c": ("c.task_code", "c.task_name")},
}


def _extra(extra: str | None, alias: str, after: int) -> tuple[str, str]:
    """(select list part, GROUP BY positions of hall, dept, the extra key and `after` more)."""
    cols = _EXTRA[extra][alias]
    return "".join(", " + c for c in cols), ", ".join(str(k) for k in range(1, 3 + len(cols) + after))
# Records that can be ratings or default ratings (an extra press never is one).
_KINDS = "r.kind IN ('rated', 'unrated', 'walkup', 'unpaired')"


def scope_sql(scope: Sequence[Segment], time_col: str, hall_col: str,
              default_hall: str) -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    for halls, lo, hi in scope:
        if halls is None:
            parts.append("(%s >= ? AND %s < ?)" % (time_col, time_col))
            params += [lo, hi]
        else:
            parts.append("(COALESCE(%s, ?) IN (%s) AND %s >= ? AND %s < ?)"
                         % (hall_col, ",".join("?" * len(halls)), time_col, time_col))
            params += [default_hall, *halls, lo, hi]
    return "(" + " OR ".join(parts or ["1=0"]) + ")", params


class SqlFigures:
    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def _rows(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        return self.c.rows(sql, params)

    def ratings(self, scope: Sequence[Segment], default_hall: str, extra: str | None = None,
                edges: Sequence[int] = ()) -> list[tuple[Any, ...]]:
        """(hall, dept, *extra, bucket, kind, grade, flags, upload status, default flag, n) of the
        records pressed in scope. bucket k: pressed in [edges[k], edges[k+1]) (0 without edges).
        The upload state is the record's copy of its uplink item (migration 0023); whether a
        record is its invitation's one rating follows from kind and flags (see the bulletin).
        One pass over the covering index records_figures (item: plus each record's invitation)."""
        where, params = scope_sql(scope, "r.pressed_at_ms", "r.hall_id", default_hall)
        x, group = _extra(extra, "r", 6)
        if len(edges) > 2:
            whens = " ".join("WHEN r.pressed_at_ms < ? THEN %d" % k for k in range(len(edges) - 2))
            bucket = "CASE %s ELSE %d END" % (whens, len(edges) - 2)
            bparams: list[Any] = list(edges[1:-1])
        else:
            bucket, bparams = "0", []
        join = " LEFT JOIN invitations i ON i.id = r.invitation_id" if extra == "item" else ""
        sql = ("SELECT r.hall_id, r.dept_code%s, %s, r.kind, r.grade, r.flags,"
               " r.up_status, r.up_default, count(*) FROM records r%s"
               " WHERE %s AND %s GROUP BY %s" % (x, bucket, join, where, _KINDS, group))
        return self._rows(sql, [*bparams, *params])

    def invitation_defaults(self, scope: Sequence[Segment], default_hall: str,
                            extra: str | None = None) -> list[tuple[Any, ...]]:
        """(hall, dept, *extra, uplink status, n) of the "inv:" default ratings (invitations
        closed without any device record) whose invitation closed in scope: the invitation's
        copy of its item's state (migration 0190), through the partial index invitations_defaults."""
        where, params = scope_sql(scope, "i.closed_ms", "i.hall_id", default_hall)
        x, group = _extra(extra, "i", 1)
        sql = ("SELECT i.hall_id, i.dept_code%s, i.default_status, count(*) FROM invitations i"
               " WHERE i.default_status IS NOT NULL AND %s GROUP BY %s" % (x, where, group))
        return self._rows(sql, params)

    def unrated_invitations(self, scope: Sequence[Segment], default_hall: str,
                            extra: str | None = None) -> list[tuple[Any, ...]]:
        """(hall, dept, *extra, n): invitations closed in scope without a rating (unrated,
        expired, superseded): the cases that get a default rating."""
        where, params = scope_sql(scope, "i.closed_ms", "i.hall_id", default_hall)
        x, group = _extra(extra, "i", 0)
        sql = ("SELECT i.hall_id, i.dept_code%s, count(*) FROM invitations i"
               " WHERE i.status IN ('unrated', 'expired', 'superseded') AND %s GROUP BY %s"
               % (x, where, group))
        return self._rows(sql, params)

    def cases(self, scope: Sequence[Segment], default_hall: str,
              extra: str | None = None) -> list[tuple[Any, ...]]:
        """(hall, dept, *extra, n, invited): feed cases accepted in scope (withdrawn ones left
        out), and how many of them were offered a rating (cases.invited, kept by migration 0021's
        triggers)."""
        where, params = scope_sql(scope, "c.accepted_ms", "c.hall_id", default_hall)
        x, group = _extra(extra, "c", 0)
        sql = ("SELECT c.hall_id, c.dept_code%s, count(*), sum(c.invited) FROM cases c"
               " WHERE c.status <> 'withdrawn' AND %s GROUP BY %s" % (x, where, group))
        return self._rows(sql, params)

    def unreported(self, scope: Sequence[Segment], default_hall: str,
                   extra: str | None = None) -> list[tuple[Any, ...]]:
        """(hall, dept, *extra, n): distinct cases invited in scope (not cancelled) that the feed
        never reported (invitations.case_reported, migration 0021), through the partial index
        invitations_unreported (small once the feed is complete)."""
        where, params = scope_sql(scope, "i.created_ms", "i.hall_id", default_hall)
        x, group = _extra(extra, "i", 0)
        sql = ("SELECT i.hall_id, i.dept_code%s, count(DISTINCT i.case_no) FROM invitations i"
               " WHERE i.case_reported = 0 AND i.status <> 'cancelled' AND %s GROUP BY %s"
               % (x, where, group))
        return self._rows(sql, params)

    def unreported_total(self, scope: Sequence[Segment], default_hall: str) -> int:
        """unreported over the whole scope: a case invited at two windows once."""
        where, params = scope_sql(scope, "i.created_ms", "i.hall_id", default_hall)
        return int(self.c.scalar("SELECT count(DISTINCT i.case_no) FROM invitations i"
                                 " WHERE i.case_reported = 0 AND i.status <> 'cancelled' AND %s" % where,
                                 params) or 0)

    def records_by_id(self, ids: Sequence[str], default_hall: str) -> list[tuple[Any, ...]]:
        """(record_id, hall, dept, window, clerk, task_code, task_name, kind, grade, flags, upload
        status, default flag, pressed_at_ms) of the given records."""
        out: list[tuple[Any, ...]] = []
        for k in range(0, len(ids), _IN_CHUNK):
            chunk = list(ids[k:k + _IN_CHUNK])
            out += self._rows(
                "SELECT r.record_id, COALESCE(r.hall_id, ?), COALESCE(r.dept_code, ''), r.window_id,"
                " r.staff_account, COALESCE(i.task_code, ''), COALESCE(i.task_name, ''), r.kind, r.grade,"
                " r.flags, r.up_status, r.up_default, r.pressed_at_ms FROM records r"
                " LEFT JOIN invitations i ON i.id = r.invitation_id WHERE r.record_id IN (%s)"
                % self.c.placeholders(len(chunk)), [default_hall, *chunk])
        return out

    def scan_baseline(self) -> int:
        """One grouped full scan of the ratings table (the bench's yardstick): rows grouped."""
        return len(self.c.rows("SELECT window_id, grade, count(*) FROM records GROUP BY window_id, grade"))

    # -- supervision (数据质量) ---------------------------------------------------------------------

    def invite_by_clerk(self, scope: Sequence[Segment], default_hall: str) -> list[tuple[Any, ...]]:
        """(clerk, hall, cases, invited, name): feed cases accepted in scope per clerk, how many of
        them were offered a rating (an invitation not cancelled), and the name the feed gave."""
        where, params = scope_sql(scope, "c.accepted_ms", "c.hall_id", default_hall)
        return self._rows(
            "SELECT COALESCE(c.staff_account, ''), COALESCE(c.hall_id, ?), count(*), sum(c.invited),"
            " max(c.staff_name) FROM cases c WHERE c.status <> 'withdrawn' AND %s GROUP BY 1, 2" % where,
            [default_hall, *params])

    def uninvited_cases(self, scope: Sequence[Segment], default_hall: str, clerk: str,
                        limit: int) -> list[dict[str, Any]]:
        """The clerk's feed cases in scope never offered a rating (oldest first, at most limit)."""
        where, params = scope_sql(scope, "c.accepted_ms", "c.hall_id", default_hall)
        return self.c.dicts(
            "SELECT c.case_no, c.accepted_ms, c.finished_ms, c.window_id, c.task_name FROM cases c"
            " WHERE COALESCE(c.staff_account, '') = ? AND c.status <> 'withdrawn' AND %s AND c.invited = 0"
            " ORDER BY c.accepted_ms, c.case_no LIMIT ?" % where, [clerk, *params, limit])

    def flagged(self, scope: Sequence[Segment], default_hall: str, flag: str) -> list[dict[str, Any]]:
        """Records pressed in scope carrying flag (oldest first)."""
        where, params = scope_sql(scope, "r.pressed_at_ms", "r.hall_id", default_hall)
        return self.c.dicts(
            "SELECT r.record_id, r.device_id, COALESCE(r.hall_id, ?) AS hall_id, r.window_id,"
            " r.staff_account, r.kind, r.grade, r.invitation_id, r.pressed_at_ms, r.flags FROM records r"
            " WHERE %s AND (',' || r.flags || ',') LIKE ? ORDER BY r.pressed_at_ms, r.record_id"
            % where, [default_hall, *params, "%," + flag + ",%"])

    def fast_ratings(self, scope: Sequence[Segment], default_hall: str,
                     within_ms: int) -> list[dict[str, Any]]:
        """Ratings (their invitation's one rating) pressed less than within_ms after their
        invitation was issued."""
        where, params = scope_sql(scope, "r.pressed_at_ms", "r.hall_id", default_hall)
        return self.c.dicts(
            "SELECT r.record_id, r.device_id, COALESCE(r.hall_id, ?) AS hall_id, r.window_id,"
            " r.staff_account, r.grade, r.pressed_at_ms, i.id AS invitation_id, i.case_no, i.created_ms"
            " FROM records r JOIN invitations i ON i.id = r.invitation_id AND i.record_id = r.record_id"
            " WHERE %s AND r.kind = 'rated' AND r.pressed_at_ms - i.created_ms < ?"
            " ORDER BY r.pressed_at_ms" % where, [default_hall, *params, within_ms])

    def late_entries(self, scope: Sequence[Segment], default_hall: str,
                     after_ms: int) -> list[dict[str, Any]]:
        """Invitations issued in scope more than after_ms after their case was finished (or
        accepted, when the feed gave no finish time): 事后补录."""
        where, params = scope_sql(scope, "i.created_ms", "i.hall_id", default_hall)
        return self.c.dicts(
            "SELECT i.id AS invitation_id, i.case_no, COALESCE(i.hall_id, ?) AS hall_id, i.window_id,"
            " i.staff_account, i.created_ms, i.status, c.accepted_ms, c.finished_ms"
            " FROM invitations i JOIN cases c ON c.case_no = i.case_no"
            " WHERE %s AND i.created_ms - COALESCE(c.finished_ms, c.accepted_ms) > ?"
            " ORDER BY i.created_ms" % where, [default_hall, *params, after_ms])

    def linkage(self, scope: Sequence[Segment], default_hall: str, limit_ms: int,
                now_ms: int) -> list[tuple[Any, ...]]:
        """Per (window, hall): real ratings pressed in scope, how many reached the platform later
        than limit_ms after the press (or have not reached it and are older than that), and the
        longest such delay (ms, the unacknowledged counted up to now_ms)."""
        where, params = scope_sql(scope, "r.pressed_at_ms", "r.hall_id", default_hall)
        delay = "COALESCE(u.acked_ms, ?) - r.pressed_at_ms"
        return self._rows(
            "SELECT COALESCE(r.window_id, ''), COALESCE(r.hall_id, ?), count(*),"
            " sum(CASE WHEN %s > ? THEN 1 ELSE 0 END), max(%s)"
            " FROM records r LEFT JOIN uplink_items u ON u.record_id = r.record_id"
            " WHERE %s AND r.kind = 'rated' AND COALESCE(u.default_flag, 0) = 0"
            " AND (u.status IS NULL OR u.status IN ('pending', 'sent', 'acked')) GROUP BY 1, 2"
            % (delay, delay, where), [default_hall, now_ms, limit_ms, now_ms, *params])

    def slowest(self, scope: Sequence[Segment], default_hall: str, window_id: str, limit_ms: int,
                now_ms: int, limit: int) -> list[dict[str, Any]]:
        where, params = scope_sql(scope, "r.pressed_at_ms", "r.hall_id", default_hall)
        return self.c.dicts(
            "SELECT r.record_id, r.pressed_at_ms, u.acked_ms, u.status, r.staff_account,"
            " COALESCE(u.acked_ms, ?) - r.pressed_at_ms AS delay_ms"
            " FROM records r LEFT JOIN uplink_items u ON u.record_id = r.record_id"
            " WHERE COALESCE(r.window_id, '') = ? AND %s AND r.kind = 'rated'"
            " AND COALESCE(u.default_flag, 0) = 0"
            " AND (u.status IS NULL OR u.status IN ('pending', 'sent', 'acked'))"
            " AND COALESCE(u.acked_ms, ?) - r.pressed_at_ms > ? ORDER BY delay_ms DESC, r.record_id LIMIT ?"
            % where, [now_ms, window_id, *params, now_ms, limit_ms, limit])

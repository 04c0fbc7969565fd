"""差评 work orders: complaints, their history and notices, rating exclusions and the
corrections the platform must be told (migration 0200)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.store.rows import COMPLAINT_COLUMNS, Complaint, Correction, NewComplaint
from gateway.store.sql.conn import Conn

_COLS = ", ".join(COMPLAINT_COLUMNS)
# Columns a transition may change (everything else is set once, at opening).
MUTABLE = frozenset(
    {
        "state",
        "verdict",
        "invalid_reason",
        "complex",
        "tag_version",
        "tags",
        "comment",
        "reasons_source",
        "callback_grade",
        "appeal_state",
        "overturn_reason",
        "contacted_ms",
        "verified_ms",
        "rectified_ms",
        "callback_ms",
        "closed_ms",
        "appealed_ms",
        "review_started_ms",
        "decided_ms",
        "contact_due_ms",
        "rectify_due_ms",
        "appeal_due_ms",
        "review_due_ms",
        "calendar_error",
    }
)
_NEW = tuple(NewComplaint.__dataclass_fields__)
_CORR_COLS = (
    "id, record_id, complaint_id, action, payload_json, status, created_ms, attempts, sent_ms,"
    " done_ms, done_by, error"
)


def _complaint(r: tuple[Any, ...]) -> Complaint:
    d = dict(zip(COMPLAINT_COLUMNS, r, strict=True))
    d["complex"] = bool(d["complex"])
    return Complaint(**d)


def _correction(r: tuple[Any, ...]) -> Correction:
    return Correction(
        int(r[0]),
        r[1],
        None if r[2] is None else int(r[2]),
        r[3],
        json.loads(r[4] or "{}"),
        r[5],
        int(r[6]),
        int(r[7]),
        r[8],
        r[9],
        r[10],
        r[11],
    )


class SqlComplaints:
    def __init__(self, conn: Conn) -> None:
        self.c = conn

    # -- complaints ------------------------------------------------------------------------

    def open(self, n: NewComplaint) -> int | None:
        """Insert; the new id, or None when the rating already has its complaint (a re-sent
        record, a second path): the UNIQUE record_id makes opening idempotent."""
        v = self.c.scalar(
            "INSERT INTO complaints (%s, updated_ms) VALUES (%s, ?) ON CONFLICT (record_id) DO NOTHING"
            " RETURNING id" % (", ".join(_NEW), self.c.placeholders(len(_NEW))),
            [*(getattr(n, k) for k in _NEW), n.opened_ms],
        )
        return None if v is None else int(v)

    def get(self, complaint_id: int) -> Complaint | None:
        r = self.c.one("SELECT %s FROM complaints WHERE id = ?" % _COLS, (complaint_id,))
        return None if r is None else _complaint(r)

    def by_record(self, record_id: str) -> Complaint | None:
        r = self.c.one("SELECT %s FROM complaints WHERE record_id = ?" % _COLS, (record_id,))
        return None if r is None else _complaint(r)

    def find(
        self,
        states: Sequence[str] | None = None,
        open_only: bool = False,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 1000,
        halls: Sequence[str] | None = None,
        depts: Sequence[str] | None = None,
        before: tuple[int, int] | None = None,
    ) -> tuple[list[Complaint], int]:
        """Newest first, at most limit, and how many matched in all; halls / depts: only
        complaints of these halls / departments (at press time), when given (empty: none);
        before (opened_ms, id): a keyset page, strictly older (the count ignores it)."""
        where, args = ["1=1"], []  # type: tuple[list[str], list[Any]]
        if states:
            where.append("state IN (%s)" % self.c.placeholders(len(states)))
            args += list(states)
        for col, values in (("hall_id", halls), ("dept_code", depts)):
            if values is not None:
                if not values:
                    where.append("1=0")
                else:
                    where.append("%s IN (%s)" % (col, self.c.placeholders(len(values))))
                    args += list(values)
        if open_only:
            where.append("state != 'closed'")
        for cond, val in (("opened_ms >= ?", since_ms), ("opened_ms < ?", until_ms)):
            if val is not None:
                where.append(cond)
                args.append(val)
        w = " AND ".join(where)
        total = int(self.c.scalar("SELECT count(*) FROM complaints WHERE " + w, args))
        page, page_args = w, list(args)
        if before is not None:
            page += " AND (opened_ms < ? OR (opened_ms = ? AND id < ?))"
            page_args += [before[0], before[0], before[1]]
        rows = self.c.rows(
            "SELECT %s FROM complaints WHERE %s ORDER BY opened_ms DESC, id DESC LIMIT ?" % (_COLS, page),
            [*page_args, max(1, limit)],
        )
        return [_complaint(r) for r in rows], total

    def with_live_deadlines(self) -> list[Complaint]:
        """Complaints a deadline may still run for: open ones, and closed ones whose appeal or
        review is still open (a clerk may appeal a closed work order within the period)."""
        return [
            _complaint(r)
            for r in self.c.rows(
                "SELECT %s FROM complaints WHERE state != 'closed'"
                " OR appeal_state IN ('appealed', 'under_review')"
                " ORDER BY id" % _COLS
            )
        ]

    def update(self, complaint_id: int, version: int, changes: Mapping[str, Any], at_ms: int) -> bool:
        """Apply changes if the complaint is still at `version` (nobody changed it since it was
        read); False otherwise. The version goes up by one."""
        bad = sorted(set(changes) - MUTABLE)
        if bad:
            raise ValueError("complaint columns not changeable: %s" % ", ".join(bad))
        cols = sorted(changes)
        sets = ", ".join("%s = ?" % k for k in cols)
        vals = [int(v) if isinstance(v, bool) else v for v in (changes[k] for k in cols)]
        return (
            self.c.execute(
                "UPDATE complaints SET %s%s version = version + 1, updated_ms = ?"
                " WHERE id = ? AND version = ?"
                % (sets, ", " if sets else ""),
                [*vals, at_ms, complaint_id, version],
            )
            == 1
        )

    def add_event(
        self,
        complaint_id: int,
        at_ms: int,
        actor: str,
        action: str,
        from_state: str | None,
        to_state: str | None,
        note: str,
        detail: Mapping[str, Any],
    ) -> None:
        self.c.execute(
            "INSERT INTO complaint_events (complaint_id, at_ms, actor, action, from_state, to_state, note,"
            " detail_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                complaint_id,
                at_ms,
                actor,
                action,
                from_state,
                to_state,
                note,
                json.dumps(dict(detail), ensure_ascii=False, sort_keys=True),
            ),
        )

    def events(self, complaint_id: int) -> list[dict[str, Any]]:
        rows = self.c.dicts(
            "SELECT at_ms, actor, action, from_state, to_state, note, detail_json"
            " FROM complaint_events WHERE complaint_id = ? ORDER BY id",
            (complaint_id,),
        )
        for r in rows:
            r["detail"] = json.loads(r.pop("detail_json") or "{}")
        return rows

    def note_notice(self, complaint_id: int, what: str, at_ms: int) -> bool:
        """Record that `what` was sent about the complaint; False if it had been already."""
        return (
            self.c.execute(
                "INSERT INTO complaint_notices (complaint_id, what, at_ms) VALUES (?, ?, ?)"
                " ON CONFLICT (complaint_id, what) DO NOTHING",
                (complaint_id, what, at_ms),
            )
            == 1
        )

    def notices(self, complaint_ids: Sequence[int]) -> dict[int, set[str]]:
        out: dict[int, set[str]] = {i: set() for i in complaint_ids}
        for i in range(0, len(complaint_ids), 500):
            chunk = list(complaint_ids[i : i + 500])
            for cid, what in self.c.rows(
                "SELECT complaint_id, what FROM complaint_notices WHERE complaint_id"
                " IN (%s)" % self.c.placeholders(len(chunk)),
                chunk,
            ):
                out[int(cid)].add(str(what))
        return out

    def unannounced(self, since_ms: int = 0, limit: int = 100) -> list[Complaint]:
        """Complaints opened since since_ms that nobody was told about yet (oldest first)."""
        return [
            _complaint(r)
            for r in self.c.rows(
                "SELECT %s FROM complaints c WHERE c.opened_ms >= ? AND NOT EXISTS (SELECT 1"
                " FROM complaint_notices n WHERE n.complaint_id = c.id AND n.what = 'opened')"
                " ORDER BY c.id LIMIT ?" % _COLS,
                (since_ms, limit),
            )
        ]

    def bad_ratings_without_complaint(self, limit: int = 100) -> list[str]:
        """Record ids of 差评 ratings (an invitation's rating, graded d or vd) with no complaint."""
        return [
            str(r[0])
            for r in self.c.rows(
                "SELECT i.record_id FROM invitations i WHERE i.status = 'rated' AND i.grade IN ('d', 'vd')"
                " AND i.record_id IS NOT NULL"
                " AND NOT EXISTS (SELECT 1 FROM complaints c WHERE c.record_id = i.record_id)"
                " ORDER BY i.record_id LIMIT ?",
                (limit,),
            )
        ]

    # -- exclusions -------------------------------------------------------------------------

    def exclude(
        self, record_id: str, complaint_id: int | None, reason: str, note: str, actor: str, at_ms: int
    ) -> bool:
        """Exclude a rating from statistics (kept); False if it was excluded already."""
        return (
            self.c.execute(
                "INSERT INTO rating_exclusions (record_id, complaint_id, reason, note, actor, at_ms)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (record_id) DO NOTHING",
                (record_id, complaint_id, reason, note, actor, at_ms),
            )
            == 1
        )

    def exclusion(self, record_id: str) -> dict[str, Any] | None:
        return self.c.one_dict(
            "SELECT record_id, complaint_id, reason, note, actor, at_ms FROM rating_exclusions"
            " WHERE record_id = ?",
            (record_id,),
        )

    # -- bulletin outcomes (per rating pressed in [lo, hi)) -------------------------------------

    def outcomes(self, lo: int, hi: int) -> list[tuple[str, bool, bool, bool, bool]]:
        """(record id, verified valid, rectified, called back, excluded) of the ratings pressed
        in [lo, hi) that have a complaint or an exclusion (a complaint's rated_ms is its
        record's press time; an exclusion without a complaint is found by its record's)."""
        rows = self.c.rows(
            "SELECT c.record_id, CASE WHEN c.verdict = 'valid' THEN 1 ELSE 0 END,"
            " CASE WHEN c.rectified_ms IS NOT NULL THEN 1 ELSE 0 END,"
            " CASE WHEN c.callback_ms IS NOT NULL THEN 1 ELSE 0 END,"
            " CASE WHEN e.record_id IS NOT NULL THEN 1 ELSE 0 END"
            " FROM complaints c LEFT JOIN rating_exclusions e ON e.record_id = c.record_id"
            " WHERE c.rated_ms >= ? AND c.rated_ms < ?",
            (lo, hi),
        ) + self.c.rows(
            "SELECT e.record_id, 0, 0, 0, 1 FROM rating_exclusions e"
            " JOIN records r ON r.record_id = e.record_id"
            " WHERE r.pressed_at_ms >= ? AND r.pressed_at_ms < ?"
            " AND NOT EXISTS (SELECT 1 FROM complaints c WHERE c.record_id = e.record_id)",
            (lo, hi),
        )
        return [(str(r[0]), bool(r[1]), bool(r[2]), bool(r[3]), bool(r[4])) for r in rows]

    # -- report figures (per invitation window and clerk, invitations created in [lo, hi)) ----

    def day_figures(self, lo: int, hi: int) -> list[dict[str, Any]]:
        """Per (window, clerk) of the rated first-rating invitation: 差评 found valid, rectified,
        and the excluded ratings by grade."""
        return self.c.dicts(
            "SELECT i.window_id, i.staff_account, i.grade,"
            " SUM(CASE WHEN c.verdict = 'valid' AND e.record_id IS NULL THEN 1 ELSE 0 END) AS valid_bad,"
            " SUM(CASE WHEN c.rectified_ms IS NOT NULL AND e.record_id IS NULL THEN 1 ELSE 0 END)"
            " AS rectified,"
            " SUM(CASE WHEN e.record_id IS NOT NULL THEN 1 ELSE 0 END) AS excluded"
            " FROM invitations i LEFT JOIN complaints c ON c.record_id = i.record_id"
            " LEFT JOIN rating_exclusions e ON e.record_id = i.record_id"
            " WHERE i.created_ms >= ? AND i.created_ms < ? AND i.status = 'rated' AND i.assess_number = 1"
            " AND (c.id IS NOT NULL OR e.record_id IS NOT NULL)"
            " GROUP BY i.window_id, i.staff_account, i.grade",
            (lo, hi),
        )

    # -- corrections ------------------------------------------------------------------------

    def add_correction(
        self,
        record_id: str,
        complaint_id: int | None,
        action: str,
        payload: Mapping[str, Any],
        status: str,
        at_ms: int,
    ) -> int:
        return int(
            self.c.scalar(
                "INSERT INTO uplink_corrections"
                " (record_id, complaint_id, action, payload_json, status, created_ms)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    record_id,
                    complaint_id,
                    action,
                    json.dumps(dict(payload), ensure_ascii=False, sort_keys=True),
                    status,
                    at_ms,
                ),
            )
        )

    def get_correction(self, correction_id: int) -> Correction | None:
        r = self.c.one("SELECT %s FROM uplink_corrections WHERE id = ?" % _CORR_COLS, (correction_id,))
        return None if r is None else _correction(r)

    def corrections(
        self, statuses: Sequence[str] | None = None, complaint_id: int | None = None, limit: int = 1000
    ) -> tuple[list[Correction], int]:
        where, args = ["1=1"], []  # type: tuple[list[str], list[Any]]
        if statuses:
            where.append("status IN (%s)" % self.c.placeholders(len(statuses)))
            args += list(statuses)
        if complaint_id is not None:
            where.append("complaint_id = ?")
            args.append(complaint_id)
        w = " AND ".join(where)
        total = int(self.c.scalar("SELECT count(*) FROM uplink_corrections WHERE " + w, args))
        rows = self.c.rows(
            "SELECT %s FROM uplink_corrections WHERE %s ORDER BY id LIMIT ?" % (_CORR_COLS, w),
            [*args, max(1, limit)],
        )
        return [_correction(r) for r in rows], total

    def corrections_ready(self, limit: int) -> list[Correction]:
        """Corrections to send now: pending or sent-unanswered, whose rating the platform
        acknowledged (a correction of a rating it never got would be refused)."""
        return [
            _correction(r)
            for r in self.c.rows(
                "SELECT %s FROM uplink_corrections k WHERE k.status IN ('pending', 'sent')"
                " AND EXISTS (SELECT 1 FROM uplink_items u"
                " WHERE u.record_id = k.record_id AND u.status = 'acked')"
                " ORDER BY k.id LIMIT ?" % ", ".join("k." + c.strip() for c in _CORR_COLS.split(",")),
                (limit,),
            )
        ]

    def set_correction(
        self,
        correction_ids: Sequence[int],
        status: str,
        at_ms: int,
        error: str | None = None,
        by: str | None = None,
    ) -> None:
        """sent: one more attempt; acked/rejected/manual_done: done at at_ms (by whom, for manual)."""
        for cid in correction_ids:
            if status == "sent":
                self.c.execute(
                    "UPDATE uplink_corrections SET status = 'sent', attempts = attempts + 1,"
                    " sent_ms = ?, error = ? WHERE id = ?",
                    (at_ms, error, cid),
                )
            else:
                self.c.execute(
                    "UPDATE uplink_corrections SET status = ?, done_ms = ?, done_by = ?, error = ?"
                    " WHERE id = ?",
                    (status, at_ms, by, error, cid),
                )

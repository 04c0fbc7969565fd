"""End-to-end checker: the citizens' truth against the gateway's store and the platform.

The ledger is written by the simulator when a device gives feedback for a press (what the
citizen saw accepted), keyed by the record id the device assigned (always known here: the
virtual device reads it from the journal the press was written to). After the run:

  store     every accepted press is in the gateway's records table exactly once, with the
            kind, grade and invitation the device gave it, credited to the clerk who served
            the citizen and to the right case (invitation -> case_no); every rated record
            in the store is a press the ledger knows (nothing invented, nothing doubled:
            one rated record per invitation); every invitation the citizen left unrated
            ends unrated (or is still pending if its countdown had not run out).
  platform  every record the uplink policy uploads is accepted at the platform exactly once;
            with `unrated = "flagged"` that includes every invitation closed without a rating
            and without any device record (superseded by the window's next case, expired
            while the device was offline): its flagged default rating "inv:<invitation id>".

Mismatches are listed one per line; the table and the verdict are what `hcp-sim` prints.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Press:
    """One press the device accepted (the citizen saw the thanks)."""

    record_id: str
    device_id: str
    kind: str                    # rated | walkup | extra | unpaired (as the device journaled it)
    grade: str
    invitation_id: str           # "" when none
    case_no: str                 # "" when none
    window_id: str
    staff_account: str


@dataclass(frozen=True)
class UnratedCase:
    """An invitation the citizen walked away from: its countdown should end it unrated."""

    device_id: str
    invitation_id: str
    case_no: str


class Ledger:
    """The citizen truth of one run."""

    def __init__(self) -> None:
        self.presses: list[Press] = []
        self.unrated: list[UnratedCase] = []
        self.rejected_presses = 0     # presses that got no feedback (device off, busy): not ratings

    def press(self, p: Press) -> None:
        self.presses.append(p)

    def walked_away(self, u: UnratedCase) -> None:
        self.unrated.append(u)

    def counts(self) -> Counter[str]:
        return Counter(p.kind for p in self.presses)


@dataclass
class Row:
    """One line of the reconciliation table."""

    name: str
    expected: int
    found: int
    lost: int = 0
    doubled: int = 0
    wrong: int = 0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.doubled == 0 and self.wrong == 0


@dataclass
class Reconciliation:
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems_hidden: int = 0       # problems beyond the listed ones (counted, not kept)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.problems_hidden and all(r.ok for r in self.rows)

    @property
    def lost(self) -> int:
        return sum(r.lost for r in self.rows)

    @property
    def doubled(self) -> int:
        return sum(r.doubled for r in self.rows)

    def problem(self, text: str, limit: int = 50) -> None:
        if len(self.problems) < limit:
            self.problems.append(text)
        else:
            self.problems_hidden += 1


def _connect_ro(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def _store_records(conn: sqlite3.Connection, devices: set[str]) -> list[sqlite3.Row]:
    cols = {r[1] for r in conn.execute("PRAGMA table_info(invitations)")}
    if cols:
        sql = ("SELECT r.*, i.case_no AS inv_case_no, i.staff_account AS inv_staff,"
               " i.window_id AS inv_window, i.status AS inv_status, i.record_id AS inv_record"
               " FROM records r LEFT JOIN invitations i ON i.id = r.invitation_id")
    else:
        sql = ("SELECT r.*, NULL AS inv_case_no, NULL AS inv_staff, NULL AS inv_window, NULL AS inv_status,"
               " NULL AS inv_record FROM records r")
    return [r for r in conn.execute(sql) if r["device_id"] in devices]


def _invitation_status(conn: sqlite3.Connection) -> dict[str, str]:
    try:
        return {r[0]: r[1] for r in conn.execute("SELECT id, status FROM invitations")}
    except sqlite3.OperationalError:
        return {}


def check_store(ledger: Ledger, store_path: Path, devices: Iterable[str], rec: Reconciliation) -> list[str]:
    """Compare the ledger with the gateway's records. Returns the store's record ids of these devices."""
    devs = set(devices)
    with _connect_ro(store_path) as conn:
        rows = _store_records(conn, devs)
        inv_status = _invitation_status(conn)
    by_id = {r["record_id"]: r for r in rows}

    # Presses, per kind.
    for kind in ("rated", "walkup", "extra", "unpaired"):
        presses = [p for p in ledger.presses if p.kind == kind]
        stored = [r for r in rows if r["kind"] == kind]
        row = Row("presses: " + kind, expected=len(presses), found=len(stored))
        claimed = set()
        for p in presses:
            r = by_id.get(p.record_id)
            claimed.add(p.record_id)
            if r is None:
                row.lost += 1
                rec.problem("lost: %s (%s %s, case %s) is not in the gateway's store"
                            % (p.record_id, p.kind, p.grade, p.case_no or "-"))
                continue
            wrong = []
            if r["kind"] != p.kind:
                wrong.append("kind %s != %s" % (r["kind"], p.kind))
            if (r["grade"] or "") != p.grade:
                wrong.append("grade %s != %s" % (r["grade"], p.grade))
            if (r["invitation_id"] or "") != p.invitation_id:
                wrong.append("invitation %s != %s" % (r["invitation_id"], p.invitation_id))
            if kind == "rated":
                staff = r["staff_account"] or r["inv_staff"]
                if staff != p.staff_account:
                    wrong.append("credited to clerk %s, served by %s" % (staff, p.staff_account))
                if r["inv_case_no"] is not None and r["inv_case_no"] != p.case_no:
                    wrong.append("case %s != %s" % (r["inv_case_no"], p.case_no))
                # The gateway must count it as the one rating of its case (一次一评).
                status = r["inv_status"]
                if status is not None and (status != "rated" or r["inv_record"] != p.record_id):
                    wrong.append("invitation %s is %s (rated by %s), not rated by this press"
                                 % (p.invitation_id, r["inv_status"], r["inv_record"] or "-"))
            if wrong:
                row.wrong += 1
                rec.problem("wrong: %s: %s" % (p.record_id, "; ".join(wrong)))
        # Stored presses no citizen made: a doubled press (same press under a second id) or invented.
        for r in stored:
            if r["record_id"] not in claimed:
                row.doubled += 1
                rec.problem("doubled/unknown: %s (%s %s, invitation %s) was never pressed"
                            % (r["record_id"], r["kind"], r["grade"], r["invitation_id"] or "-"))
        rec.rows.append(row)

    # 一次一评: at most one rated record per invitation.
    per_inv = Counter(r["invitation_id"] for r in rows if r["kind"] == "rated" and r["invitation_id"])
    for inv, n in per_inv.items():
        if n > 1:
            rec.problem("doubled: invitation %s has %d rated records" % (inv, n))
            rec.rows[0].doubled += n - 1

    # Walked-away citizens: one unrated record (or the invitation is still open / expired).
    unrated_by_inv = Counter(r["invitation_id"] for r in rows if r["kind"] == "unrated")
    # found = walked-away invitations that ended without a rating: an unrated record, or closed by
    # the gateway (superseded by the window's next case, expired) before the device's countdown.
    row = Row("unrated invitations", expected=len(ledger.unrated), found=0)
    for u in ledger.unrated:
        n = unrated_by_inv.get(u.invitation_id, 0)
        if n or inv_status.get(u.invitation_id) in ("unrated", "superseded", "expired", "cancelled"):
            row.found += 1
        if n > 1:
            row.doubled += n - 1
            rec.problem("doubled: invitation %s has %d unrated records" % (u.invitation_id, n))
        if per_inv.get(u.invitation_id):
            row.wrong += 1
            rec.problem("wrong: invitation %s was left unrated but has a rating" % u.invitation_id)
        if n == 0 and inv_status.get(u.invitation_id) == "cancelled":
            # Withdrawn by the window system: no rating and, by design, no default rating.
            rec.notes.append("invitation %s: left unrated, cancelled by the window system (withdrawn:"
                             " no default rating)" % u.invitation_id)
        # Closed by the gateway (superseded, expired) without a device record: not a note any
        # more, the platform check expects its default rating "inv:<id>" (uploadable()).
    rec.rows.append(row)
    return sorted(by_id)


INVITATION_DEFAULT_PREFIX = "inv:"     # upload id of an invitation's default rating
CLOSED_UNRATED = ("unrated", "expired", "superseded")


def uploadable(store_path: Path, devices: Iterable[str], kinds: tuple[str, ...]) -> list[str]:
    """Upload ids the platform must hold for these devices under the uplink policy `kinds`:
    records of those kinds, and (when unrated ones are uploaded) the default rating
    "inv:<id>" of every invitation closed without a rating and without a device record.

    One default per case: a device `unrated` record that reached the gateway after its
    invitation's default was sent is expected under the "inv:" id, not its own."""
    devs = set(devices)
    with _connect_ro(store_path) as conn:
        covered = _covered_records(conn)
        ids = [r[0] for r in conn.execute("SELECT record_id, device_id, kind FROM records")
               if r[1] in devs and r[2] in kinds and r[0] not in covered]
        if "unrated" in kinds:
            ids += [INVITATION_DEFAULT_PREFIX + i for i in invitation_defaults(conn, devs)]
    return sorted(ids)


def invitation_defaults(conn: sqlite3.Connection, devices: set[str]) -> list[str]:
    """Invitations of these devices closed without a rating (unrated, expired, superseded;
    never cancelled: withdrawn) that no device rated/unrated record stands for, plus any whose
    default the uplink already sent (a late device record is then covered by it)."""
    sent = _sent_defaults(conn)
    try:
        with_record = {r[0] for r in conn.execute(
            "SELECT DISTINCT r.invitation_id FROM records r JOIN invitations i ON i.id = r.invitation_id"
            " WHERE r.kind IN ('rated', 'unrated') AND r.device_id = i.device_id")}
        invitations = conn.execute("SELECT id, device_id, status FROM invitations").fetchall()
    except sqlite3.OperationalError:   # a store without invitations
        return []
    out = []
    for inv, dev, status in invitations:
        if dev not in devices:
            continue
        if inv in sent or (status in CLOSED_UNRATED and inv not in with_record):
            out.append(inv)
    return sorted(out)


def _sent_defaults(conn: sqlite3.Connection) -> set[str]:
    try:
        return {r[0] for r in conn.execute(
            "SELECT invitation_id FROM uplink_items WHERE invitation_id IS NOT NULL"
            " AND status IN ('pending', 'sent', 'acked')")}
    except sqlite3.OperationalError:   # a store from before migration 0101
        return set()


def _covered_records(conn: sqlite3.Connection) -> set[str]:
    try:
        return {r[0] for r in conn.execute("SELECT record_id FROM uplink_items WHERE status = 'covered'")}
    except sqlite3.OperationalError:
        return set()


def check_platform(expected_ids: Iterable[str], platform_counts: dict[str, int], rec: Reconciliation,
                   name: str = "at the platform") -> None:
    """platform_counts: record id -> times the platform received it (accepted once, duplicates counted)."""
    expected = set(expected_ids)
    row = Row(name, expected=len(expected), found=len(set(platform_counts) & expected))
    for rid in sorted(expected - set(platform_counts)):
        row.lost += 1
        rec.problem("not at the platform: %s" % rid)
    extra = sorted(set(platform_counts) - expected)
    for rid in extra:
        row.doubled += 1
        rec.problem("at the platform but not expected: %s" % rid)
    defaults = sum(1 for rid in expected & set(platform_counts) if rid.startswith(INVITATION_DEFAULT_PREFIX))
    if defaults:
        rec.notes.append("%d invitations left unrated and closed by the gateway (superseded, expired) with no"
                         " device record were uploaded as flagged default ratings (inv:<invitation id>)"
                         % defaults)
    resent = sum(1 for rid in expected if platform_counts.get(rid, 0) > 1)
    if resent:
        rec.notes.append("%d records reached the platform more than once and were deduplicated by id"
                         % resent)
    rec.rows.append(row)


def per_clerk(ledger: Ledger) -> dict[str, Counter[str]]:
    """Rated presses per clerk and grade (the truth side of the day's report)."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for p in ledger.presses:
        if p.kind == "rated":
            out[p.staff_account][p.grade] += 1
    return out

"""Reconciliation for one local date: devices vs gateway store vs platform acknowledgements.

Three views side by side, and every disagreement as a Mismatch:
- devices: records per kind as the (device, boot, seq) numbering proves them — a hole in a
  boot's sequence is a record the store never got — plus the journal depth the device last
  reported (records it still holds unacknowledged);
- store: records per device and window, per kind;
- platform: per uploadable record, its uplink state (acked / rejected / sent / never sent),
  and, when the platform offers a query, the ids it actually holds for that date. Uploadable
  includes the default ratings "inv:<id>" of invitations closed that day without any device
  record (superseded, expired); a device `unrated` record covered by such a default is
  counted as `covered`, not uploadable (the case has its one default rating).
The result is plain data (to_dict) so the simulator's end-to-end checker can reuse it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from gateway.store import Store
from gateway.store.api import Tx
from gateway.store.rows import DeviceRow
from gateway.uplink.adapters import INVITATION_ID_PREFIX, invitation_upload_id
from gateway.uplink.client import PlatformClient
from gateway.uplink.settings import UplinkSettings
from gateway.uplink.state import UNRATED_STATUSES, day_bounds
from protocol.ids import record_id

MAX_LISTED = 1000   # mismatches listed per kind; the counts are always complete


@dataclass
class Mismatch:
    # seq_gap | device_backlog | not_delivered | rejected | platform_missing | platform_extra
    kind: str
    device_id: str
    record_id: str
    detail: str


@dataclass
class DeviceView:
    device_id: str
    by_kind: dict[str, int]
    boots: dict[int, int]           # boot -> highest seq seen that day
    missing_seq: int                # holes in the numbering (records never stored)
    journal_depth: int | None       # from the device's last heartbeat


@dataclass
class ReconcileResult:
    date: str
    devices: list[DeviceView] = field(default_factory=list)
    store: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # device -> window -> kind -> n
    # records, uploadable, acked, rejected, sent, unsent, held, covered, invitation_defaults,
    # held_invitations (see reconcile())
    uplink: dict[str, int] = field(default_factory=dict)
    platform_checked: bool = False
    platform_held: int = 0
    mismatch_counts: dict[str, int] = field(default_factory=dict)
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatch_counts

    def add(self, m: Mismatch) -> None:
        n = self.mismatch_counts.get(m.kind, 0)
        self.mismatch_counts[m.kind] = n + 1
        if n < MAX_LISTED:
            self.mismatches.append(m)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


async def reconcile(store: Store, settings: UplinkSettings, date: str,
                    platform_ids: list[str] | None = None, now_ms: int | None = None) -> ReconcileResult:
    """Compare for local date D; platform_ids = what the platform holds for D, if known.

    uplink counts: `uploadable` = records of uploadable kinds (less `covered`) + invitation
    defaults; each is `acked`, `rejected`, `sent` (unanswered) or `unsent`. `held` = records not
    uploadable by policy, `covered` = device unrated records whose invitation's default went up
    as "inv:<id>", `invitation_defaults` = the "inv:" ones among uploadable, `held_invitations`
    = invitations closed without a record while `unrated = "skip"`."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    start, end = day_bounds(date, settings.tz)
    res = ReconcileResult(date=date)
    rows, inv_rows = await store.read(lambda tx: (
        tx.records.day_with_uplink(start, end),
        tx.invitations.closed_for_uplink(start, end, UNRATED_STATUSES)))
    uploadable = set(settings.uploadable_kinds())
    counts = {"records": len(rows), "uploadable": 0, "acked": 0, "rejected": 0, "sent": 0, "unsent": 0,
              "held": 0, "covered": 0, "invitation_defaults": 0, "held_invitations": 0}
    devices: dict[str, DeviceView] = {}
    ours: set[str] = set()
    acked: list[tuple[str, str]] = []
    for r in rows:
        dev, kind = r["device_id"], r["kind"]
        view = devices.setdefault(dev, DeviceView(dev, {}, {}, 0, None))
        view.by_kind[kind] = view.by_kind.get(kind, 0) + 1
        view.boots[r["rb"]] = max(view.boots.get(r["rb"], 0), r["rs"])
        per_window = res.store.setdefault(dev, {}).setdefault(r["window_id"], {})
        per_window[kind] = per_window.get(kind, 0) + 1
        ours.add(r["record_id"])
        if kind not in uploadable or r["not_a_rating"]:
            # By policy (extras never), or not a rating at all (a late or extra press, an
            # unrated follow-up): kept and counted apart, not for the platform.
            counts["held"] += 1
            continue
        if r["status"] == "covered":
            counts["covered"] += 1   # its invitation's default rating went up as "inv:<id>"
            continue
        _count_upload(res, counts, acked, dev, r["record_id"], r, "")

    # Invitations closed that day without any device record: their default ratings.
    due_before = now - settings.default_after_s * 1000
    for r in inv_rows:
        if r["status"] is None and (r["has_record"] or r["case_elsewhere"]):
            continue   # the device's own record, or another invitation of the case, stands for it
        if r["status"] is None and not settings.invitation_defaults:
            counts["held_invitations"] += 1
            continue
        upload_id = invitation_upload_id(r["id"])
        ours.add(upload_id)
        counts["invitation_defaults"] += 1
        why = "invitation %s (%s, no device record): default rating" % (r["id"], r["inv_status"])
        if r["status"] is None and r["closed_ms"] > due_before:
            why += " not yet due"
        _count_upload(res, counts, acked, r["device_id"], upload_id, r, why)
    res.uplink = counts

    # Device numbering: within a boot, seqs 1..max must all be stored (on any date).
    for dev, view in devices.items():
        for rb, top in sorted(view.boots.items()):
            present = await store.read(partial(_seqs, dev, rb, top))
            for rs in range(1, top + 1):
                if rs not in present:
                    view.missing_seq += 1
                    res.add(Mismatch("seq_gap", dev, record_id(dev, rb, rs),
                                     "boot %d seq %d never reached the gateway" % (rb, rs)))
        drow = await store.read(partial(_device, dev))
        if drow is not None and drow.journal_depth is not None:
            view.journal_depth = int(drow.journal_depth)
            if view.journal_depth > 0:
                res.add(Mismatch("device_backlog", dev, "",
                                 "device reports %d records not yet acknowledged" % view.journal_depth))
    res.devices = [devices[d] for d in sorted(devices)]

    if platform_ids is not None:
        res.platform_checked = True
        held = set(platform_ids)
        res.platform_held = len(held)
        for dev, rid in acked:
            if rid not in held:
                res.add(Mismatch("platform_missing", dev, rid,
                                 "acknowledged, but the platform does not list it"))
        for rid in sorted(held - ours):
            dev = "" if rid.startswith(INVITATION_ID_PREFIX) else rid.split(":")[0]
            res.add(Mismatch("platform_extra", dev, rid,
                             "the platform holds a record of this date the gateway does not"))
    return res


def _seqs(dev: str, rb: int, top: int, tx: Tx) -> set[int]:
    return tx.records.seqs(dev, rb, top)


def _device(dev: str, tx: Tx) -> DeviceRow | None:
    return tx.devices.get(dev)


def _count_upload(res: ReconcileResult, counts: dict[str, int], acked: list[tuple[str, str]], dev: str,
                  upload_id: str, r: Any, what: str) -> None:
    """One uploadable item by its uplink state (r: a row with status and reject_* columns)."""
    counts["uploadable"] += 1
    status = r["status"]
    prefix = what + ": " if what else ""
    if status == "acked":
        counts["acked"] += 1
        acked.append((dev, upload_id))
    elif status == "rejected":
        counts["rejected"] += 1
        res.add(Mismatch("rejected", dev, upload_id, "%s%s %s: %s" % (
            prefix, r["reject_origin"], r["reject_code"], r["reject_reason"])))
    else:
        counts["sent" if status == "sent" else "unsent"] += 1
        res.add(Mismatch("not_delivered", dev, upload_id,
                         "%suplink state %s" % (prefix, status or "never sent")))


async def reconcile_with_platform(store: Store, settings: UplinkSettings, date: str,
                                  client: PlatformClient | None = None) -> ReconcileResult:
    """reconcile() with the platform's own list for D when it offers a query endpoint."""
    own = client is None
    c = client or PlatformClient(settings)
    try:
        ids = await c.query_ids(date)
    finally:
        if own:
            await c.close()
    return await reconcile(store, settings, date, ids)

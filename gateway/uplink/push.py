"""One push run: select what is due, map it, send it in paced batches, record the answers.

Crash safety: items are marked 'sent' (with their batch) before the request and become
'acked'/'rejected' only from the platform's per-record answer. Anything left 'sent' by a
crash, a lost ack or an outage is simply re-sent by a later run; the platform dedupes by
record id, so a re-send never creates a second rating.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.store import Store
from gateway.store.rows import Correction
from gateway.uplink import state
from gateway.uplink.adapters import (
    INVITATION_ID_PREFIX,
    Adapter,
    MappingError,
    UplinkRecord,
    invitation_upload_id,
    make_adapter,
)
from gateway.uplink.client import PlatformClient, PlatformRefused, PlatformUnavailable
from gateway.uplink.pacing import Backoff, RateLimiter, sleep_or_stop
from gateway.uplink.settings import UplinkSettings
from gateway.uplink.wire import RecordResult, encode_batch
from protocol.grades import BAD

log = logging.getLogger("gateway.uplink.push")


def wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class PushReport:
    outcome: str = "done"          # done | unavailable | refused | stopped
    batches: int = 0
    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0              # by the platform
    local_rejected: int = 0        # by the adapter (could not be mapped)
    unanswered: int = 0
    invitation_defaults: int = 0   # "inv:" default ratings put in batches (invitations without a record)
    covered: int = 0               # device unrated records whose case's rating stands elsewhere
    waiting: int = 0               # default ratings held back while another invitation of the case is open
    corrections_applied: int = 0   # exclusions / late reasons the platform took
    corrections_rejected: int = 0
    error: str | None = None
    retry_delays: list[float] = field(default_factory=list)

    @property
    def acked(self) -> int:
        return self.accepted + self.duplicates

    @property
    def ok(self) -> bool:
        return self.outcome == "done"


class Pusher:
    """Sends pending records; one instance may serve many runs (keeps the rate limiter)."""

    def __init__(self, store: Store, settings: UplinkSettings, client: PlatformClient | None = None,
                 now_ms: Callable[[], int] = wall_ms, backoff: Backoff | None = None) -> None:
        self.store = store
        self.s = settings
        self.adapter: Adapter = make_adapter(settings)
        self.client = client or PlatformClient(settings)
        self.now_ms = now_ms
        self.limiter = RateLimiter(settings.max_batches_per_second)
        self.backoff = backoff or Backoff(settings.backoff_base_s, settings.backoff_max_s)

    async def close(self) -> None:
        await self.client.close()

    async def run(self, date: str | None = None, trigger: str = "manual",
                  stop: asyncio.Event | None = None) -> PushReport:
        run_id = await state.start_run(self.store, trigger, date, self.now_ms())
        report = PushReport()
        try:
            await self._run(report, date, stop)
        finally:
            await state.finish_run(self.store, run_id, report.outcome, report.batches, report.acked,
                                   report.rejected + report.local_rejected, report.error, self.now_ms())
        log.info("uplink push (%s%s): %s, %d batches, %d accepted, %d duplicates, %d rejected,"
                 " %d not mappable, %d invitation defaults sent, %d covered, %d corrections applied%s",
                 trigger, " " + date if date else "", report.outcome, report.batches, report.accepted,
                 report.duplicates, report.rejected, report.local_rejected, report.invitation_defaults,
                 report.covered, report.corrections_applied, (": " + report.error) if report.error else "")
        return report

    async def _run(self, report: PushReport, date: str | None, stop: asyncio.Event | None) -> None:
        bounds = state.day_bounds(date, self.s.tz) if date else None
        kinds = self.s.uploadable_kinds()

        async def records_after(after: str) -> list[UplinkRecord]:
            return await state.select_eligible(self.store, kinds, after, self.s.batch_size, bounds)

        async def defaults_after(after: str) -> list[UplinkRecord]:
            due = self.now_ms() - self.s.default_after_s * 1000
            return await state.select_invitation_defaults(self.store, after, self.s.batch_size, due, bounds)

        # Records first: a device record of an invitation wins over the invitation's default.
        if not await self._push_all(report, records_after, stop):
            return
        if self.s.invitation_defaults and not await self._push_all(report, defaults_after, stop):
            return
        if self.adapter.can_correct:
            await self._push_corrections(report, stop)

    async def _push_all(self, report: PushReport, fetch: Callable[[str], Awaitable[list[UplinkRecord]]],
                        stop: asyncio.Event | None) -> bool:
        """Send every row fetch pages out; False when the run ended early (outcome set)."""
        after = ""
        while True:
            if stop is not None and stop.is_set():
                report.outcome = "stopped"
                return False
            rows = await fetch(after)
            if not rows:
                return True
            after = rows[-1].record_id
            records: list[dict[str, object]] = []
            items: list[state.SendItem] = []
            unmappable: list[tuple[str, str, str]] = []
            covered: list[tuple[str, str]] = []
            for r in rows:
                fate = self._case_rule(r)
                if fate is not None:
                    what, ref, why = fate
                    if what == "covered":
                        covered.append((r.record_id, ref))
                    elif what == "wait":
                        report.waiting += 1
                    else:
                        unmappable.append((r.record_id, what, why))
                    continue
                try:
                    records.append(self.adapter.map(r))
                except MappingError as e:
                    unmappable.append((r.record_id, e.code, e.reason))
                    continue
                is_default = r.record_id.startswith(INVITATION_ID_PREFIX)
                items.append(state.SendItem(r.record_id, 1 if r.kind == "unrated" else 0,
                                            r.invitation_id if is_default else None, r.case_no,
                                            r.assess_number if r.kind == "rated" else 1,
                                            (r.tags or "", r.comment or "") if r.grade in BAD else None))
                report.invitation_defaults += is_default
            if covered:
                await state.mark_covered(self.store, covered)
                report.covered += len(covered)
            if unmappable:
                # Kept with the reason for admins; not retried until one re-queues them.
                await state.reject(self.store, unmappable, "gateway", self.now_ms())
                report.local_rejected += len(unmappable)
            if not records:
                continue
            if not await self._send(report, records, items, stop):
                return False

    def _case_rule(self, r: UplinkRecord) -> tuple[str, str, str] | None:
        """One first rating per case at the platform (docs/uplink.md): what to do with r instead
        of sending it, or None to send it. ("covered", by, "") for a default rating whose case
        has its rating elsewhere; ("wait", "", "") while another invitation of the case is open;
        (code, "", reason) for a rating the platform must not get a second time, kept as a
        gateway rejection. A re-queued record (its item exists) is sent as the admin asked."""
        if r.item_status is not None or not r.case_no or r.record_id.startswith(INVITATION_ID_PREFIX):
            return None
        if r.kind == "unrated":
            if r.case_rated_by:
                return "covered", r.case_rated_by, ""
            if r.case_later:
                return "covered", "case:" + r.case_no, ""
            if r.case_pending:
                return "wait", "", ""
            taken = self._default_taken(r) or r.case_taken_by
            return ("covered", taken, "") if taken else None
        taken = self._default_taken(r)
        if taken is not None:
            return "case_has_default", "", (
                "invitation %s already went to the platform as the default rating %s; one rating"
                " per case (re-queue this record to send it anyway)" % (r.invitation_id, taken))
        if r.case_taken_by:
            by_default = r.case_taken_by.startswith(INVITATION_ID_PREFIX)
            code = "case_has_default" if by_default else "case_already_rated"
            return code, "", ("case %s already has its %s rating at the platform (%s); one per case"
                              " (re-queue this record to send it anyway)"
                              % (r.case_no, "follow-up" if r.assess_number == 2 else "first",
                                 r.case_taken_by))
        return None

    async def _push_corrections(self, report: PushReport, stop: asyncio.Event | None) -> None:
        """Send the corrections whose rating the platform holds (one pass per run: what stays
        unanswered goes again on the next run). One correction per rating per batch."""
        ready = await state.corrections_ready(self.store, self.s.batch_size * 10)
        while ready:
            if stop is not None and stop.is_set():
                return
            batch: list[Correction] = []
            rest: list[Correction] = []
            seen: set[str] = set()
            for k in ready:
                if k.record_id in seen or len(batch) >= self.s.batch_size:
                    rest.append(k)
                else:
                    seen.add(k.record_id)
                    batch.append(k)
            ready = rest
            records = [{**self.adapter.map_correction(k.record_id, k.action, k.payload),
                        "correctionId": str(k.id)} for k in batch]
            batch_id = uuid.uuid4().hex
            body, _ = encode_batch(batch_id, records, self.adapter.envelope)
            ids = [k.id for k in batch]
            await state.corrections_sent(self.store, ids, self.now_ms())
            if await self.limiter.wait(stop):
                return
            try:
                results = await self.client.send_corrections(batch_id, body)
            except PlatformUnavailable as e:
                log.warning("uplink corrections: %s; sent again on the next run", e.reason)
                return
            except PlatformRefused as e:
                if e.code == "auth":
                    return
                await state.corrections_done(self.store, [(i, "rejected", str(e)) for i in ids],
                                             self.now_ms())
                report.corrections_rejected += len(ids)
                continue
            by_id = {r.record_id: r for r in results}
            done: list[tuple[int, str, str | None]] = []
            for i in ids:
                res = by_id.get(str(i))
                if res is None:
                    continue   # unanswered: stays sent, again next run
                if res.acked:
                    done.append((i, "acked", None))
                    report.corrections_applied += 1
                else:
                    done.append((i, "rejected", "%s: %s" % (res.code, res.reason)))
                    report.corrections_rejected += 1
            await state.corrections_done(self.store, done, self.now_ms())

    @staticmethod
    def _default_taken(r: UplinkRecord) -> str | None:
        """The "inv:" id already carrying r's invitation's default rating, when r is a device
        record considered for the first time (a re-queued record is sent as the admin asked)."""
        if r.item_status is not None or not r.invitation_id or r.record_id.startswith(INVITATION_ID_PREFIX):
            return None
        if r.default_status in state.DEFAULT_TAKEN:
            return invitation_upload_id(r.invitation_id)
        return None

    async def _send(self, report: PushReport, records: list[dict[str, object]],
                    items: list[state.SendItem], stop: asyncio.Event | None) -> bool:
        """Send one batch until answered; False when the run must end (outage, refusal, stop)."""
        batch_id = uuid.uuid4().hex
        body, digest = encode_batch(batch_id, records, self.adapter.envelope)
        ids = [i.upload_id for i in items]
        await state.mark_sent(self.store, batch_id, digest, items, self.now_ms(),
                              "pending" if self.adapter.can_correct else "manual")
        report.batches += 1
        attempt = 0
        while True:
            attempt += 1
            if await self.limiter.wait(stop):
                report.outcome = "stopped"
                return False
            report.requests += 1
            try:
                results: list[RecordResult] = await self.client.send_batch(batch_id, body)
            except PlatformUnavailable as e:
                await state.note_attempt(self.store, batch_id, e.reason)
                if attempt >= self.s.max_attempts:
                    await state.finish_batch(self.store, batch_id, "failed", e.reason, self.now_ms())
                    report.outcome, report.error = "unavailable", e.reason
                    return False
                delay = self.backoff.delay(attempt, e.retry_after_s)
                report.retry_delays.append(delay)
                log.warning("uplink batch %s: %s; retry %d in %.2f s", batch_id, e.reason, attempt, delay)
                if await sleep_or_stop(delay, stop):
                    report.outcome = "stopped"
                    return False
                continue
            except PlatformRefused as e:
                await state.note_attempt(self.store, batch_id, str(e))
                await state.finish_batch(self.store, batch_id, "refused", str(e), self.now_ms())
                report.error = str(e)
                if e.code == "auth":   # our credentials: nothing is wrong with the records
                    report.outcome = "refused"
                    return False
                # The whole batch refused on purpose: keep every record with the reason.
                await state.reject(self.store, [(rid, e.code, e.reason) for rid in ids], "platform",
                                   self.now_ms())
                report.rejected += len(ids)
                return True
            applied = await state.apply_results(self.store, batch_id, ids, results, self.now_ms())
            report.accepted += applied.accepted
            report.duplicates += applied.duplicates
            report.rejected += applied.rejected
            report.unanswered += applied.unanswered
            return True


async def push_once(store: Store, settings: UplinkSettings, date: str | None = None,
                    trigger: str = "manual", stop: asyncio.Event | None = None) -> PushReport:
    pusher = Pusher(store, settings)
    try:
        return await pusher.run(date, trigger, stop)
    finally:
        await pusher.close()

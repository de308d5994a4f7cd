"""The sweep: apply every due transition, each exactly once.

It reads only documents whose next deadline has come (an index on next_due_at), so its cost
follows what is due, not how many reports are open. Each document moves from one version to
the next with a compare-and-set: two replicas sweeping the same report cannot both emit a
transition. Up to ``write_chunk`` reports are written in one transaction together with one
batch outbox document holding the events of the writes that applied (services/sla/relay.py)
and the change of the gauges' counters (services/sla/tally.py): per report, one document
write; per chunk, one outbox insert, a few counter updates and one relay mark.

A due report the sweep cannot process (a damaged document, clocks a changed policy does not
fit, a bug, an update that would leave it due) is set aside: ``sweep_error`` says what failed
and when, and ``next_due_at`` moves to a retry time 1 minute later, doubling up to 1 hour, so
it neither blocks the due reports behind it nor is retried in a tight loop. The next write
from its clocks (an action, an extension, a successful sweep) puts its real ``next_due_at``
back; a successful sweep also removes ``sweep_error``. A round that reads the very same due
reports twice stops until the next round instead of spinning.

With several replicas, only the holder of the ``sla-sweep`` lease (services/common/lease.py)
sweeps; the others stand by. The holder checks the lease before each batch and each write,
and the lease's keeper renews it every quarter of the TTL beside the sweep, so neither a long
backlog sweep nor a slow batch (the escalation gate waiting for the broker while it plans)
loses it; the sweep stops when it has lost it all the same. The compare-and-set writes stay:
they keep a paused former holder, which may write once more before it notices, from storing
a transition twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from services.common.clock import Clock, doubling, sleep_until_or_stop
from services.common.lease import Lease, run_holding
from services.common.mongo import Doc
from services.common.outbox import OutboxMessage
from services.sla.codec import (
    CONTENT,
    case_fields,
    case_from_doc,
    transition_entry,
    transition_event,
)
from services.sla.domain.clocks import OMBUDSMAN, Transition, due_transitions
from services.sla.domain.policy import Policy
from services.sla.metrics import (
    AUTO_CLOSE_DUE,
    BREACHES,
    DETECTION_LAG,
    ESCALATIONS,
    ESCALATIONS_HELD,
    SWEEP_DURATION,
    SWEEP_LAST_SUCCESS,
    SWEEP_REPORTS,
    SWEEP_SET_ASIDE,
    WARNINGS,
)
from services.sla.relay import batch_outbox_of
from services.sla.tally import Counts, add, apply_counts, change, in_transaction, tallies_of

log = logging.getLogger(__name__)


def count_transitions(transitions: list[Transition], now: datetime) -> None:
    """Metrics for transitions this replica's write made happen (not for lost races)."""
    for t in transitions:
        DETECTION_LAG.labels(kind=t.kind).observe(
            max((now - (t.point or t.due_at)).total_seconds(), 0.0)
        )
        counter = {
            "warning": WARNINGS,
            "breach": BREACHES,
            "escalation": ESCALATIONS,
            "auto_close_due": AUTO_CLOSE_DUE,
        }[t.kind]
        counter.labels(clock=t.clock).inc()


#: A held escalation is tried again after this by default (the service passes its probe
#: interval, LAPOR_SLA_WATERMARK_INTERVAL_SECONDS, at least 1 s).
HOLD_RETRY = timedelta(seconds=30)
#: ``escalate_until`` when the gate lets no escalation through.
HELD_ALL = datetime.min.replace(tzinfo=UTC)


class EscalationGate(Protocol):
    """services/sla/watermark.py: the latest Ombudsman deadline that may escalate."""

    def horizon(self) -> datetime | None: ...

    @property
    def known_unreachable(self) -> bool: ...

    async def refresh(self) -> datetime | None: ...


class _LeaseLost(Exception):
    """A sweep under way found its lease held by another process: it stops there."""


#: The lease whose holder sweeps (services/common/lease.py).
SWEEP_LEASE = "sla-sweep"
LEASE_LOST = "sweep stopped part-way: this process no longer holds the sweep's lease"

#: The field that marks a report the sweep could not process (see set_aside).
SWEEP_ERROR = "sweep_error"
#: At most this much of an error's text is kept in ``sweep_error.detail``.
MAX_ERROR_DETAIL = 500


class NoProgress(RuntimeError):
    """A due report whose update would leave it due: sweeping it again would loop."""


@dataclass(frozen=True)
class Planned:
    """One due report's compare-and-set update, what it makes happen and its events."""

    doc_id: Any
    op: UpdateOne
    transitions: list[Transition]
    events: list[OutboxMessage]
    counts: Counts
    held: bool = False  # an Ombudsman escalation is due but held by the gate


def sweep_update(
    doc: Doc,
    policy: Policy,
    now: datetime,
    token: str = "",
    institution_name: Callable[[str], str] = lambda _id: "",
    escalate_until: datetime | None = None,
    hold_retry: timedelta = HOLD_RETRY,
) -> Planned:
    """The compare-and-set update for one due document, and the transitions it makes.

    `token` marks the write, so a sweeper can tell afterwards which of its writes won. The
    events are not put into the document: the sweep stores them in a batch outbox document
    in the same transaction (see services/sla/relay.py).

    `escalate_until`: with the escalation gate (services/sla/watermark.py), the time sla
    has heard every action up to (``HELD_ALL``: nothing). A report whose hand-over time (the
    Ombudsman deadline plus the hand-over margin, ``Clock.acted_at``) is later is *held*:
    its other transitions happen, its Ombudsman clock stays as it was and the report is due
    again after `hold_retry`. None: no gate."""
    case = case_from_doc(doc)
    updated, transitions = due_transitions(case, now, policy.ladder, policy.ladder_interval)
    held = False
    if escalate_until is not None:
        escalation = next((t for t in transitions if t.kind == "escalation"), None)
        original = case.clock(OMBUDSMAN)
        if escalation is not None and original is not None and original.acted_at > escalate_until:
            held = True
            transitions = [t for t in transitions if t is not escalation]
            updated = updated.with_clock(original)
    entries = [transition_entry(t) for t in transitions]
    view = {**doc, "timeline": [*doc.get("timeline", []), *entries]}
    escalates = any(t.kind == "escalation" for t in transitions)
    if escalates:
        updated = replace(updated, escalated=True)
        top_id = str(doc.get("institution_id", "")).split("/", 1)[0]
        if top_id and not doc.get("top_institution_name"):  # the Ombudsman's: by name
            view["top_institution_name"] = institution_name(top_id)
    version = doc["version"] + 1  # what the compare-and-set below writes; the events carry it
    events = [transition_event(updated, t, view, now, version) for t in transitions]
    fields = case_fields(updated, doc["received_at"])
    if held:  # due again after the retry, or earlier for another clock
        others = [c.next_at for c in updated.clocks if c.name != OMBUDSMAN]
        fields["next_due_at"] = min([t for t in others if t is not None] + [now + hold_retry])
    if fields["next_due_at"] is not None and fields["next_due_at"] <= now:
        raise NoProgress("the report would stay due after its transitions")
    update: Doc = {"$set": {**fields, "version": version, **({"swept_by": token} if token else {})}}
    if entries:
        update["$push"] = {"timeline": {"$each": entries}}
    unset: Doc = {}
    if SWEEP_ERROR in doc:  # set aside before, processed now
        unset[SWEEP_ERROR] = ""
    if escalates:  # its event above: the only reader
        unset[CONTENT] = ""
    if unset:
        update["$unset"] = unset
    counts = change(doc.get("card"), doc.get("rating"), fields["card"], doc.get("rating"))
    op = UpdateOne({"_id": doc["_id"], "version": doc["version"]}, update)
    return Planned(doc["_id"], op, transitions, events, counts, held)


def retry_delay(attempts: int, first: timedelta, longest: timedelta) -> timedelta:
    """The pause before the ``attempts``-th retry of a report set aside: doubling, capped."""
    seconds = doubling(first.total_seconds(), attempts - 1, longest.total_seconds())
    return timedelta(seconds=seconds)


def set_aside(
    doc: Doc, error: BaseException, now: datetime, first: timedelta, longest: timedelta
) -> UpdateOne:
    """The update that sets aside a due report the sweep could not process: what failed and
    when in ``sweep_error``, the next attempt in ``next_due_at``. A compare-and-set on the
    version and due time read: a report written meanwhile is simply read again."""
    previous = doc.get(SWEEP_ERROR)
    attempts = (previous.get("attempts", 0) if isinstance(previous, dict) else 0) + 1
    retry_at = now + retry_delay(attempts, first, longest)
    record = {
        "error": type(error).__name__,
        "detail": str(error)[:MAX_ERROR_DETAIL],
        "at": now,
        "first_at": previous.get("first_at", now) if isinstance(previous, dict) else now,
        "attempts": attempts,
        "retry_at": retry_at,
    }
    return UpdateOne(
        {"_id": doc["_id"], "version": doc.get("version"), "next_due_at": doc.get("next_due_at")},
        {"$set": {"next_due_at": retry_at, SWEEP_ERROR: record}},
    )


#: What the sweep reads of a due report: the clocks and what the Ombudsman's event carries.
#: Never the outboxes nor the applied event ids (they can be large and are not needed).
SWEEP_PROJECTION = {"_published": 0, "_applied": 0, "_outbox": 0, "_early": 0}


@dataclass
class Sweeper:
    cases: AsyncCollection[Doc]
    policy: Policy
    clock: Clock
    on_stored: Callable[[], None] = lambda: None
    #: The name of an institution by id (the directory): the Ombudsman's escalation names
    #: the government above the unit that holds the report.
    institution_name: Callable[[str], str] = lambda _id: ""
    batch: int = 1000
    #: Reports per transaction: one write must stay well under the driver's heartbeat
    #: timeout (3 s), or a slow database gets the connection pool reset under it.
    write_chunk: int = 250
    #: A report the sweep cannot process is tried again after this, then twice as long
    #: after each failure, up to ``retry_longest``.
    retry_first: timedelta = timedelta(minutes=1)
    retry_longest: timedelta = timedelta(hours=1)
    #: The escalation gate (services/sla/watermark.py); None: escalations are not gated.
    gate: EscalationGate | None = None
    #: A held escalation's report is due again after this.
    hold_retry: timedelta = HOLD_RETRY
    #: Only its holder sweeps (None: this sweeper always does).
    lease: Lease | None = None
    #: The last `sweep_once` went through as the holder: it neither stood by nor lost the
    #: lease part-way.
    swept_through: bool = field(default=False, init=False)

    async def _leading(self) -> bool:
        return self.lease is None or await self.lease.held()

    async def _still_leading(self) -> None:
        """Within a sweep: raise `_LeaseLost` once this process no longer holds the lease."""
        if not await self._leading():
            raise _LeaseLost

    async def _store(self, chunk: list[Planned], token: str, now: datetime) -> set[Any]:
        """One transaction: the compare-and-set updates, the batch outbox document with the
        events of the writes that applied, and the counters' change. Returns the ids won."""
        outbox = batch_outbox_of(self.cases)
        tallies = tallies_of(self.cases)

        async def work(session: AsyncClientSession) -> set[Any]:
            result = await self.cases.bulk_write(
                [p.op for p in chunk], ordered=False, session=session
            )
            won = {p.doc_id for p in chunk}
            if result.modified_count < len(chunk):  # another replica won some races
                won = {
                    d["_id"]
                    async for d in self.cases.find(
                        {"_id": {"$in": list(won)}, "swept_by": token}, {"_id": 1}, session=session
                    )
                }
            events = [e.as_doc() for p in chunk if p.doc_id in won for e in p.events]
            if events:
                await outbox.insert_one(
                    {
                        "_id": f"{token}:{chunk[0].doc_id}",
                        "at": now,
                        "pending": True,
                        "events": events,
                    },
                    session=session,
                )
            counts: Counts = {}
            for p in chunk:
                if p.doc_id in won:
                    add(counts, p.counts)
            await apply_counts(tallies, counts, session)
            return won

        return await in_transaction(self.cases, work)

    async def _set_aside(self, failed: list[tuple[Doc, BaseException]], now: datetime) -> int:
        """Set aside the reports that failed; return how many were (not written meanwhile)."""
        ops = [set_aside(d, e, now, self.retry_first, self.retry_longest) for d, e in failed]
        result = await self.cases.bulk_write(ops, ordered=False)
        SWEEP_SET_ASIDE.inc(result.modified_count)
        return result.modified_count

    def _plan_each(
        self, docs: list[Doc], now: datetime, token: str, escalate_until: datetime | None
    ) -> tuple[list[Planned], list[tuple[Doc, BaseException]]]:
        planned: list[Planned] = []
        failed: list[tuple[Doc, BaseException]] = []
        for doc in docs:
            try:
                planned.append(
                    sweep_update(
                        doc,
                        self.policy,
                        now,
                        token,
                        self.institution_name,
                        escalate_until,
                        self.hold_retry,
                    )
                )
            except Exception as exc:  # one bad record never stops a sweep
                # Its type only: an error's text may quote the report (sweep_error has it).
                log.warning(
                    "sweep could not process a report; set aside for a later retry",
                    extra={"tracking_id": doc.get("_id"), "error": type(exc).__name__},
                )
                failed.append((doc, exc))
        return planned, failed

    async def _plan(
        self, due: list[Doc], now: datetime, token: str
    ) -> tuple[list[Planned], list[tuple[Doc, BaseException]]]:
        """Plan every due report. With the gate, an escalation its last snapshot does not
        cover makes it take a new one (waiting briefly for the consumer; not while the last
        probe failed) and plan those reports again; what is still not covered is held."""
        if self.gate is None:
            return self._plan_each(due, now, token, None)
        horizon = self.gate.horizon() or HELD_ALL
        planned, failed = self._plan_each(due, now, token, horizon)
        if any(p.held for p in planned) and not self.gate.known_unreachable:
            fresh = await self.gate.refresh() or HELD_ALL
            if fresh > horizon:
                again = {p.doc_id for p in planned if p.held}
                kept = [p for p in planned if not p.held]
                docs = [d for d in due if d["_id"] in again]
                replanned, refailed = self._plan_each(docs, now, token, fresh)
                planned, failed = kept + replanned, failed + refailed
        held = sum(1 for p in planned if p.held)
        if held:
            ESCALATIONS_HELD.inc(held)
            log.warning(
                "Ombudsman escalations held: sla has not yet heard every case action "
                "published up to their deadlines (broker unreachable or consumer behind)",
                extra={"count": held},
            )
        return planned, failed

    async def sweep_once(self) -> int:
        """Apply every due transition; return how many reports moved. Without the lease
        (another replica holds it), or once it is lost, no more."""
        self.swept_through = False
        if not await self._leading():
            return 0
        started = time.perf_counter()
        now = self.clock.now()
        moved = 0
        previous: list[Any] = []
        whole = True
        try:
            while True:
                if previous:
                    await self._still_leading()  # also renews it between batches
                due = (
                    await self.cases.find({"next_due_at": {"$lte": now}}, SWEEP_PROJECTION)
                    .sort("next_due_at", 1)
                    .to_list(self.batch)
                )
                if not due:
                    break
                ids = [doc.get("_id") for doc in due]
                if ids == previous:  # nothing moved since the last read: never spin on it
                    log.warning("sweep made no progress; pausing until the next round")
                    whole = False  # what is due behind them was not swept: no success mark
                    break
                previous = ids
                token = uuid.uuid4().hex
                planned, failed = await self._plan(due, now, token)
                for i in range(0, len(planned), self.write_chunk):
                    await self._still_leading()  # a batch may outlast half the TTL
                    chunk = planned[i : i + self.write_chunk]
                    won = await self._store(chunk, token, now)
                    moved += len(won)
                    SWEEP_REPORTS.inc(len(won))
                    for p in chunk:
                        if p.doc_id in won:
                            count_transitions(p.transitions, now)
                    self.on_stored()
                if failed:
                    await self._set_aside(failed, now)
                if len(due) < self.batch:
                    break
        except _LeaseLost:
            log.warning(LEASE_LOST)
            whole = False
        SWEEP_DURATION.observe(time.perf_counter() - started)
        self.swept_through = whole
        return moved

    async def run(self, stop: asyncio.Event, interval: float = 0.5) -> None:
        """Sweep every `interval` while holding the lease, with the lease's keeper beside
        the sweeps (a batch may outlast the TTL); release it when `stop` is set, or when
        cancelled at shutdown. Only a round that swept through marks
        ``lapor_sla_sweep_last_success_timestamp_seconds`` (the stall alert takes the newest
        of the job: the holder's): not one standing by, one cut short by a lost lease, nor
        one that stopped on due reports none of its writes moved."""
        # Stopped or cancelled (shutdown): another replica sweeps at once, not after the TTL.
        await run_holding(self.lease, stop, self._sweeps(stop, interval))

    async def _sweeps(self, stop: asyncio.Event, interval: float) -> None:
        while not stop.is_set():
            try:
                await self.sweep_once()
                if self.swept_through:
                    SWEEP_LAST_SUCCESS.set_to_current_time()
            except Exception:
                log.exception("sweep failed; retrying")
            if await sleep_until_or_stop(stop, interval):
                break

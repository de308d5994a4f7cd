"""SLA use cases driven by events: start the clocks of a routed report (once), follow a
different routing decision for it (after a restore of routing's database), keep the report's
content for the Ombudsman (until it is escalated, closed or archived), and move the clocks
with every action on the case.

Every write is a compare-and-set on the document's ``version`` with the events in the same
write (outbox), and remembers the applied event ids: redeliveries and a second replica are
harmless. An action that arrives before its report was routed is kept (``_early``) and
applied, in order, as soon as the clocks exist.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from lapor.v1 import common_pb2, events_pb2
from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.common.clock import Clock
from services.common.errors import Unavailable
from services.common.kafka import Delivery
from services.common.metrics import EVENTS_CONSUMED
from services.common.mongo import APPLIED_KEEP, Doc, duplicate_keys_only, remember_event
from services.common.outbox import (
    PENDING,
    OutboxMessage,
    ensure_queue,
    outbox_update,
    queue_entries,
    queue_for,
    queued_fields,
)
from services.common.status import FINAL_STATES
from services.common.topics import (
    CASE_ACTIONS,
    COMPLAINTS_RECEIVED,
    COMPLAINTS_ROUTED,
)
from services.sla.codec import (
    CONTENT,
    case_fields,
    case_from_doc,
    deadlines_pb,
    deadlines_set_event,
)
from services.sla.domain.actions import Action, ClockError, Rules, apply_action
from services.sla.domain.clocks import MET, STOPPED, VERIFICATION, CaseClocks, start_clocks
from services.sla.domain.clocks import Clock as SlaClock
from services.sla.tally import (
    Counts,
    add,
    apply_counts,
    cas_and_count,
    change,
    contribution,
    in_transaction,
    tallies_of,
)
from services.sla.tally import (
    ensure_indexes as ensure_tally_indexes,
)

log = logging.getLogger(__name__)

VERIFICATION_QUEUE = "verification-queue"
#: The ``version`` of a report's document when its clocks start (every later write adds 1;
#: SlaEvent.clocks_version carries the version a write left).
FIRST_VERSION = 1
#: The institution of the routing decision applied last (absent in older documents: the
#: holder stands in), and when routing decided the latest event applied (a ComplaintRouted
#: or CaseAction): a re-routing decided before that is superseded (`_reroute`).
ROUTED_TO = "routed_to"
ROUTING_AT = "routing_at"
MAX_CAS_ATTEMPTS = 50
#: The reports whose content (title and body) is still kept: neither escalated (its event
#: carried them) nor closed or archived (never escalated any more).
CONTENT_WANTED: Doc = {
    "case_state": {"$nin": [s.value for s in FINAL_STATES]},
    "escalated": {"$ne": True},
}
#: Indexes of earlier versions that no query uses any more (dropped at start).
OBSOLETE_INDEXES = {
    "institution_id_1_next_due_at_1",
    "card.top_institution_1_card.period_1",
    "card.open_1_card.colour_1",
}


class Conflict(Unavailable):
    """The document changed between read and write too often: busy, retry later (a consumer
    retries it as transient, never dead-letters it)."""


def _action_of(msg: events_pb2.CaseAction) -> Action:
    return Action(
        name=msg.action,
        at=msg.meta.occurred_at.ToDatetime(tzinfo=UTC),
        to_state=msg.to_state,
        institution_id=msg.institution.id,
        handling_class=msg.handling_class,
        new_due_at=msg.new_due_at.ToDatetime(tzinfo=UTC) if msg.HasField("new_due_at") else None,
    )


def _entry(msg: events_pb2.CaseAction) -> Doc:
    at = msg.meta.occurred_at.ToDatetime(tzinfo=UTC)
    detail = msg.reason or msg.to_state or msg.handling_class
    # actor_role only: an officer's subject is not needed, a reporter never has one.
    return {"at": at, "action": msg.action, "actor": msg.actor_role or "system", "detail": detail}


@dataclass
class SlaHandlers:
    cases: AsyncCollection[Doc]
    rules: Rules
    clock: Clock
    on_stored: Callable[[], None] = lambda: None

    async def ensure_indexes(self) -> None:
        """Only what a query needs: every index costs each report write (SecantusDB rewrites
        every index entry of a document it updates). Report cards and gauges read the
        counters (services/sla/tally.py), not the reports."""
        await self.cases.create_index(PENDING)
        await self.cases.create_index("next_due_at")
        await ensure_queue(self.cases)  # a routed report's deadlines_set waits there
        existing = {i["name"] async for i in await self.cases.list_indexes()}
        for obsolete in OBSOLETE_INDEXES & existing:
            await self.cases.drop_index(obsolete)
        await ensure_tally_indexes(tallies_of(self.cases))

    # -- lapor.complaints.routed -----------------------------------------------------
    async def handle_routed(self, deliveries: list[Delivery[events_pb2.ComplaintRouted]]) -> None:
        now = self.clock.now()
        ops = []
        for delivery in deliveries:
            routed = delivery.message
            routed_at = routed.meta.occurred_at.ToDatetime(tzinfo=UTC)
            # Receipt (the Ombudsman's 60 days, the report card's month): intake's time, not
            # routing's, which may lag behind it; events from before the field: routing's.
            received_at = (
                routed.received_at.ToDatetime(tzinfo=UTC)
                if routed.HasField("received_at")
                else routed_at
            )
            classification = common_pb2.Classification.Name(routed.classification)
            case = start_clocks(
                routed.meta.tracking_id,
                routed.institution.id,
                routed.timezone or "Asia/Jakarta",
                classification.removeprefix("CLASSIFICATION_").lower(),
                received_at,
                routed_at,
                self.rules.policy,
                self.rules.calendar,
                in_verification=routed.institution.id == VERIFICATION_QUEUE,
            )
            fields = {
                **case_fields(case, received_at),
                "timezone": case.timezone,
                "institution_name": routed.institution.name,
                "institution_ancestors": list(routed.holder_ancestors),
                "region_code": routed.region_code,
                "classification": classification,
                "topic": routed.topic,
                "received_at": received_at,
                ROUTED_TO: routed.institution.id,
                ROUTING_AT: routed_at,
                "version": FIRST_VERSION,
                "timeline": [
                    {
                        "at": routed_at,
                        "action": "routed",
                        "actor": "routing",
                        "detail": routed.institution.name,
                    }
                ],
                "_applied": [routed.meta.event_id],
            }
            events = [deadlines_set_event(case, routed.meta.event_id, now, FIRST_VERSION)]
            fields.update(queued_fields(events))  # the events themselves go to the queue
            ops.append(
                (
                    case.tracking_id,
                    UpdateOne(
                        {"_id": case.tracking_id, "clocks": {"$exists": False}},
                        {"$set": fields},
                        upsert=True,
                    ),
                    fields["card"],
                    events,
                )
            )
        started, early = await self._store_routed(ops)
        EVENTS_CONSUMED.labels(topic=COMPLAINTS_ROUTED, outcome="applied").inc(len(started))
        for tracking_id in early:
            await self._apply_actions(tracking_id, [])
        for i, delivery in enumerate(deliveries):  # in order: one partition, ordered per case
            if i not in started:
                outcome = await self._reroute(delivery.message)
                EVENTS_CONSUMED.labels(topic=COMPLAINTS_ROUTED, outcome=outcome).inc()
        self.on_stored()

    async def _store_routed(
        self, ops: list[tuple[str, UpdateOne, Doc, list[OutboxMessage]]]
    ) -> tuple[set[int], list[str]]:
        """Start the clocks of the reports not routed yet, queue their deadlines_set events
        (``clocks_outbox``: the relay publishes and deletes them, no update of the report)
        and count them, in one transaction; returns the positions in `ops` of the reports it
        started (the others were routed already: `_reroute`), and the reports that hold
        actions kept from before they were routed (`_keep_early`: a writer adding one
        meanwhile conflicts with this transaction, which then runs again and sees it)."""
        tallies = tallies_of(self.cases)

        async def work(session: AsyncClientSession) -> tuple[set[int], list[str]]:
            ids = list(dict.fromkeys(tid for tid, *_ in ops))
            known = {
                d["_id"]: d
                async for d in self.cases.find(
                    {"_id": {"$in": ids}},
                    {"version": 1, "rating": 1, "_early.id": 1},
                    session=session,
                )
            }
            todo: dict[str, tuple[UpdateOne, Doc, list[OutboxMessage]]] = {}
            started: set[int] = set()
            for i, (tid, op, card, events) in enumerate(ops):
                if "version" not in known.get(tid, {}) and tid not in todo:
                    todo[tid] = (op, card, events)
                    started.add(i)
            if todo:
                await self.cases.bulk_write([op for op, _, _ in todo.values()], session=session)
                entries = [e for _, _, events in todo.values() for e in queue_entries(events)]
                await queue_for(self.cases).insert_many(entries, session=session)
            counts: Counts = {}
            for tid, (_, card, _) in todo.items():
                add(counts, contribution(card, known.get(tid, {}).get("rating")))
            await apply_counts(tallies, counts, session)
            early = [tid for tid in ids if known.get(tid, {}).get("_early")]
            return started, early

        return await in_transaction(self.cases, work)

    async def _reroute(self, routed: events_pb2.ComplaintRouted) -> str:
        """Follow a ComplaintRouted for a report whose clocks exist: routing routed it again
        after a restore of its database and decided differently (rules or directory changed;
        the same decision repeats the event id). The clocks move as for the case action that
        makes the same move (`_rerouted`); the outcome for the metric: "duplicate" (event
        applied already, or the same institution as the routing decision applied last),
        "ignored" (the report is closed or archived: no action leads out of that), else
        "applied"."""
        tracking_id, event_id = routed.meta.tracking_id, routed.meta.event_id
        routed_at = routed.meta.occurred_at.ToDatetime(tzinfo=UTC)
        for _ in range(MAX_CAS_ATTEMPTS):
            doc = await self.cases.find_one({"_id": tracking_id})
            if doc is None or "clocks" not in doc:  # not reached: `_store_routed` started them
                raise Conflict(f"{tracking_id}: routed again before its clocks were stored")
            last = doc.get(ROUTED_TO, doc["institution_id"])  # older documents: the holder
            if event_id in doc.get("_applied", []) or routed.institution.id == last:
                return "duplicate"
            before = case_from_doc(doc)
            if before.case_state in FINAL_STATES:
                log.info(
                    "report routed again after it was closed: ignored",
                    extra={"tracking_id": tracking_id, "state": before.case_state},
                )
                return "ignored"
            # An action routing decided after this routing (another topic: it may arrive
            # first) already carries the holder and state that follow from it.
            superseded = bool(doc.get(ROUTING_AT)) and doc[ROUTING_AT] > routed_at
            case = before
            for act in _rerouted(before, routed, routed_at, superseded):
                case = apply_action(case, act, self.rules)
            holder: Doc = {}
            if not superseded:
                holder["institution_ancestors"] = list(routed.holder_ancestors)
                if routed.institution.name:
                    holder["institution_name"] = routed.institution.name
            version = doc["version"] + 1
            update = remember_event(
                {
                    "$set": {
                        **case_fields(case, doc["received_at"]),
                        **holder,
                        ROUTED_TO: routed.institution.id,
                        ROUTING_AT: max(routed_at, doc.get(ROUTING_AT) or routed_at),
                        "version": version,
                    },
                    "$push": {
                        "timeline": {
                            "at": routed_at,
                            "action": "rerouted",
                            "actor": "routing",
                            "detail": routed.institution.name or routed.institution.id,
                        },
                    },
                },
                event_id,
            )
            _add_deadlines_set(update, before, case, event_id, self.clock.now(), version)
            rating = doc.get("rating")
            counts = change(doc.get("card"), rating, update["$set"]["card"], rating)
            if await cas_and_count(self.cases, tracking_id, doc["version"], update, counts):
                return "applied"
        raise Conflict(f"{tracking_id}: too many concurrent changes")

    # -- lapor.complaints.received ---------------------------------------------------
    async def handle_received(
        self, deliveries: list[Delivery[events_pb2.ComplaintReceived]]
    ) -> None:
        """Keep title and body for the Ombudsman (never an identity: the event has none),
        unless the report no longer needs them: escalated already, or closed or archived
        (the Ombudsman clock can never fire again; `_actions_update` and the sweep drop them
        then, and a redelivery or a replay must not bring them back). Such a report's
        document does not match the upsert's filter, so the upsert answers with a duplicate
        key; so it does when another writer created the document meanwhile (the routed
        report, an early action), and then the second try updates it. What is refused twice
        is counted as "ignored", never retried."""
        ops = [
            UpdateOne(
                {"_id": d.message.meta.tracking_id, **CONTENT_WANTED},
                {"$set": {CONTENT: {"title": d.message.title, "body": d.message.body}}},
                upsert=True,
            )
            for d in deliveries
        ]
        todo = list(range(len(ops)))
        for _ in range(2):  # a refused one was created meanwhile (updated now) or is not wanted
            try:
                await self.cases.bulk_write([ops[i] for i in todo], ordered=False)
                todo = []
            except BulkWriteError as exc:
                if not duplicate_keys_only(exc):
                    raise
                todo = [todo[e["index"]] for e in exc.details["writeErrors"]]
            if not todo:
                break
        for i in todo:
            log.info(
                "report content not kept: the report was escalated or is closed or archived",
                extra={"tracking_id": deliveries[i].message.meta.tracking_id},
            )
        EVENTS_CONSUMED.labels(topic=COMPLAINTS_RECEIVED, outcome="applied").inc(
            len(ops) - len(todo)
        )
        if todo:
            EVENTS_CONSUMED.labels(topic=COMPLAINTS_RECEIVED, outcome="ignored").inc(len(todo))

    # -- lapor.cases.actions ---------------------------------------------------------
    async def handle_actions(self, deliveries: list[Delivery[events_pb2.CaseAction]]) -> None:
        for delivery in deliveries:  # in order: one partition, ordered per case
            outcome = await self._apply_actions(
                delivery.message.meta.tracking_id, [delivery.message]
            )
            EVENTS_CONSUMED.labels(topic=CASE_ACTIONS, outcome=outcome).inc()
        self.on_stored()

    async def _apply_actions(self, tracking_id: str, incoming: list[events_pb2.CaseAction]) -> str:
        for _ in range(MAX_CAS_ATTEMPTS):
            doc = await self.cases.find_one({"_id": tracking_id})
            if doc is None or "clocks" not in doc:
                if await self._keep_early(tracking_id, doc, incoming):
                    return "applied"
                continue
            early = [events_pb2.CaseAction.FromString(e["value"]) for e in doc.get("_early", [])]
            applied = set(doc.get("_applied", []))
            todo = [m for m in [*early, *incoming] if m.meta.event_id not in applied]
            if not todo and not early:
                return "duplicate"
            update, outcome = self._actions_update(doc, todo)
            counts = change(
                doc.get("card"),
                doc.get("rating"),
                update["$set"]["card"],
                update["$set"].get("rating", doc.get("rating")),
            )
            if await cas_and_count(self.cases, tracking_id, doc["version"], update, counts):
                return outcome
        raise Conflict(f"{tracking_id}: too many concurrent changes")

    async def _keep_early(
        self, tracking_id: str, doc: Doc | None, incoming: list[events_pb2.CaseAction]
    ) -> bool:
        """Keep actions of a report not routed yet; True when stored (or already kept)."""
        kept = {e["id"] for e in (doc or {}).get("_early", [])}
        new = [m for m in incoming if m.meta.event_id not in kept]
        if not new:
            return True
        values = [{"id": m.meta.event_id, "value": m.SerializeToString()} for m in new]
        try:
            result = await self.cases.update_one(
                {
                    "_id": tracking_id,
                    "clocks": {"$exists": False},
                    "_early.id": {"$nin": [v["id"] for v in values]},
                },
                {"$push": {"_early": {"$each": values}}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False  # routed (or kept) meanwhile: read again
        return bool(result.modified_count or result.upserted_id is not None)

    def _actions_update(self, doc: Doc, todo: list[events_pb2.CaseAction]) -> tuple[Doc, str]:
        now = self.clock.now()
        before = case_from_doc(doc)
        case = before
        outcome = "applied"
        entries = []
        for msg in todo:
            try:
                case = apply_action(case, _action_of(msg), self.rules)
                entries.append(_entry(msg))
            except ClockError as exc:
                outcome = "ignored"
                log.warning(
                    "action refused by the clocks",
                    extra={"tracking_id": case.tracking_id, "error": str(exc)},
                )
                entries.append(
                    {**_entry(msg), "action": f"{msg.action}_refused", "detail": str(exc)}
                )
        holders = [m for m in todo if m.institution.id]
        # When routing decided the latest of them (a re-routing older than that is superseded).
        times = [m.meta.occurred_at.ToDatetime(tzinfo=UTC) for m in todo]
        routing_at = max([t for t in [doc.get(ROUTING_AT), *times] if t is not None], default=None)
        # The satisfaction rating counts when routing applied the confirm (it published the
        # CaseAction); the latest confirm's rating stands (a reopened report confirmed again).
        ratings = [m.rating for m in todo if m.action == "confirmed" and 1 <= m.rating <= 5]
        holder: Doc = {}
        if holders:  # who holds the case now: its ancestors and its name (for the Ombudsman)
            holder["institution_ancestors"] = list(holders[-1].holder_ancestors)
            if holders[-1].institution.name:
                holder["institution_name"] = holders[-1].institution.name
        version = doc["version"] + 1
        update: Doc = {
            "$set": {
                **case_fields(case, doc["received_at"]),
                **holder,
                **({"rating": ratings[-1]} if ratings else {}),
                **({ROUTING_AT: routing_at} if routing_at is not None else {}),
                "version": version,
            },
            # Closed or archived: the Ombudsman will never need the report's content.
            "$unset": {"_early": "", **({CONTENT: ""} if case.case_state in FINAL_STATES else {})},
            "$push": {
                "_applied": {"$each": [m.meta.event_id for m in todo], "$slice": -APPLIED_KEEP},
                "timeline": {"$each": entries},
            },
        }
        if todo:
            _add_deadlines_set(update, before, case, todo[-1].meta.event_id, now, version)
        return update, outcome


def _rerouted(
    case: CaseClocks, routed: events_pb2.ComplaintRouted, at: datetime, superseded: bool
) -> list[Action]:
    """The case actions whose rules move the clocks as routing's new decision does: to the
    verification queue, a return to the queue (``declined``); from the queue (or with the
    verification clock still open) to an institution, ``verified``; from one institution to
    another, ``forwarded``. Routing's
    case starts afresh there, so a pending information request ends first
    (``info_provided``: the paused time is given back) and a resolved report is open again
    (``rejected``: a new resolution cycle, auto-close stopped, the Ombudsman clock running
    to its deadline from receipt). `superseded`: an action routing decided later set the
    holder and state already; only the clocks' part of the move applies."""
    target = routed.institution.id
    if target == VERIFICATION_QUEUE:
        name, state = "declined", "in_verification"
    elif case.institution_id == VERIFICATION_QUEUE or _open(case.clock(VERIFICATION)):
        name, state = "verified", "assigned"
    else:
        name, state = "forwarded", "assigned"
    if superseded:
        return [Action(name, at)]
    first: list[Action] = []
    if case.info_pending:
        first.append(Action("info_provided", at))
    if case.case_state == "resolved":
        first.append(Action("rejected", at))
    return [*first, Action(name, at, to_state=state, institution_id=target)]


def _open(clock: SlaClock | None) -> bool:
    return clock is not None and clock.stopped_at is None and clock.state not in (MET, STOPPED)


def _add_deadlines_set(
    update: Doc, before: CaseClocks, case: CaseClocks, cause: str, now: datetime, version: int
) -> None:
    """Queue with `update` the deadlines_set that tells routing and intake the new dates,
    when the write changes a deadline."""
    if _deadlines(before) != _deadlines(case):
        extra = outbox_update([deadlines_set_event(case, cause, now, version)])
        update["$set"].update(extra["$set"])
        update["$push"].update(extra["$push"])


def _deadlines(case: CaseClocks) -> list[tuple[str, int, str]]:
    return [(d.clock, d.due_at.seconds, d.state) for d in deadlines_pb(case)]


async def drop_unneeded_content(cases: AsyncCollection[Doc]) -> int:
    """Remove the report's title and body from reports escalated, closed or archived before
    sla dropped them itself (2026-11-24): only the Ombudsman's event needed them. A backfill
    (run in the background after start); idempotent. Returns how many reports changed."""
    result = await cases.update_many(
        {
            CONTENT: {"$exists": True},
            "$or": [{"escalated": True}, {"case_state": {"$in": [s.value for s in FINAL_STATES]}}],
        },
        {"$unset": {CONTENT: ""}},
    )
    return result.modified_count

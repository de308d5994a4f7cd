"""What other services tell routing about its cases: the sla service's deadlines, warnings,
breaches and auto-close, and the reporter's actions relayed by intake. Idempotent on the
event id. The CaseAction an applied event produces has an id derived from that event's id and
the outcome (`codec.case_action_event_id`), so the same event applied again after a restore
of routing's database, with the same outcome, publishes the same id, which consumers drop.

SLA events can arrive out of order (sla publishes them through two outboxes that nothing
orders, docs/sla.md): a ``deadlines_set`` replaces the case's deadlines, a warning or breach
marks one of them, and each applies only if its ``clocks_version`` is at least the case's
``sla_version`` (the highest one applied), checked and raised in the same write. An older
event is ignored: a newer state of the clocks already replaced what it says. Events without
a version (0: published before the field existed) apply as before, without the check.
``auto_close_due`` is a command to the case's state machine, which decides on the case's own
state (a reopened case refuses it), so it is not checked against the version.

A reporter's action that the case refuses (intake accepted it on its view, but the case
moved on meanwhile, or routing's own rules refuse it) is not just logged: intake holds the
reporter back until it hears what became of the action, so routing records the refusal in
the case (history entry, the ReporterAction's id among the applied events) together with a
``reporter_action_refused`` CaseAction in its outbox, in one compare-and-set write. The
refusal's event id is derived from the ReporterAction's, so a redelivered action refuses
once.

``privacy_raised`` applies in every state (the state machine never refuses it for the case's
state; only a malformed level is refused) and never lowers the case's privacy: a late event
with a lower level than the case has is recorded but keeps the higher level."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from lapor.v1 import common_pb2, events_pb2
from pymongo import UpdateOne

from services.common.errors import DomainError, NotFound, Unavailable
from services.common.kafka import Delivery
from services.common.metrics import EVENTS_CONSUMED
from services.common.mongo import (
    SLA_VERSION,
    Doc,
    not_applied,
    not_older_sla_event,
    once_per_event,
    raising_sla_version,
    remember_event,
)
from services.common.outbox import OutboxMessage, outbox_update
from services.common.topics import CASE_ACTIONS, REPORTER_ACTIONS, SLA_EVENTS
from services.routing.actions import MAX_ATTEMPTS, CaseActions
from services.routing.case_store import (
    FAR_FUTURE,
    CaseStore,
    closed_since,
    early_privacy_of,
    status_of,
)
from services.routing.codec import holder_fields
from services.routing.domain.case import PRIVACY_RANK, RAISED_PRIVACIES, Command, Role, apply
from services.routing.domain.directory import Directory

log = logging.getLogger(__name__)
OPEN_CLOCK_STATES = ("running", "warned")
#: The highest SlaEvent.clocks_version applied to the case (absent: none yet).
REFUSED = "reporter_action_refused"


def refusal_event_id(reporter_event_id: str) -> str:
    """Deterministic: one refusal per ReporterAction, whatever the redeliveries."""
    return f"{reporter_event_id}:refused"


def refusal_message(
    doc: Doc, refused: events_pb2.ReporterAction, reason: str, directory: Directory, now: datetime
) -> OutboxMessage:
    """The CaseAction telling intake (and anyone else) that ``refused`` was not applied to
    the case ``doc`` as stored now. Carries the action and the reason, never the reporter's
    text."""
    status = status_of(doc)
    tracking_id = doc["_id"]
    event = events_pb2.CaseAction(
        meta=common_pb2.EventMeta(
            event_id=refusal_event_id(refused.meta.event_id),
            tracking_id=tracking_id,
            producer="routing",
        ),
        action=REFUSED,
        actor_role=Role.SYSTEM.value,
        from_state=status.state.value,
        to_state=status.state.value,
        **holder_fields(status.institution_id, directory),
        handling_class=status.handling_class,
        reason=reason,
        reopen_count=status.reopen_count,
        refused_event_id=refused.meta.event_id,
        refused_action=refused.action,
    )
    event.meta.occurred_at.FromDatetime(now)
    return OutboxMessage(event.meta.event_id, CASE_ACTIONS, tracking_id, event.SerializeToString())


def refusal_update(
    doc: Doc, refused: events_pb2.ReporterAction, message: OutboxMessage, reason: str, now: datetime
) -> Doc:
    """The case's history entry, version and outbox for a refusal; the ReporterAction's id
    is remembered with it (the caller adds the condition)."""
    status = status_of(doc)
    update = outbox_update([message])
    update["$set"]["updated_at"] = now
    update["$inc"] = {"version": 1}
    update["$push"]["history"] = {
        "at": now,
        "action": REFUSED,
        "actor": Role.SYSTEM.value,
        "actor_id": "",
        "from_state": status.state.value,
        "to_state": status.state.value,
        "institution_id": status.institution_id,
        "text": "",
        "reason": f"{refused.action}: {reason}",
        "evidence": [],
        "handling_class": status.handling_class,
    }
    closed_since(update, status.state, now)  # most refusals come after the case closed
    return remember_event(update, refused.meta.event_id)


def is_older(doc: Doc, version: int) -> bool:
    """Whether the stored case already applied an SLA event newer than `version` (what
    `not_older_sla_event` refuses, decided on a read)."""
    return version > 0 and int(doc.get(SLA_VERSION) or 0) > version


def deadlines_update(deadlines: list[Doc], version: int = 0) -> Doc:
    """The case's deadlines and what follows from them; `version` (the event's
    ``clocks_version``, 0 for none) is recorded as the case's ``sla_version`` (never
    lowered). The caller adds `not_older_sla_event(version)` to the filter."""
    due = [d["due_at"] for d in deadlines if d["state"] in OPEN_CLOCK_STATES]
    update: Doc = {
        "$set": {
            "deadlines": deadlines,
            "next_due_at": min(due) if due else None,
            "due_sort": min(due) if due else FAR_FUTURE,
            "overdue": any(d["state"] == "breached" for d in deadlines),
        }
    }
    return raising_sla_version(update, version)


def mark_clock(deadlines: list[Doc], clock: str, state: str, due_at: object) -> list[Doc]:
    result = [dict(d) for d in deadlines]
    for d in result:
        if d["clock"] == clock:
            d["state"] = state
            return result
    return [*result, {"clock": clock, "due_at": due_at, "state": state}]


@dataclass
class CaseEventHandlers:
    actions: CaseActions
    store: CaseStore

    async def handle_sla(self, deliveries: list[Delivery[events_pb2.SlaEvent]]) -> None:
        """Deadlines set (one per new case, the bulk of the topic) are written together in
        one ordered bulk; any other event first flushes them, so each case's order holds."""
        pending: list[UpdateOne] = []
        for delivery in deliveries:
            event = delivery.message
            if event.WhichOneof("kind") == "deadlines_set":
                pending.append(self._deadlines_set(event))
                continue
            await self._flush(pending)
            outcome = await self._sla(event)
            EVENTS_CONSUMED.labels(topic=SLA_EVENTS, outcome=outcome).inc()
        await self._flush(pending)

    def _deadlines_set(self, event: events_pb2.SlaEvent) -> UpdateOne:
        deadlines = [
            {
                "clock": d.clock,
                "due_at": d.due_at.ToDatetime(tzinfo=UTC),
                "state": d.state or "running",
            }
            for d in event.deadlines_set.deadlines
        ]
        version = event.clocks_version
        return once_per_event(
            event.meta.tracking_id,
            event.meta.event_id,
            deadlines_update(deadlines, version),
            not_older_sla_event(version),
        )

    async def _flush(self, pending: list[UpdateOne]) -> None:
        if not pending:
            return
        result = await self.store.cases.bulk_write(pending, ordered=True)
        EVENTS_CONSUMED.labels(topic=SLA_EVENTS, outcome="applied").inc(result.modified_count)
        EVENTS_CONSUMED.labels(topic=SLA_EVENTS, outcome="duplicate").inc(
            len(pending) - result.modified_count
        )
        pending.clear()

    async def _sla(self, event: events_pb2.SlaEvent) -> str:
        tracking_id, event_id = event.meta.tracking_id, event.meta.event_id
        kind = event.WhichOneof("kind")
        if kind == "auto_close_due":
            if await self._stale_auto_close(event):
                return "ignored"
            return await self._act(tracking_id, Command("auto_closed", Role.SYSTEM), event_id)
        cases = self.store.cases
        version = event.clocks_version
        doc = await cases.find_one({"_id": tracking_id}, {"deadlines": 1, SLA_VERSION: 1})
        if doc is None or kind not in ("warning", "breached"):
            return "ignored"
        if is_older(doc, version):
            log.info(
                "sla event older than the deadlines applied: ignored",
                extra={"tracking_id": tracking_id, "kind": kind, "version": version},
            )
            return "ignored"
        deadlines = doc.get("deadlines") or []
        if kind == "warning":
            w = event.warning
            deadlines = mark_clock(deadlines, w.clock, "warned", w.due_at.ToDatetime(tzinfo=UTC))
        elif kind == "breached":
            b = event.breached
            deadlines = mark_clock(deadlines, b.clock, "breached", b.due_at.ToDatetime(tzinfo=UTC))
        # The version condition again in the write: a newer event applied since the read
        # (another replica, during a rebalance) makes this one match nothing.
        result = await cases.update_one(
            {"_id": tracking_id, **not_applied(event_id), **not_older_sla_event(version)},
            remember_event(deadlines_update(deadlines, version), event_id),
        )
        return "applied" if result.modified_count == 1 else "duplicate"

    async def _stale_auto_close(self, event: events_pb2.SlaEvent) -> bool:
        """Whether an ``auto_close_due`` was armed for an earlier resolution than the case's
        latest: the reporter rejected, the institution resolved again, and the old event
        (waiting in sla's batch outbox, or behind on the topic) arrives only now. It must
        not cut the new confirm-or-reject window short. Known stale when sla's clocks moved
        on since (a newer ``clocks_version`` applied here) or when it fell due before the
        case's latest resolution (an auto-close clock starts at the resolution)."""
        doc = await self.store.cases.find_one(
            {"_id": event.meta.tracking_id},
            {SLA_VERSION: 1, "history.action": 1, "history.at": 1},
        )
        if doc is None:
            return False  # the action path answers NOT_FOUND
        stale = is_older(doc, event.clocks_version)
        resolutions = [h["at"] for h in doc.get("history", []) if h.get("action") == "resolved"]
        if resolutions and event.auto_close_due.HasField("due_at"):
            due = event.auto_close_due.due_at.ToDatetime(tzinfo=UTC)
            latest = max(resolutions)
            latest = latest if latest.tzinfo else latest.replace(tzinfo=UTC)
            stale = stale or due < latest
        if stale:
            log.info(
                "auto-close armed for an earlier resolution: ignored",
                extra={"tracking_id": event.meta.tracking_id, "version": event.clocks_version},
            )
        return stale

    async def handle_reporter(self, deliveries: list[Delivery[events_pb2.ReporterAction]]) -> None:
        for delivery in deliveries:
            event = delivery.message
            command = Command(
                event.action,
                Role.REPORTER,
                text=event.text if event.action == "info_provided" else "",
                reason=event.text if event.action == "rejected" else "",
                rating=event.rating if event.action == "confirmed" else 0,
                privacy=event.privacy if event.action == "privacy_raised" else "",
            )
            outcome = await self._reporter(event, command)
            EVENTS_CONSUMED.labels(topic=REPORTER_ACTIONS, outcome=outcome).inc()

    async def _reporter(self, event: events_pb2.ReporterAction, command: Command) -> str:
        """Apply the reporter's action, or record and publish its refusal. A refusal is
        decided on the case as stored and written only if the case is still that version;
        if the case moved meanwhile, the action is tried again (it may apply now)."""
        tracking_id, event_id = event.meta.tracking_id, event.meta.event_id
        for _ in range(MAX_ATTEMPTS):
            try:
                await self.actions.act(None, tracking_id, command, event_id=event_id)
                return "applied"
            except Unavailable:
                raise
            except NotFound as exc:
                if command.action == "privacy_raised":  # before routing stored the case
                    return await self._keep_early_privacy(tracking_id, command, event_id)
                # no case to hold a refusal: nothing intake waits for
                return self._ignored(command, tracking_id, exc)
            except DomainError:
                pass
            doc = await self.store.get(tracking_id)
            if doc is None:
                return "ignored"
            if event_id in doc.get("_applied", []):
                return "duplicate"
            try:
                apply(status_of(doc), command)
                continue  # the case moved so that the action applies now
            except DomainError as exc:
                reason = str(exc)
            if await self._refuse(doc, event, reason):
                log.info(
                    "reporter action refused",
                    extra={"action": command.action, "tracking_id": tracking_id, "why": reason},
                )
                return "ignored"  # not applied; intake is told
        raise Unavailable(f"tracking_id: report {tracking_id} is busy; retry")

    async def _refuse(self, doc: Doc, event: events_pb2.ReporterAction, reason: str) -> bool:
        now = self.actions.clock.now()
        message = refusal_message(doc, event, reason, self.actions.directory(), now)
        query = {"_id": doc["_id"], "version": doc.get("version", 0)}
        query.update(not_applied(event.meta.event_id))
        update = refusal_update(doc, event, message, reason, now)
        result = await self.store.cases.update_one(query, update)
        if result.modified_count != 1:
            return False
        self.actions.on_stored()
        return True

    async def _act(self, tracking_id: str, command: Command, event_id: str) -> str:
        """An action the case's state refuses is recorded in the log and skipped: the event
        describes something that can no longer happen (e.g. closing a closed case)."""
        try:
            await self.actions.act(None, tracking_id, command, event_id=event_id)
        except Unavailable:
            raise
        except DomainError as exc:
            return self._ignored(command, tracking_id, exc)
        return "applied"

    async def _keep_early_privacy(self, tracking_id: str, command: Command, event_id: str) -> str:
        """A reporter raised privacy before routing stored the case (the two travel on
        different topics; routing was behind on complaints): keep the highest level asked
        for, which `apply_early_privacy` applies once the case is stored, then try once more
        in case it was stored meanwhile (either this or that sees the other's write)."""
        rank = PRIVACY_RANK.get(command.privacy, -1)
        if rank < 0:
            return self._ignored(command, tracking_id, NotFound("unknown privacy"))
        await early_privacy_of(self.store.cases).update_one(
            {"_id": tracking_id}, {"$max": {"rank": rank}}, upsert=True
        )
        try:
            await self.actions.act(None, tracking_id, command, event_id=event_id)
        except NotFound:
            log.info(
                "privacy raised before the case was stored: kept",
                extra={"tracking_id": tracking_id},
            )
            return "deferred"
        return "applied"

    async def apply_early_privacy(self, tracking_ids: list[str]) -> None:
        """After new cases are stored: raise the privacy of those whose reporter raised it
        before (see `_keep_early_privacy`), through the normal action (history, CaseAction
        event). Idempotent: privacy never lowers and the event id is fixed."""
        early = early_privacy_of(self.store.cases)
        found = await early.find({"_id": {"$in": tracking_ids}}).to_list(None)
        for doc in found:
            privacy = next((p for p, r in PRIVACY_RANK.items() if r == doc["rank"]), "")
            if privacy not in RAISED_PRIVACIES:
                continue
            command = Command("privacy_raised", Role.REPORTER, privacy=privacy)
            try:
                await self.actions.act(
                    None, doc["_id"], command, event_id=f"{doc['_id']}:privacy-before-routing"
                )
            except DomainError as exc:  # e.g. already at that level: nothing to do
                self._ignored(command, doc["_id"], exc)
            # The case exists now: a later raise finds it (one raised meanwhile keeps its row).
            await early.delete_one({"_id": doc["_id"], "rank": doc["rank"]})

    @staticmethod
    def _ignored(command: Command, tracking_id: str, exc: Exception) -> str:
        log.info(
            "event not applicable",
            extra={"action": command.action, "tracking_id": tracking_id, "why": str(exc)},
        )
        return "ignored"

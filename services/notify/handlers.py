"""Notify's use case: one notification per (cause event, template), whatever the redeliveries.
For a deadline breach the cause is the breach itself (`breach_id`), so the later rungs of its
escalation ladder, which tell officers, send the reporter nothing more.

For each batch of deliveries, one query finds which of its notifications (id
``<cause event id>:<template>``) are stored already. A new one is sent through the provider
first and only then stored, already in state "sent", with its NotificationRecorded event in
the outbox queue (``notifications_outbox``): the batch's sent notifications and their events
in one transaction, so neither is stored without the other. Nothing is written before the
send, so a crash (or a failed write) between sending and storing leaves the notification
unstored and its delivery uncommitted: the redelivery sends it again with the same
notification id, and the provider must de-duplicate it (its contract, see `providers`). If
the provider raises part-way through a batch, the notifications it did send are stored
before the error propagates; the rest are sent on redelivery.

A notification stored already (state "sent") is a duplicate and is not sent again. One that
a concurrent redelivery stored between the query and the insert is refused by the unique
``_id`` and left out with its event: a duplicate too, though both sent it (same id).

Documents in state "pending" were written by the previous version (record, send, mark sent)
and left so by a crash or a rolling upgrade; they take that path: send, then one update
marks them sent with their event in the document's own outbox (``_outbox``), which the
relay publishes as before. They are handled before the batch's new notifications.

Records are not kept for good: with a retention R (LAPOR_NOTIFY_RECORD_RETENTION_DAYS), a
TTL index lets the database delete a record R after it was created, once it is sent and its
event is no longer waiting in the document (a "pending" one, or one whose event the relay has
not published yet, stays). Its event in the queue does not depend on it. A record was
created after its cause happened, so it lives at least until R after the cause; an event
whose cause is older than R when it is consumed (a redelivery, a redrive, an operator's
outbox replay) is therefore *stale*: it sends nothing and is counted
(``lapor_events_consumed_total{outcome="stale"}``), whether its record is still there or
not, so no reporter hears of an old event twice (given clocks in step: the producers',
notify's and the database's). The message text is not stored: the provider has it, and
nothing here reads it; the records of versions before 2026-11-24, which did store it, lose
it in a backfill (`drop_message_texts`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lapor.v1 import common_pb2, events_pb2
from pymongo.asynchronous.collection import AsyncCollection

from services.common.clock import Clock
from services.common.kafka import Delivery
from services.common.metrics import EVENTS_CONSUMED
from services.common.mongo import Doc, ensure_ttl_index
from services.common.outbox import (
    PENDING,
    OutboxMessage,
    ensure_queue,
    insert_queued,
    outbox_update,
    queued_fields,
)
from services.common.topics import (
    CASE_ACTIONS,
    COMPLAINTS_ROUTED,
    ESCALATIONS,
    NOTIFICATIONS,
    SLA_EVENTS,
)
from services.notify import domain
from services.notify.metrics import SENT
from services.notify.providers import Notification, NotificationProvider


def recorded_event(
    n: Notification, channel: str, cause_event_id: str, now: datetime
) -> OutboxMessage:
    event = events_pb2.NotificationRecorded(
        meta=common_pb2.EventMeta(
            event_id=f"{n.id}:recorded", tracking_id=n.tracking_id, producer="notify"
        ),
        template=n.template,
        channel=channel,
        cause_event_id=cause_event_id,
    )
    event.meta.occurred_at.FromDatetime(now)
    return OutboxMessage(
        event.meta.event_id, NOTIFICATIONS, n.tracking_id, event.SerializeToString()
    )


def breach_id(event_id: str) -> str:
    """The id of the breach a DeadlineBreached event belongs to: its first rung's event id
    (``<tracking id>:<clock>:breach``) for every rung of the escalation ladder, whose later
    rungs add ``:<level>`` (services/sla/domain/clocks.py, Transition.event_id)."""
    head, breach, _level = event_id.rpartition(":breach")
    return head + breach if breach else event_id


#: The records the TTL index may expire: sent, and no event waiting in the document.
EXPIRING: Doc = {"state": "sent", PENDING: False}


def occurred_at(meta: common_pb2.EventMeta) -> datetime | None:
    """When the event happened (None: the producer did not say)."""
    return meta.occurred_at.ToDatetime(tzinfo=UTC) if meta.HasField("occurred_at") else None


def breach_at(event: events_pb2.SlaEvent) -> datetime | None:
    """When a breach happened, for the staleness guard: its deadline, the same on every rung
    of its escalation ladder (the later rungs map onto the first rung's notification, whose
    record was created after the deadline); the event's own time if that is earlier."""
    times = [occurred_at(event.meta)]
    if event.breached.HasField("due_at"):
        times.append(event.breached.due_at.ToDatetime(tzinfo=UTC))
    return min((t for t in times if t is not None), default=None)


def stale(cause_at: datetime | None, now: datetime, retention: timedelta | None) -> bool:
    """Whether an event whose cause happened at `cause_at` is older than the records'
    `retention` (None: records are kept, nothing is stale; so is an undated event)."""
    return retention is not None and cause_at is not None and now - cause_at > retention


@dataclass(frozen=True)
class Request:
    """One consumed event and what the reporter should hear about it (None: nothing)."""

    topic: str
    tracking_id: str
    cause_event_id: str
    message: domain.Message | None
    #: When its cause happened (None: not known), for the staleness guard.
    cause_at: datetime | None = None


@dataclass(frozen=True)
class _Wanted:
    topic: str
    notification: Notification
    cause_event_id: str


@dataclass
class NotifyHandlers:
    notifications: AsyncCollection[Doc]
    provider: NotificationProvider
    clock: Clock
    on_stored: Callable[[], None] = lambda: None
    #: How long a sent notification's record is kept, and so the age of the oldest event
    #: that is still sent (the module docstring); None: kept for good, every event is sent.
    retention: timedelta | None = None

    async def ensure_indexes(self) -> None:
        await ensure_queue(self.notifications)  # new notifications' events wait there
        await self.notifications.create_index(PENDING)  # events of the previous version's path
        await self.notifications.create_index("tracking_id")
        seconds = int(self.retention.total_seconds()) if self.retention is not None else None
        await ensure_ttl_index(self.notifications, "created_at", seconds, EXPIRING)

    async def drop_message_texts(self) -> int:
        """Remove the message text from the records that still hold it (stored by versions
        before 2026-11-24, sent or left pending: nothing reads it, the pending path sends
        the text made from the event). A backfill; idempotent. A record an older pod stores
        during a rolling upgrade, after this ran, keeps its text until the next start (or
        its expiry). Returns how many records changed."""
        result = await self.notifications.update_many(
            {"text": {"$exists": True}}, {"$unset": {"text": ""}}
        )
        return result.modified_count

    async def notify(self, requests: list[Request]) -> None:
        """Send and store the notifications of one batch (see the module docstring)."""
        now = self.clock.now()
        wanted: dict[str, _Wanted] = {}  # by notification id, in delivery order
        for r in requests:
            if r.message is None:
                EVENTS_CONSUMED.labels(topic=r.topic, outcome="ignored").inc()
                continue
            if stale(r.cause_at, now, self.retention):  # its record may have expired
                EVENTS_CONSUMED.labels(topic=r.topic, outcome="stale").inc()
                continue
            n = Notification(
                f"{r.cause_event_id}:{r.message.template}",
                r.tracking_id,
                r.message.template,
                r.message.text,
                now,
            )
            if n.id in wanted:  # the same event twice in one batch
                EVENTS_CONSUMED.labels(topic=r.topic, outcome="duplicate").inc()
                continue
            wanted[n.id] = _Wanted(r.topic, n, r.cause_event_id)
        if not wanted:
            return
        found = self.notifications.find({"_id": {"$in": list(wanted)}}, {"state": 1})
        states = {doc["_id"]: doc.get("state") async for doc in found}
        legacy: list[_Wanted] = []
        new: list[_Wanted] = []
        for w in wanted.values():
            if w.notification.id not in states:
                new.append(w)
            elif states[w.notification.id] == "pending":
                legacy.append(w)
            else:  # sent already
                EVENTS_CONSUMED.labels(topic=w.topic, outcome="duplicate").inc()
        await self._send_legacy(legacy, now)
        sent: list[_Wanted] = []
        try:
            for w in new:
                await self.provider.send(w.notification)
                sent.append(w)
        except Exception:
            if sent:  # what went out is stored; the rest is sent again on redelivery
                await self._store(sent, now)
            raise
        if sent:
            await self._store(sent, now)

    async def _store(self, sent: list[_Wanted], now: datetime) -> None:
        """Store sent notifications as sent, each with its event in the outbox queue, all in
        one transaction, in order (the relay publishes the queue in insertion order)."""
        items: list[tuple[Doc, list[OutboxMessage]]] = []
        for w in sent:
            n = w.notification
            events = [recorded_event(n, self.provider.name, w.cause_event_id, now)]
            doc = {
                "_id": n.id,
                "tracking_id": n.tracking_id,
                "template": n.template,
                "created_at": now,
                "state": "sent",
                "sent_at": now,
                "provider": self.provider.name,
                **queued_fields(events),  # the events themselves go to the queue
            }
            items.append((doc, events))
        refused = await insert_queued(self.notifications, items)
        for i, w in enumerate(sent):
            if i in refused:  # a concurrent redelivery stored it first (and sent it, same id)
                EVENTS_CONSUMED.labels(topic=w.topic, outcome="duplicate").inc()
            else:
                SENT.labels(template=w.notification.template, provider=self.provider.name).inc()
                EVENTS_CONSUMED.labels(topic=w.topic, outcome="applied").inc()
        if len(refused) < len(sent):
            self.on_stored()

    async def _send_legacy(self, legacy: list[_Wanted], now: datetime) -> None:
        """The previous version's path for its "pending" documents: send, then mark sent
        with the event appended to the document's own outbox."""
        for w in legacy:
            n = w.notification
            await self.provider.send(n)
            event = recorded_event(n, self.provider.name, w.cause_event_id, now)
            update: Any = outbox_update([event])
            update["$set"].update({"state": "sent", "sent_at": now, "provider": self.provider.name})
            update["$unset"] = {"text": ""}  # the previous version stored the message
            result = await self.notifications.update_one({"_id": n.id, "state": "pending"}, update)
            if result.modified_count:
                SENT.labels(template=n.template, provider=self.provider.name).inc()
                EVENTS_CONSUMED.labels(topic=w.topic, outcome="applied").inc()
                self.on_stored()
            else:  # another consumer marked it meanwhile
                EVENTS_CONSUMED.labels(topic=w.topic, outcome="duplicate").inc()

    async def handle_routed(self, deliveries: list[Delivery[events_pb2.ComplaintRouted]]) -> None:
        await self.notify(
            [
                Request(
                    COMPLAINTS_ROUTED,
                    d.message.meta.tracking_id,
                    d.message.meta.event_id,
                    domain.forwarded(d.message.meta.tracking_id, d.message.institution.name),
                    occurred_at(d.message.meta),
                )
                for d in deliveries
            ]
        )

    async def handle_sla(self, deliveries: list[Delivery[events_pb2.SlaEvent]]) -> None:
        requests: list[Request] = []
        for d in deliveries:
            e = d.message
            message = (
                domain.breached(e.meta.tracking_id, e.breached.clock)
                if e.HasField("breached")
                else None
            )
            # Every rung of one breach's escalation ladder is one notification for the
            # reporter (the rungs tell officers, not the reporter, something new).
            if e.HasField("breached"):
                cause, cause_at = breach_id(e.meta.event_id), breach_at(e)
            else:
                cause, cause_at = e.meta.event_id, occurred_at(e.meta)
            requests.append(Request(SLA_EVENTS, e.meta.tracking_id, cause, message, cause_at))
        await self.notify(requests)

    async def handle_escalation(
        self, deliveries: list[Delivery[events_pb2.OmbudsmanEscalation]]
    ) -> None:
        await self.notify(
            [
                Request(
                    ESCALATIONS,
                    d.message.meta.tracking_id,
                    d.message.meta.event_id,
                    domain.escalated(d.message.meta.tracking_id),
                    occurred_at(d.message.meta),
                )
                for d in deliveries
            ]
        )

    async def handle_case_actions(self, deliveries: list[Delivery[events_pb2.CaseAction]]) -> None:
        requests: list[Request] = []
        for d in deliveries:
            e = d.message
            message = domain.for_case_action(
                e.meta.tracking_id, e.action, e.institution.name, e.public_note
            )
            requests.append(
                Request(
                    CASE_ACTIONS, e.meta.tracking_id, e.meta.event_id, message, occurred_at(e.meta)
                )
            )
        await self.notify(requests)

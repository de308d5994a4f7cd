"""Notify's use case: one notification per (cause event, template), whatever the redeliveries.

The notification is recorded first (unique id), then sent through the provider, then
marked sent with its NotificationRecorded event in the same write (outbox). A crash
between recording and sending resends on redelivery; the provider gets the same id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lapor.v1 import common_pb2, events_pb2
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from services.common.clock import Clock
from services.common.kafka import Delivery
from services.common.metrics import EVENTS_CONSUMED
from services.common.mongo import Doc
from services.common.outbox import PENDING, OutboxMessage, outbox_update
from services.common.topics import NOTIFICATIONS
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


@dataclass
class NotifyHandlers:
    notifications: AsyncCollection[Doc]
    provider: NotificationProvider
    clock: Clock
    on_stored: Callable[[], None] = lambda: None

    async def ensure_indexes(self) -> None:
        await self.notifications.create_index(PENDING)
        await self.notifications.create_index("tracking_id")

    async def notify(
        self, topic: str, tracking_id: str, cause_event_id: str, message: domain.Message | None
    ) -> None:
        if message is None:
            EVENTS_CONSUMED.labels(topic=topic, outcome="ignored").inc()
            return
        now = self.clock.now()
        n = Notification(
            f"{cause_event_id}:{message.template}", tracking_id, message.template, message.text, now
        )
        try:
            await self.notifications.insert_one(
                {
                    "_id": n.id,
                    "tracking_id": tracking_id,
                    "template": n.template,
                    "text": n.text,
                    "created_at": now,
                    "state": "pending",
                    PENDING: False,
                    "_outbox": [],
                }
            )
        except DuplicateKeyError:
            existing = await self.notifications.find_one({"_id": n.id}, {"state": 1})
            if existing and existing["state"] == "sent":
                EVENTS_CONSUMED.labels(topic=topic, outcome="duplicate").inc()
                return
        await self.provider.send(n)
        update: Any = outbox_update([recorded_event(n, self.provider.name, cause_event_id, now)])
        update["$set"].update({"state": "sent", "sent_at": now, "provider": self.provider.name})
        result = await self.notifications.update_one({"_id": n.id, "state": "pending"}, update)
        if result.modified_count:
            SENT.labels(template=n.template, provider=self.provider.name).inc()
            self.on_stored()
        EVENTS_CONSUMED.labels(topic=topic, outcome="applied").inc()

    async def handle_routed(self, deliveries: list[Delivery[events_pb2.ComplaintRouted]]) -> None:
        for d in deliveries:
            e = d.message
            await self.notify(
                "routed",
                e.meta.tracking_id,
                e.meta.event_id,
                domain.forwarded(e.meta.tracking_id, e.institution.name),
            )

    async def handle_sla(self, deliveries: list[Delivery[events_pb2.SlaEvent]]) -> None:
        for d in deliveries:
            e = d.message
            message = (
                domain.breached(e.meta.tracking_id, e.breached.clock)
                if e.HasField("breached")
                else None
            )
            await self.notify("sla", e.meta.tracking_id, e.meta.event_id, message)

    async def handle_escalation(
        self, deliveries: list[Delivery[events_pb2.OmbudsmanEscalation]]
    ) -> None:
        for d in deliveries:
            e = d.message
            await self.notify(
                "escalation",
                e.meta.tracking_id,
                e.meta.event_id,
                domain.escalated(e.meta.tracking_id),
            )

    async def handle_case_actions(self, deliveries: list[Delivery[events_pb2.CaseAction]]) -> None:
        for d in deliveries:
            e = d.message
            message = domain.for_case_action(
                e.meta.tracking_id, e.action, e.institution.name, e.public_note
            )
            await self.notify("case_action", e.meta.tracking_id, e.meta.event_id, message)

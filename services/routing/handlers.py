"""Routing's use case: a received complaint becomes a routed case, once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from lapor.v1 import common_pb2, events_pb2
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from services.common.clock import Clock
from services.common.ids import new_event_id
from services.common.kafka import Delivery
from services.common.metrics import EVENTS_CONSUMED
from services.common.mongo import Doc
from services.common.outbox import PENDING, OutboxMessage, outbox_fields
from services.common.regions import RegionTable
from services.common.topics import COMPLAINTS_RECEIVED, COMPLAINTS_ROUTED
from services.routing.domain.directory import Directory
from services.routing.domain.rules import VERIFICATION_QUEUE, Decision, route_by_region

log = logging.getLogger(__name__)


def routed_event(
    received: events_pb2.ComplaintReceived, decision: Decision, timezone: str, now: datetime
) -> OutboxMessage:
    institution = decision.institution
    event = events_pb2.ComplaintRouted(
        meta=common_pb2.EventMeta(
            event_id=new_event_id(), tracking_id=received.meta.tracking_id, producer="routing"
        ),
        institution=common_pb2.Institution(
            id=institution.id if institution else VERIFICATION_QUEUE,
            name=institution.name if institution else "Antrean verifikasi nasional",
        ),
        rule=decision.rule,
        topic=decision.topic or "",
        confidence=decision.confidence,
        classification=received.classification,
        region_code=received.region_code,
        timezone=timezone,
    )
    event.meta.occurred_at.FromDatetime(now)
    return OutboxMessage(
        event.meta.event_id, COMPLAINTS_ROUTED, received.meta.tracking_id, event.SerializeToString()
    )


@dataclass
class RoutingHandlers:
    cases: AsyncCollection[Doc]
    directory: Directory
    regions: RegionTable
    clock: Clock
    on_stored: Callable[[], None] = lambda: None

    async def ensure_indexes(self) -> None:
        await self.cases.create_index(PENDING)
        await self.cases.create_index([("institution_id", 1), ("routed_at", -1)])

    def decide(self, received: events_pb2.ComplaintReceived) -> Decision:
        return route_by_region(received.region_code, self.directory)

    async def handle_received(
        self, deliveries: list[Delivery[events_pb2.ComplaintReceived]]
    ) -> None:
        """Store one case per complaint with its ComplaintRouted event. A redelivered
        complaint hits the unique _id and is skipped: routed once, published once."""
        now = self.clock.now()
        docs = []
        for delivery in deliveries:
            received = delivery.message
            decision = self.decide(received)
            region = self.regions.get(received.region_code)
            timezone = region.timezone if region else "Asia/Jakarta"
            docs.append(self._case(received, decision, timezone, now))
        duplicates = 0
        try:
            await self.cases.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            other = [e for e in errors if e.get("code") != 11000]
            if other:
                raise
            duplicates = len(errors)
        EVENTS_CONSUMED.labels(topic=COMPLAINTS_RECEIVED, outcome="applied").inc(
            len(docs) - duplicates
        )
        EVENTS_CONSUMED.labels(topic=COMPLAINTS_RECEIVED, outcome="duplicate").inc(duplicates)
        self.on_stored()

    def _case(
        self,
        received: events_pb2.ComplaintReceived,
        decision: Decision,
        timezone: str,
        now: datetime,
    ) -> Doc:
        institution = decision.institution
        return {
            "_id": received.meta.tracking_id,
            "received_event_id": received.meta.event_id,
            "received_at": received.meta.occurred_at.ToDatetime(tzinfo=UTC),
            "privacy": common_pb2.Privacy.Name(received.privacy),
            "classification": common_pb2.Classification.Name(received.classification),
            "title": received.title,
            "body": received.body,
            "region_code": received.region_code,
            "timezone": timezone,
            "institution_id": institution.id if institution else VERIFICATION_QUEUE,
            "decision": {
                "rule": decision.rule,
                "topic": decision.topic,
                "confidence": decision.confidence,
            },
            "routed_at": now,
            "history": [
                {"at": now, "action": "routed", "actor": "routing", "detail": decision.rule}
            ],
            "_applied": [received.meta.event_id],
            **outbox_fields([routed_event(received, decision, timezone, now)]),
        }

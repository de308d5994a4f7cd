"""Keeps each complaint's tracking view current from the other services' events.

Every update is applied at most once per event id (the id is remembered in the document
in the same atomic write), so redelivered events change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from lapor.v1 import common_pb2, events_pb2
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from services.common.kafka import Delivery
from services.common.metrics import EVENTS_CONSUMED
from services.common.mongo import Doc, once_per_event
from services.common.pbtime import occurred_at
from services.common.status import Colour
from services.intake.domain import Status


def _history(at: datetime, action: str, actor: str, detail: str) -> Doc:
    return {"at": at, "action": action, "actor": actor, "detail": detail}


# Fields an event sets only while the case has no state from routing's CaseActions yet:
# ComplaintRouted and CaseAction travel on different topics, so a late ComplaintRouted must
# not put a case that was accepted, forwarded or resolved meanwhile back to "routed".
UNLESS_CASE_STATE = "$setUnlessCaseState"


def holder(institution: common_pb2.Institution, ancestors: Iterable[str]) -> Doc:
    """The holding institution as the tracking view keeps it: with the ids above it, as
    routing's directory had them, for deciding which officers see the report's evidence."""
    return {"id": institution.id, "name": institution.name, "ancestors": list(ancestors)}


def routed_update(e: events_pb2.ComplaintRouted) -> Doc:
    at = occurred_at(e.meta.occurred_at)
    return {
        UNLESS_CASE_STATE: {
            "status": Status.ROUTED.value,
            "colour": Colour.RED.value,
            "institution": holder(e.institution, e.holder_ancestors),
        },
        "$set": {**({"topic": e.topic} if e.topic else {})},  # a public-listing filter
        "$push": {
            "history": _history(at, "routed", "routing", f"to {e.institution.name} ({e.rule})")
        },
    }


def sla_update(e: events_pb2.SlaEvent) -> Doc:
    at = occurred_at(e.meta.occurred_at)
    kind = e.WhichOneof("kind")
    if kind == "deadlines_set":
        deadlines = [
            {
                "clock": d.clock,
                "due_at": d.due_at.ToDatetime(tzinfo=UTC),
                "state": d.state or "running",
            }
            for d in e.deadlines_set.deadlines
        ]
        detail = ", ".join(f"{d['clock']} by {d['due_at']:%Y-%m-%d %H:%M} UTC" for d in deadlines)
        return {
            "$set": {"deadlines": deadlines},
            "$push": {"history": _history(at, "deadlines_set", "sla", detail)},
        }
    if kind == "warning":
        return {"$push": {"history": _history(at, "deadline_warning", "sla", e.warning.clock)}}
    if kind == "breached":
        return {
            "$set": {"overdue": True},
            "$push": {"history": _history(at, "deadline_breached", "sla", e.breached.clock)},
        }
    return {}


def notification_update(e: events_pb2.NotificationRecorded) -> Doc:
    at = occurred_at(e.meta.occurred_at)
    return {
        "$push": {
            "notifications": {"template": e.template, "channel": e.channel, "at": at},
            "history": _history(at, "notified", "notify", e.template),
        }
    }


def escalation_update(e: events_pb2.OmbudsmanEscalation) -> Doc:
    at = occurred_at(e.meta.occurred_at)
    return {
        "$set": {"status": Status.ESCALATED.value, "escalated": True},
        "$push": {"history": _history(at, "escalated", "sla", "handed to Ombudsman RI")},
    }


class TrackingProjection:
    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._collection = collection

    async def apply(self, topic: str, deliveries: list[Delivery[Any]], build: Any) -> None:
        ops = []
        guarded = []
        for d in deliveries:
            update = build(d.message)
            if not update:
                EVENTS_CONSUMED.labels(topic=topic, outcome="ignored").inc()
                continue
            event_id = d.message.meta.event_id
            tracking_id = d.message.meta.tracking_id
            unless_state = update.pop(UNLESS_CASE_STATE, None)
            if not update.get("$set"):
                update.pop("$set", None)
            ops.append(once_per_event(tracking_id, event_id, update))
            if unless_state:  # idempotent by itself: the same values, only without a state
                guarded.append(
                    UpdateOne(
                        {"_id": tracking_id, "state": {"$exists": False}}, {"$set": unless_state}
                    )
                )
        if not ops:
            return
        result = await self._collection.bulk_write(ops, ordered=True)
        if guarded:
            await self._collection.bulk_write(guarded, ordered=True)
        EVENTS_CONSUMED.labels(topic=topic, outcome="applied").inc(result.modified_count)
        EVENTS_CONSUMED.labels(topic=topic, outcome="duplicate").inc(
            len(ops) - result.modified_count
        )

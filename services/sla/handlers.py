"""SLA use cases: start the clocks of a routed report (once), and sweep what is due.

The sweep reads only documents whose next deadline has come (an index on next_due_at),
so its cost follows what is due, not how many reports are open. Each document moves from
one version to the next with a compare-and-set, the events in the same write (outbox):
two replicas sweeping the same report cannot both emit a transition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC

from lapor.v1 import common_pb2, events_pb2
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from services.common.clock import Clock, sleep_until_or_stop
from services.common.kafka import Delivery
from services.common.metrics import EVENTS_CONSUMED
from services.common.mongo import Doc
from services.common.outbox import PENDING, outbox_fields, outbox_update
from services.common.topics import COMPLAINTS_ROUTED
from services.sla.codec import case_from_doc, clock_doc, deadlines_set_event, transition_event
from services.sla.domain.calendar import WorkingCalendar
from services.sla.domain.clocks import due_transitions, start_clocks
from services.sla.domain.policy import Policy
from services.sla.metrics import BREACHES, DETECTION_LAG, ESCALATIONS, SWEEP_DURATION, WARNINGS

log = logging.getLogger(__name__)


@dataclass
class SlaHandlers:
    cases: AsyncCollection[Doc]
    policy: Policy
    calendar: WorkingCalendar
    clock: Clock
    on_stored: Callable[[], None] = lambda: None
    sweep_batch: int = 1000

    async def ensure_indexes(self) -> None:
        await self.cases.create_index(PENDING)
        await self.cases.create_index("next_due_at")
        await self.cases.create_index([("institution_id", 1), ("next_due_at", 1)])

    async def handle_routed(self, deliveries: list[Delivery[events_pb2.ComplaintRouted]]) -> None:
        now = self.clock.now()
        docs = []
        for delivery in deliveries:
            routed = delivery.message
            received_at = routed.meta.occurred_at.ToDatetime(tzinfo=UTC)
            classification = common_pb2.Classification.Name(routed.classification)
            case = start_clocks(
                routed.meta.tracking_id,
                routed.institution.id,
                routed.timezone or "Asia/Jakarta",
                classification.removeprefix("CLASSIFICATION_").lower(),
                received_at,
                received_at,
                self.policy,
                self.calendar,
            )
            docs.append(
                {
                    "_id": case.tracking_id,
                    "institution_id": case.institution_id,
                    "institution_name": routed.institution.name,
                    "region_code": routed.region_code,
                    "classification": classification,
                    "topic": routed.topic,
                    "timezone": case.timezone,
                    "received_at": received_at,
                    "clocks": [clock_doc(c) for c in case.clocks],
                    "next_due_at": case.next_due_at,
                    "version": 1,
                    "timeline": [
                        {
                            "at": received_at,
                            "action": "routed",
                            "actor": "routing",
                            "detail": routed.institution.name,
                        }
                    ],
                    "_applied": [routed.meta.event_id],
                    **outbox_fields([deadlines_set_event(case, routed.meta.event_id, now)]),
                }
            )
        duplicates = 0
        try:
            await self.cases.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):
                raise
            duplicates = len(errors)
        EVENTS_CONSUMED.labels(topic=COMPLAINTS_ROUTED, outcome="applied").inc(
            len(docs) - duplicates
        )
        EVENTS_CONSUMED.labels(topic=COMPLAINTS_ROUTED, outcome="duplicate").inc(duplicates)
        self.on_stored()

    async def sweep_once(self) -> int:
        """Apply every due transition; return how many reports moved."""
        started = time.perf_counter()
        now = self.clock.now()
        moved = 0
        while True:
            due = (
                await self.cases.find({"next_due_at": {"$lte": now}})
                .sort("next_due_at", 1)
                .to_list(self.sweep_batch)
            )
            if not due:
                break
            ops = []
            for doc in due:
                try:
                    case = case_from_doc(doc)
                    updated, transitions = due_transitions(case, now, self.policy.ladder)
                    events = [transition_event(updated, t, doc, now) for t in transitions]
                    for t in transitions:
                        DETECTION_LAG.observe(max((now - t.due_at).total_seconds(), 0.0))
                        {"warning": WARNINGS, "breach": BREACHES, "escalation": ESCALATIONS}[
                            t.kind
                        ].labels(clock=t.clock).inc()
                    update: Doc = {
                        "$set": {
                            "clocks": [clock_doc(c) for c in updated.clocks],
                            "next_due_at": updated.next_due_at,
                            "version": doc["version"] + 1,
                        }
                    }
                    if events:
                        update = {
                            "$set": {**update["$set"], **outbox_update(events)["$set"]},
                            "$push": outbox_update(events)["$push"],
                        }
                    ops.append(UpdateOne({"_id": doc["_id"], "version": doc["version"]}, update))
                except Exception:  # one bad record never stops a sweep
                    log.exception(
                        "sweep failed for one report", extra={"tracking_id": doc.get("_id")}
                    )
            if ops:
                result = await self.cases.bulk_write(ops, ordered=False)
                moved += result.modified_count
                self.on_stored()
            if len(due) < self.sweep_batch:
                break
        SWEEP_DURATION.observe(time.perf_counter() - started)
        return moved

    async def run_sweeps(self, stop: asyncio.Event, interval: float = 0.5) -> None:
        while not stop.is_set():
            try:
                await self.sweep_once()
            except Exception:
                log.exception("sweep failed; retrying")
            if await sleep_until_or_stop(stop, interval):
                return

"""The sweep: apply every due transition, each exactly once.

It reads only documents whose next deadline has come (an index on next_due_at), so its cost
follows what is due, not how many reports are open. Each document moves from one version to
the next with a compare-and-set, the events in the same write (outbox): two replicas sweeping
the same report cannot both emit a transition.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from services.common.clock import Clock, sleep_until_or_stop
from services.common.mongo import Doc
from services.common.outbox import outbox_update
from services.sla.codec import case_fields, case_from_doc, transition_entry, transition_event
from services.sla.domain.clocks import Transition, due_transitions
from services.sla.domain.policy import Policy
from services.sla.metrics import (
    AUTO_CLOSE_DUE,
    BREACHES,
    DETECTION_LAG,
    ESCALATIONS,
    SWEEP_DURATION,
    SWEEP_REPORTS,
    WARNINGS,
)

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


def sweep_update(
    doc: Doc, policy: Policy, now: datetime, token: str = ""
) -> tuple[UpdateOne | None, list[Transition]]:
    """The compare-and-set update for one due document, and the transitions it makes.

    `token` marks the write, so a sweeper can tell afterwards which of its writes won."""
    case = case_from_doc(doc)
    updated, transitions = due_transitions(case, now, policy.ladder, policy.ladder_interval)
    if any(t.kind == "escalation" for t in transitions):
        updated = replace(updated, escalated=True)
    entries = [transition_entry(t) for t in transitions]
    view = {**doc, "timeline": [*doc.get("timeline", []), *entries]}
    events = [transition_event(updated, t, view, now) for t in transitions]
    update: Doc = {
        "$set": {
            **case_fields(updated, doc["received_at"]),
            "version": doc["version"] + 1,
            **({"swept_by": token} if token else {}),
        }
    }
    if events:
        extra = outbox_update(events)
        update["$set"].update(extra["$set"])
        update["$push"] = {**extra["$push"], "timeline": {"$each": entries}}
    return UpdateOne({"_id": doc["_id"], "version": doc["version"]}, update), transitions


@dataclass
class Sweeper:
    cases: AsyncCollection[Doc]
    policy: Policy
    clock: Clock
    on_stored: Callable[[], None] = lambda: None
    batch: int = 1000
    #: Documents per write: one write must stay well under the driver's heartbeat timeout
    #: (3 s), or a slow database gets the connection pool reset under it.
    write_chunk: int = 100

    async def sweep_once(self) -> int:
        """Apply every due transition; return how many reports moved."""
        started = time.perf_counter()
        now = self.clock.now()
        moved = 0
        while True:
            due = (
                await self.cases.find(
                    {"next_due_at": {"$lte": now}}, {"_published": 0, "_applied": 0, "_outbox": 0}
                )
                .sort("next_due_at", 1)
                .to_list(self.batch)
            )
            if not due:
                break
            token = uuid.uuid4().hex
            planned: list[tuple[Any, UpdateOne, list[Transition]]] = []
            for doc in due:
                try:
                    op, transitions = sweep_update(doc, self.policy, now, token)
                    if op is not None:
                        planned.append((doc["_id"], op, transitions))
                except Exception:  # one bad record never stops a sweep
                    log.exception(
                        "sweep failed for one report", extra={"tracking_id": doc.get("_id")}
                    )
            for i in range(0, len(planned), self.write_chunk):
                chunk = planned[i : i + self.write_chunk]
                result = await self.cases.bulk_write([op for _, op, _ in chunk], ordered=False)
                moved += result.modified_count
                won = {doc_id for doc_id, _, _ in chunk}
                if result.modified_count < len(chunk):  # another replica won some races
                    won = {
                        d["_id"]
                        async for d in self.cases.find(
                            {"_id": {"$in": list(won)}, "swept_by": token}, {"_id": 1}
                        )
                    }
                for doc_id, _, transitions in chunk:
                    if doc_id in won:
                        count_transitions(transitions, now)
                self.on_stored()
            if len(due) < self.batch:
                break
        SWEEP_DURATION.observe(time.perf_counter() - started)
        SWEEP_REPORTS.inc(moved)
        return moved

    async def run(self, stop: asyncio.Event, interval: float = 0.5) -> None:
        while not stop.is_set():
            try:
                await self.sweep_once()
            except Exception:
                log.exception("sweep failed; retrying")
            if await sleep_until_or_stop(stop, interval):
                return

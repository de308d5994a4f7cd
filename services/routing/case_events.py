"""What other services tell routing about its cases: the sla service's deadlines, warnings,
breaches and auto-close, and the reporter's actions relayed by intake. Idempotent on the
event id."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC

from lapor.v1 import events_pb2
from pymongo import UpdateOne

from services.common.errors import DomainError, Unavailable
from services.common.kafka import Delivery
from services.common.metrics import EVENTS_CONSUMED
from services.common.mongo import Doc, apply_once, once_per_event
from services.common.topics import REPORTER_ACTIONS, SLA_EVENTS
from services.routing.actions import CaseActions
from services.routing.case_store import FAR_FUTURE, CaseStore
from services.routing.domain.case import Command, Role

log = logging.getLogger(__name__)
OPEN_CLOCK_STATES = ("running", "warned")


def deadlines_update(deadlines: list[Doc]) -> Doc:
    due = [d["due_at"] for d in deadlines if d["state"] in OPEN_CLOCK_STATES]
    return {
        "$set": {
            "deadlines": deadlines,
            "next_due_at": min(due) if due else None,
            "due_sort": min(due) if due else FAR_FUTURE,
            "overdue": any(d["state"] == "breached" for d in deadlines),
        }
    }


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
        return once_per_event(
            event.meta.tracking_id, event.meta.event_id, deadlines_update(deadlines)
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
            return await self._act(tracking_id, Command("auto_closed", Role.SYSTEM), event_id)
        cases = self.store.cases
        doc = await cases.find_one({"_id": tracking_id}, {"deadlines": 1})
        if doc is None or kind not in ("warning", "breached"):
            return "ignored"
        deadlines = doc.get("deadlines") or []
        if kind == "warning":
            w = event.warning
            deadlines = mark_clock(deadlines, w.clock, "warned", w.due_at.ToDatetime(tzinfo=UTC))
        elif kind == "breached":
            b = event.breached
            deadlines = mark_clock(deadlines, b.clock, "breached", b.due_at.ToDatetime(tzinfo=UTC))
        applied = await apply_once(cases, tracking_id, event_id, deadlines_update(deadlines))
        return "applied" if applied else "duplicate"

    async def handle_reporter(self, deliveries: list[Delivery[events_pb2.ReporterAction]]) -> None:
        for delivery in deliveries:
            event = delivery.message
            extra: Doc | None = None
            if event.action == "privacy_raised" and event.privacy in ("confidential", "anonymous"):
                extra = {"privacy": f"PRIVACY_{event.privacy.upper()}"}
            command = Command(
                event.action,
                Role.REPORTER,
                text=event.text if event.action == "info_provided" else "",
                reason=event.text if event.action == "rejected" else "",
            )
            outcome = await self._act(event.meta.tracking_id, command, event.meta.event_id, extra)
            EVENTS_CONSUMED.labels(topic=REPORTER_ACTIONS, outcome=outcome).inc()

    async def _act(
        self, tracking_id: str, command: Command, event_id: str, extra: Doc | None = None
    ) -> str:
        """An action the case's state refuses is recorded in the log and skipped: the event
        describes something that can no longer happen (e.g. closing a closed case)."""
        try:
            await self.actions.act(None, tracking_id, command, event_id=event_id, extra=extra)
        except Unavailable:
            raise
        except DomainError as exc:
            log.info(
                "event not applicable",
                extra={"action": command.action, "tracking_id": tracking_id, "why": str(exc)},
            )
            return "ignored"
        return "applied"

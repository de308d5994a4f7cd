"""Routing's use case: a received complaint is classified, routed by the rules and stored as a
case with its ComplaintRouted event (in the outbox queue, same transaction), once. A new case
lists the earlier near-duplicates it resembles (``similar``); the earlier ones find it by that
field when read (no rewrite)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from lapor.v1 import common_pb2, events_pb2

from services.common.clock import Clock
from services.common.kafka import Delivery
from services.common.metrics import EVENTS_CONSUMED
from services.common.mongo import Doc
from services.common.outbox import OutboxMessage, insert_queued, queued_fields
from services.common.regions import RegionTable
from services.common.topics import COMPLAINTS_RECEIVED
from services.routing.case_store import FAR_FUTURE, CaseStore
from services.routing.codec import routed_event
from services.routing.domain import similarity
from services.routing.domain.case import initial_state
from services.routing.domain.classifier import TopicClassifier
from services.routing.domain.directory import Directory
from services.routing.domain.rules import Decision, RuleSet
from services.routing.metrics import ROUTING_DECISIONS

log = logging.getLogger(__name__)


@dataclass
class Routed:
    doc: Doc
    fingerprint: list[int]
    events: list[OutboxMessage]


@dataclass
class RoutingHandlers:
    store: CaseStore
    directory: Callable[[], Directory]
    rules: Callable[[], RuleSet]
    classifier: TopicClassifier
    regions: RegionTable
    clock: Clock
    on_stored: Callable[[], None] = lambda: None
    # Called with the tracking ids of the cases a batch stored (the early privacy raises).
    after_stored: Callable[[list[str]], Awaitable[None]] | None = None

    async def ensure_indexes(self) -> None:
        await self.store.ensure_indexes()

    def decide(self, received: events_pb2.ComplaintReceived) -> Decision:
        classification = self.classifier.classify(received.title, received.body)
        region = self.regions.get(received.region_code)
        return self.rules().route(
            region, classification, self.directory(), hint=received.named_institution_id
        )

    async def handle_received(
        self, deliveries: list[Delivery[events_pb2.ComplaintReceived]]
    ) -> None:
        """Store one case per complaint with its ComplaintRouted event. A redelivered
        complaint hits the unique _id and is skipped: routed once, published once. Routed
        again after a restore of routing's database, it publishes the same event id if the
        decision names the same institution (`codec.routed_event_id`), so consumers drop it;
        a decision for another institution is a new event they apply."""
        now = self.clock.now()
        routed: list[Routed] = []
        for delivery in deliveries:
            received = delivery.message
            decision = self.decide(received)
            ROUTING_DECISIONS.labels(
                outcome="verification" if decision.to_verification else "routed"
            ).inc()
            region = self.regions.get(received.region_code)
            timezone = region.timezone if region else "Asia/Jakarta"
            words = self.classifier.normaliser.words(f"{received.title} {received.body}")
            fingerprint = similarity.shingles(words)
            events = [routed_event(received, decision, timezone, now, self.directory())]
            doc = self._case(received, decision, timezone, now, events)
            doc["fingerprint"] = fingerprint
            routed.append(Routed(doc, fingerprint, events))
        await self._link_similar(routed)
        # Each case with its ComplaintRouted in the outbox queue, in one transaction; a
        # redelivered complaint's case exists (unique _id) and is left out with its event.
        refused = await insert_queued(self.store.cases, [(r.doc, r.events) for r in routed])
        duplicates = len(refused)
        EVENTS_CONSUMED.labels(topic=COMPLAINTS_RECEIVED, outcome="applied").inc(
            len(routed) - duplicates
        )
        EVENTS_CONSUMED.labels(topic=COMPLAINTS_RECEIVED, outcome="duplicate").inc(duplicates)
        self.on_stored()
        if self.after_stored is not None:  # redelivered ones too: a crash may have come between
            await self.after_stored([r.doc["_id"] for r in routed])

    async def _link_similar(self, routed: list[Routed]) -> None:
        """Link each new case to earlier cases of its topic and region within the window
        (one query per topic and region of the batch)."""
        groups: dict[tuple[str, str], list[Routed]] = {}
        for item in routed:
            if item.doc["topic"] is not None and item.fingerprint:
                groups.setdefault((item.doc["region_code"], item.doc["topic"]), []).append(item)
        for (region_code, topic), items in groups.items():
            since = min(i.doc["received_at"] for i in items) - similarity.WINDOW
            stored = (
                await self.store.cases.find(
                    {"region_code": region_code, "topic": topic, "received_at": {"$gte": since}},
                    {"fingerprint": 1, "received_at": 1},
                )
                .sort("received_at", -1)
                .to_list(similarity.MAX_CANDIDATES)
            )
            earlier = [(c["_id"], c["received_at"], c.get("fingerprint", [])) for c in stored]
            for n, item in enumerate(items):
                doc = item.doc

                def near(at: datetime, received: datetime = doc["received_at"]) -> bool:
                    # Received within the window of each other: the same rule for stored
                    # cases and for cases of the same batch (a backlog or a replay).
                    return abs(at - received) <= similarity.WINDOW

                candidates = [
                    (cid, fp) for cid, at, fp in earlier if cid != doc["_id"] and near(at)
                ]
                candidates += [
                    (i.doc["_id"], i.fingerprint) for i in items[:n] if near(i.doc["received_at"])
                ]
                hits = similarity.similar(item.fingerprint, candidates)
                doc["similar"] = [cid for cid, _ in hits]

    def _case(
        self,
        received: events_pb2.ComplaintReceived,
        decision: Decision,
        timezone: str,
        now: datetime,
        events: list[OutboxMessage],
    ) -> Doc:
        state = initial_state(decision.institution_id)
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
            "institution_id": decision.institution_id,
            "state": state.value,
            "version": 1,
            "responded": False,
            "reopen_count": 0,
            "handling_class": "",
            "colour": "red",
            "overdue": False,
            "deadlines": [],
            "next_due_at": None,
            "due_sort": FAR_FUTURE,
            "topic": decision.topic,
            "decision": {
                "rule": decision.rule,
                "rules_version": decision.rules_version,
                "topic": decision.topic,
                "confidence": decision.confidence,
                "scores": [list(s) for s in decision.scores],
                "matched_terms": list(decision.matched_terms),
                "hint": decision.hint,
            },
            "similar": [],
            "routed_at": now,
            "history": [
                {
                    "at": now,
                    "action": "routed",
                    "actor": "routing",
                    "actor_id": "",
                    "from_state": "",
                    "to_state": state.value,
                    "institution_id": decision.institution_id,
                    "text": "",
                    "reason": decision.rule,
                    "evidence": [],
                    "handling_class": "",
                    "detail": decision.rule,
                }
            ],
            "_applied": [received.meta.event_id],
            **queued_fields(events),
        }

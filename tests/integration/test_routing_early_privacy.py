"""A reporter may raise privacy before routing has stored the case (the raise travels on
lapor.reporter.actions, the complaint on lapor.complaints.received; routing may be behind on
the second). The raise is kept and applied once the case is stored, in either order of the
race, against the real database process (docs/officers-api.md)."""

from __future__ import annotations

import uuid
from typing import Any

from lapor.v1 import common_pb2, events_pb2
from prometheus_client import REGISTRY

from services.common.clock import ManualClock
from services.common.kafka import Delivery
from services.common.regions import default_regions
from services.routing.actions import CaseActions
from services.routing.case_events import CaseEventHandlers
from services.routing.case_store import CaseStore, early_privacy_of
from services.routing.domain.classifier import TopicClassifier
from services.routing.domain.directory import Directory
from services.routing.domain.rules import DEFAULT_RULES_FILE, RuleSet
from services.routing.handlers import RoutingHandlers
from tests.integration.test_routing_received import received as routing_received
from tests.integration.test_sla_store import T0


def received(tid: str) -> Delivery[events_pb2.ComplaintReceived]:
    """A public report's complaint, as intake publishes it."""
    delivery = routing_received(tid)
    delivery.message.privacy = common_pb2.PRIVACY_PUBLIC
    return delivery


def raised(tid: str, privacy: str, n: int = 1) -> Delivery[events_pb2.ReporterAction]:
    message = events_pb2.ReporterAction(
        meta=common_pb2.EventMeta(event_id=f"{tid}:privacy:{n}", tracking_id=tid),
        action="privacy_raised",
        privacy=privacy,
    )
    return Delivery(message, tid, 0, 0)


def wired(db: Any, clock: ManualClock | None = None) -> tuple[RoutingHandlers, CaseEventHandlers]:
    regions = default_regions()
    directory = Directory.seed(regions)
    rules = RuleSet.load(DEFAULT_RULES_FILE, directory)
    store = CaseStore(db["cases"])
    clock = clock or ManualClock(T0)
    handlers = RoutingHandlers(
        store, lambda: directory, lambda: rules, TopicClassifier.default(), regions, clock
    )
    events = CaseEventHandlers(CaseActions(store, lambda: directory, clock), store)
    handlers.after_stored = events.apply_early_privacy  # as bootstrap wires them
    return handlers, events


def deferred() -> float:
    labels = {"topic": "lapor.reporter.actions", "outcome": "deferred"}
    return REGISTRY.get_sample_value("lapor_events_consumed_total", labels) or 0.0


async def test_a_raise_before_the_case_is_applied_when_it_is_stored(db: Any) -> None:
    handlers, events = wired(db)
    await handlers.ensure_indexes()
    tid = uuid.uuid4().hex[:10]
    before = deferred()
    await events.handle_reporter([raised(tid, "confidential", 1)])
    await events.handle_reporter([raised(tid, "anonymous", 2)])
    await events.handle_reporter([raised(tid, "confidential", 3)])  # never lowers
    assert deferred() - before == 3
    assert await db["cases"].find_one({"_id": tid}) is None
    assert (await early_privacy_of(db["cases"]).find_one({"_id": tid}))["rank"] == 2

    await handlers.handle_received([received(tid)])  # carries PRIVACY_PUBLIC
    case = await db["cases"].find_one({"_id": tid})
    assert case["privacy"] == "PRIVACY_ANONYMOUS"
    assert [h["action"] for h in case["history"]][-1] == "privacy_raised"
    assert await early_privacy_of(db["cases"]).count_documents({"_id": tid}) == 0
    # A redelivered complaint changes nothing more.
    await handlers.handle_received([received(tid)])
    again = await db["cases"].find_one({"_id": tid})
    assert again["version"] == case["version"]


async def test_a_raise_after_the_case_goes_the_usual_way(db: Any) -> None:
    handlers, events = wired(db)
    await handlers.ensure_indexes()
    tid = uuid.uuid4().hex[:10]
    await handlers.handle_received([received(tid)])
    before = deferred()
    await events.handle_reporter([raised(tid, "confidential")])
    assert deferred() == before
    case = await db["cases"].find_one({"_id": tid})
    assert case["privacy"] == "PRIVACY_CONFIDENTIAL"
    assert await early_privacy_of(db["cases"]).count_documents({"_id": tid}) == 0

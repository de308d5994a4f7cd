"""Routing's received-complaint handler against the real database process: each new case is
stored with its ComplaintRouted in the outbox queue, in one transaction, once."""

from __future__ import annotations

import uuid
from datetime import UTC, timedelta
from typing import Any

import pytest
from lapor.v1 import common_pb2, events_pb2
from pymongo.errors import OperationFailure

from services.common.clock import ManualClock
from services.common.kafka import Delivery
from services.common.outbox import QUEUE_SUFFIX, OutboxRelay, queue_for
from services.common.regions import default_regions
from services.common.topics import COMPLAINTS_ROUTED
from services.routing.case_store import CaseStore
from services.routing.domain.classifier import TopicClassifier
from services.routing.domain.directory import Directory
from services.routing.domain.rules import DEFAULT_RULES_FILE, RuleSet
from services.routing.handlers import RoutingHandlers
from tests.integration.test_sla_store import T0
from tests.support import RecordingPublisher


class QueueRefusing:
    """A collection as the code under test sees it (every call goes to the real one), except
    that the outbox queue reached through its ``database`` refuses inserts: a failure of the
    second write of a transaction, after the first one (the documents) was made."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.database = _RefusingQueueDatabase(real.database)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _RefusingQueueDatabase:
    def __init__(self, real: Any) -> None:
        self._real = real
        self.refused = 0

    def __getitem__(self, name: str) -> Any:
        collection = self._real[name]
        return _RefusingQueue(collection, self) if name.endswith(QUEUE_SUFFIX) else collection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _RefusingQueue:
    def __init__(self, real: Any, database: _RefusingQueueDatabase) -> None:
        self._real = real
        self._database = database

    async def insert_many(self, *_args: Any, **_kwargs: Any) -> Any:
        self._database.refused += 1
        raise OperationFailure("injected: the queue refuses the events", 2)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def received(tid: str) -> Delivery[events_pb2.ComplaintReceived]:
    message = events_pb2.ComplaintReceived(
        meta=common_pb2.EventMeta(event_id=f"{tid}:received", tracking_id=tid),
        title="Jalan berlubang",
        body="Jalan di depan pasar rusak parah dan berlubang, mohon segera diperbaiki",
        region_code="51.08",
        classification=common_pb2.CLASSIFICATION_COMPLAINT,
    )
    message.meta.occurred_at.FromDatetime(T0)
    return Delivery(message, tid, 0, 0)


def routing(cases: Any) -> RoutingHandlers:
    regions = default_regions()
    directory = Directory.seed(regions)
    rules = RuleSet.load(DEFAULT_RULES_FILE, directory)
    return RoutingHandlers(
        CaseStore(cases),
        lambda: directory,
        lambda: rules,
        TopicClassifier.default(),
        regions,
        ManualClock(T0 + timedelta(minutes=15)),  # routing runs behind intake
    )


async def test_new_cases_queue_their_routed_event_once_also_when_redelivered(db: Any) -> None:
    handlers = routing(db["cases"])
    store = handlers.store
    await handlers.ensure_indexes()
    first = [uuid.uuid4().hex[:10] for _ in range(3)]
    await handlers.handle_received([received(t) for t in first])
    # A redelivered batch (the consumer crashed before committing) with one new complaint.
    late = uuid.uuid4().hex[:10]
    await handlers.handle_received([received(t) for t in [*first, late]])

    cases = await db["cases"].find({}).to_list(None)
    assert sorted(c["_id"] for c in cases) == sorted([*first, late])
    assert all(not c["_outbox_pending"] and c["_outbox"] == [] for c in cases)
    queued = await queue_for(db["cases"]).find({}).to_list(None)
    assert sorted(e["key"] for e in queued) == sorted([*first, late])  # one each
    for entry in queued:
        event = events_pb2.ComplaintRouted.FromString(entry["value"])
        assert entry["topic"] == COMPLAINTS_ROUTED and event.meta.tracking_id == entry["key"]
        # decided now; received when intake acknowledged it (sla counts 60 days from that)
        assert event.meta.occurred_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=15)
        assert event.received_at.ToDatetime(tzinfo=UTC) == T0
    kept = {c["_id"]: [e["id"] for e in c["_published"]] for c in cases}
    assert kept == {e["key"]: [e["id"]] for e in queued}  # the case keeps it for replay

    recorder = RecordingPublisher()
    relay = OutboxRelay([store.cases], recorder, queues=[queue_for(store.cases)])
    assert await relay.relay_once() == 4
    assert await relay.relay_once() == 0
    assert await queue_for(db["cases"]).count_documents({}) == 0


async def test_a_case_is_not_stored_when_its_routed_event_cannot_be_queued(db: Any) -> None:
    """The case and its ComplaintRouted are one transaction: when the event's write fails
    after the cases' write, neither is stored, and the redelivery stores both."""
    await routing(db["cases"]).ensure_indexes()
    refusing = QueueRefusing(db["cases"])
    tids = [uuid.uuid4().hex[:10] for _ in range(2)]
    with pytest.raises(OperationFailure, match="injected"):
        await routing(refusing).handle_received([received(t) for t in tids])
    assert refusing.database.refused == 1  # the cases' write was made, the events' failed
    assert await db["cases"].count_documents({}) == 0
    assert await queue_for(db["cases"]).count_documents({}) == 0

    await routing(db["cases"]).handle_received([received(t) for t in tids])  # redelivered
    assert sorted(c["_id"] for c in await db["cases"].find({}).to_list(None)) == sorted(tids)
    queued = await queue_for(db["cases"]).find({}).to_list(None)
    assert sorted(e["key"] for e in queued) == sorted(tids)

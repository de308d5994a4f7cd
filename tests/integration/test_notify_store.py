"""Notify's handlers against the real database process: a notification is sent, then stored
as sent with its NotificationRecorded in the outbox queue (one transaction), once; a
notification the previous version left "pending" goes the old way (in-document outbox).
Records and inbox messages expire (TTL indexes) and an event older than the records'
retention sends nothing (the staleness guard)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lapor.v1 import common_pb2, events_pb2
from prometheus_client import REGISTRY
from pymongo.errors import OperationFailure

from services.common.clock import Clock, ManualClock
from services.common.kafka import Delivery
from services.common.outbox import OUTBOX, PENDING, PUBLISHED, OutboxRelay, queue_for
from services.common.settings import Env
from services.common.topics import (
    CASE_ACTIONS,
    COMPLAINTS_ROUTED,
    ESCALATIONS,
    NOTIFICATIONS,
    SLA_EVENTS,
)
from services.notify.bootstrap import bootstrap
from services.notify.handlers import NotifyHandlers, breach_id
from services.notify.providers import CollectionProvider, Notification
from tests.integration.test_routing_received import QueueRefusing
from tests.integration.test_sla_store import T0
from tests.support import RecordingPublisher


class SpyProvider(CollectionProvider):
    """The inbox provider, remembering each send and failing those it is told to."""

    def __init__(self, collection: Any, fail: set[str] | None = None) -> None:
        super().__init__(collection)
        self.sent: list[str] = []
        self.fail = fail or set()

    async def send(self, notification: Notification) -> None:
        if notification.id in self.fail:
            raise RuntimeError("provider down")
        await super().send(notification)
        self.sent.append(notification.id)


class Setup:
    def __init__(
        self,
        db: Any,
        provider: SpyProvider | None = None,
        clock: Clock | None = None,
        retention: timedelta | None = None,
    ) -> None:
        self.db = db
        self.provider = provider or SpyProvider(db["inbox"])
        self.stored_calls = 0
        self.handlers = NotifyHandlers(
            db["notifications"],
            self.provider,
            clock or ManualClock(T0),
            self.on_stored,
            retention=retention,
        )
        self.publisher = RecordingPublisher()
        self.relay = OutboxRelay(
            [db["notifications"]], self.publisher, queues=[queue_for(db["notifications"])]
        )

    def on_stored(self) -> None:
        self.stored_calls += 1

    async def docs(self) -> list[Any]:
        return await self.db["notifications"].find({}).sort("_id", 1).to_list(None)

    async def queued(self) -> list[Any]:
        return await queue_for(self.db["notifications"]).find({}).sort("_id", 1).to_list(None)

    async def inbox(self) -> list[Any]:
        return await self.db["inbox"].find({}).sort("_id", 1).to_list(None)

    def published(self) -> list[events_pb2.NotificationRecorded]:
        assert all(m.topic == NOTIFICATIONS for m in self.publisher.sent)
        return [events_pb2.NotificationRecorded.FromString(m.value) for m in self.publisher.sent]


def routed(tid: str) -> Delivery[events_pb2.ComplaintRouted]:
    message = events_pb2.ComplaintRouted(
        meta=common_pb2.EventMeta(event_id=f"{tid}:routed", tracking_id=tid),
        institution=common_pb2.Institution(id="pemda-51.08/pupr", name="Dinas PUPR Buleleng"),
    )
    return Delivery(message, tid, 0, 0)


def action(tid: str, name: str) -> Delivery[events_pb2.CaseAction]:
    message = events_pb2.CaseAction(
        meta=common_pb2.EventMeta(event_id=f"{tid}:{name}", tracking_id=tid),
        action=name,
        institution=common_pb2.Institution(id="pemda-51.08/pupr", name="Dinas PUPR Buleleng"),
        public_note="Sudah kami periksa.",
    )
    return Delivery(message, tid, 0, 0)


def forwarded_id(tid: str) -> str:
    return f"{tid}:routed:complaint_forwarded"


def sent_count(template: str) -> float:
    labels = {"template": template, "provider": "collection"}
    return REGISTRY.get_sample_value("lapor_notify_notifications_sent_total", labels) or 0.0


def consumed(topic: str, outcome: str) -> float:
    labels = {"topic": topic, "outcome": outcome}
    return REGISTRY.get_sample_value("lapor_events_consumed_total", labels) or 0.0


async def test_a_routed_event_is_stored_sent_with_its_event_queued_and_published_once(
    db: Any,
) -> None:
    s = Setup(db)
    await s.handlers.ensure_indexes()
    tid = uuid.uuid4().hex[:10]
    nid = forwarded_id(tid)
    sent_before = sent_count("complaint_forwarded")

    await s.handlers.handle_routed([routed(tid)])

    [doc] = await s.docs()
    assert doc["_id"] == nid and doc["state"] == "sent" and doc["provider"] == "collection"
    assert doc["tracking_id"] == tid and doc["template"] == "complaint_forwarded"
    assert "text" not in doc  # the message went to the provider; nothing reads it here
    assert doc[OUTBOX] == [] and doc[PENDING] is False  # nothing for the in-document relay
    assert [e["id"] for e in doc[PUBLISHED]] == [f"{nid}:recorded"]  # kept for replay
    [delivered] = await s.inbox()
    assert delivered["_id"] == nid and delivered["tracking_id"] == tid
    assert "Dinas PUPR Buleleng" in delivered["text"]
    [entry] = await s.queued()
    assert (entry["id"], entry["topic"], entry["key"]) == (f"{nid}:recorded", NOTIFICATIONS, tid)
    assert s.provider.sent == [nid]
    assert sent_count("complaint_forwarded") == sent_before + 1
    assert s.stored_calls >= 1

    assert await s.relay.relay_once() == 1
    assert await s.relay.relay_once() == 0
    [event] = s.published()
    assert event.meta.event_id == f"{nid}:recorded" and event.meta.tracking_id == tid
    assert event.cause_event_id == f"{tid}:routed" and event.template == "complaint_forwarded"
    assert event.channel == "collection"
    assert await s.queued() == []
    assert await s.docs() == [doc]  # the relay deleted the queue entry, never rewrote the doc


async def test_a_redelivered_batch_sends_stores_and_publishes_nothing_new(db: Any) -> None:
    s = Setup(db)
    await s.handlers.ensure_indexes()
    tid, other = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    batch = [action(tid, "responded"), action(tid, "accepted"), action(tid, "resolved")]
    await s.handlers.handle_case_actions(batch)
    routed_duplicates = consumed(COMPLAINTS_ROUTED, "duplicate")
    await s.handlers.handle_routed([routed(tid), routed(tid)])  # twice in one batch
    assert consumed(COMPLAINTS_ROUTED, "duplicate") == routed_duplicates + 1
    assert s.provider.sent == [
        f"{tid}:responded:institution_responded",
        f"{tid}:resolved:complaint_resolved",
        forwarded_id(tid),
    ]  # once each, 'accepted' is not told
    assert await s.relay.relay_once() == 3
    docs_before, inbox_before = await s.docs(), await s.inbox()
    sends_before = list(s.provider.sent)
    sent_before = sent_count("complaint_forwarded")
    duplicates_before = consumed(CASE_ACTIONS, "duplicate")

    await s.handlers.handle_case_actions(batch)  # redelivered: the consumer did not commit
    await s.handlers.handle_routed([routed(tid), routed(other)])  # with one new event

    assert s.provider.sent == [*sends_before, forwarded_id(other)]
    assert sent_count("complaint_forwarded") == sent_before + 1
    assert consumed(CASE_ACTIONS, "duplicate") == duplicates_before + 2
    docs = await s.docs()
    assert [d for d in docs if d["tracking_id"] == tid] == docs_before
    assert [d["_id"] for d in docs if d["tracking_id"] == other] == [forwarded_id(other)]
    assert len(await s.inbox()) == len(inbox_before) + 1
    assert [e["key"] for e in await s.queued()] == [other]
    assert await s.relay.relay_once() == 1
    assert await s.relay.relay_once() == 0
    ids = [e.meta.event_id for e in s.published()]
    assert ids == [
        f"{tid}:responded:institution_responded:recorded",  # in the order of the deliveries
        f"{tid}:resolved:complaint_resolved:recorded",
        f"{forwarded_id(tid)}:recorded",
        f"{forwarded_id(other)}:recorded",
    ]


async def test_a_pending_notification_of_the_previous_version_is_sent_and_published_in_place(
    db: Any,
) -> None:
    s = Setup(db)
    await s.handlers.ensure_indexes()
    tid = uuid.uuid4().hex[:10]
    nid = forwarded_id(tid)
    # As the previous version recorded it before sending (and then crashed).
    await db["notifications"].insert_one(
        {
            "_id": nid,
            "tracking_id": tid,
            "template": "complaint_forwarded",
            "text": "old text",
            "created_at": T0,
            "state": "pending",
            PENDING: False,
            OUTBOX: [],
        }
    )
    sent_before = sent_count("complaint_forwarded")

    await s.handlers.handle_routed([routed(tid)])

    [doc] = await s.docs()
    assert doc["state"] == "sent" and doc[PENDING] is True and "text" not in doc
    assert [e["id"] for e in doc[OUTBOX]] == [f"{nid}:recorded"]
    assert await s.queued() == []  # its event went the old way, into the document
    assert [d["_id"] for d in await s.inbox()] == [nid]
    assert s.provider.sent == [nid]
    assert sent_count("complaint_forwarded") == sent_before + 1
    assert s.stored_calls >= 1

    assert await s.relay.relay_once() == 1
    assert await s.relay.relay_once() == 0
    assert [e.meta.event_id for e in s.published()] == [f"{nid}:recorded"]
    [doc] = await s.docs()
    assert doc[OUTBOX] == [] and doc[PENDING] is False
    assert [e["id"] for e in doc[PUBLISHED]] == [f"{nid}:recorded"]

    await s.handlers.handle_routed([routed(tid)])  # and redelivered: a duplicate now
    assert s.provider.sent == [nid]
    assert await s.relay.relay_once() == 0
    assert await s.docs() == [doc]


async def test_records_of_the_previous_version_lose_their_message_text(db: Any) -> None:
    """The backfill: sent and pending records of the previous version held the message text;
    after it none does, and a pending one is still sent and marked as before."""
    s = Setup(db)
    await s.handlers.ensure_indexes()
    sent, pending, new = (uuid.uuid4().hex[:10] for _ in range(3))
    legacy = {"template": "complaint_forwarded", "text": "Laporan … Dinas PUPR", "created_at": T0}
    await db["notifications"].insert_many(
        [
            {"_id": forwarded_id(sent), "tracking_id": sent, **legacy, "state": "sent"},
            {"_id": forwarded_id(pending), "tracking_id": pending, **legacy, "state": "pending"},
        ]
    )
    await s.handlers.handle_routed([routed(new)])  # this version's: no text to drop

    assert await s.handlers.drop_message_texts() == 2
    assert await s.handlers.drop_message_texts() == 0  # idempotent
    docs = {d["_id"]: d for d in await s.docs()}
    assert sorted(docs) == sorted(map(forwarded_id, [sent, pending, new]))
    assert all("text" not in d for d in docs.values())
    assert docs[forwarded_id(sent)]["state"] == "sent"

    await s.handlers.handle_routed([routed(pending)])
    assert (await db["notifications"].find_one({"_id": forwarded_id(pending)}))["state"] == "sent"
    assert s.provider.sent == [forwarded_id(new), forwarded_id(pending)]


async def test_a_failing_provider_leaves_nothing_stored_and_the_redelivery_sends_once(
    db: Any,
) -> None:
    tid = uuid.uuid4().hex[:10]
    nid = forwarded_id(tid)
    provider = SpyProvider(db["inbox"], fail={nid})
    s = Setup(db, provider)
    await s.handlers.ensure_indexes()

    with pytest.raises(RuntimeError):
        await s.handlers.handle_routed([routed(tid)])
    assert await s.docs() == [] and await s.queued() == [] and await s.inbox() == []
    assert s.stored_calls == 0

    provider.fail.clear()
    await s.handlers.handle_routed([routed(tid)])
    await s.handlers.handle_routed([routed(tid)])
    assert [(d["_id"], d["state"]) for d in await s.docs()] == [(nid, "sent")]
    assert [d["_id"] for d in await s.inbox()] == [nid]
    assert provider.sent == [nid]
    assert await s.relay.relay_once() == 1
    assert [e.meta.event_id for e in s.published()] == [f"{nid}:recorded"]


async def test_a_provider_failing_mid_batch_stores_what_it_sent_and_only_the_rest_is_resent(
    db: Any,
) -> None:
    first, second = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    provider = SpyProvider(db["inbox"], fail={forwarded_id(second)})
    s = Setup(db, provider)
    await s.handlers.ensure_indexes()
    batch = [routed(first), routed(second)]

    with pytest.raises(RuntimeError):
        await s.handlers.handle_routed(batch)
    assert [d["_id"] for d in await s.docs()] == [forwarded_id(first)]
    assert [e["key"] for e in await s.queued()] == [first]

    provider.fail.clear()
    await s.handlers.handle_routed(batch)  # the redelivery
    assert provider.sent == [forwarded_id(first), forwarded_id(second)]
    assert sorted(d["_id"] for d in await s.docs()) == sorted(map(forwarded_id, [first, second]))
    assert await s.relay.relay_once() == 2
    assert [e.meta.tracking_id for e in s.published()] == [first, second]


async def test_a_notification_a_concurrent_redelivery_stored_first_is_a_duplicate(
    db: Any,
) -> None:
    tid = uuid.uuid4().hex[:10]
    nid = forwarded_id(tid)
    rival = Setup(db)
    await rival.handlers.ensure_indexes()

    class RacedProvider(SpyProvider):
        async def send(self, notification: Notification) -> None:
            # Another consumer handles the same delivery (after a rebalance) while this one
            # is sending: it finds nothing stored either, sends and stores first.
            await rival.handlers.handle_routed([routed(tid)])
            await super().send(notification)

    s = Setup(db, RacedProvider(db["inbox"]))
    duplicates_before = consumed(COMPLAINTS_ROUTED, "duplicate")
    sent_before = sent_count("complaint_forwarded")

    await s.handlers.handle_routed([routed(tid)])

    assert rival.provider.sent == [nid] and s.provider.sent == [nid]  # same id: one delivery
    assert [d["_id"] for d in await s.inbox()] == [nid]
    assert [(d["_id"], d["state"]) for d in await s.docs()] == [(nid, "sent")]
    assert [e["id"] for e in await s.queued()] == [f"{nid}:recorded"]  # the rival's, once
    assert consumed(COMPLAINTS_ROUTED, "duplicate") == duplicates_before + 1
    assert sent_count("complaint_forwarded") == sent_before + 1
    assert s.stored_calls == 0 and rival.stored_calls >= 1


def breach(tid: str, level: str, rung: int) -> Delivery[events_pb2.SlaEvent]:
    """A first-response breach on rung `rung` of the ladder, its event id as sla makes it."""
    suffix = f":{level}" if rung else ""
    message = events_pb2.SlaEvent(
        meta=common_pb2.EventMeta(event_id=f"{tid}:first_response:breach{suffix}", tracking_id=tid),
        breached=events_pb2.DeadlineBreached(clock="first_response", escalation_level=level),
    )
    return Delivery(message, tid, 0, 0)


def test_every_rung_of_a_breach_names_the_breach() -> None:
    assert breach_id("T:first_response:breach") == "T:first_response:breach"
    assert breach_id("T:first_response:breach:national_admins") == "T:first_response:breach"
    assert breach_id("T:resolution#2:breach:unit") == "T:resolution#2:breach"
    assert breach_id("T:first_response:warning") == "T:first_response:warning"


async def test_the_reporter_hears_of_a_breach_once_whatever_rungs_follow(db: Any) -> None:
    """The shipped ladder climbs unit -> institution_admins -> national_admins a day apart:
    three DeadlineBreached events, one "first response overdue" message to the reporter."""
    s = Setup(db)
    tid = f"T-{uuid.uuid4().hex[:8]}"
    applied = consumed(SLA_EVENTS, "applied")
    duplicates = consumed(SLA_EVENTS, "duplicate")
    await s.handlers.handle_sla([breach(tid, "unit", 0)])
    await s.handlers.handle_sla([breach(tid, "institution_admins", 1)])
    await s.handlers.handle_sla(
        [breach(tid, "national_admins", 2), breach(tid, "national_admins", 2)]
    )
    assert s.provider.sent == [f"{tid}:first_response:breach:first_response_overdue"]
    assert [d["_id"] for d in await s.inbox()] == s.provider.sent
    assert consumed(SLA_EVENTS, "applied") - applied == 1
    assert consumed(SLA_EVENTS, "duplicate") - duplicates == 3


@pytest.mark.parametrize(
    ("name", "template", "said"),
    [
        ("verified", "complaint_forwarded", "diteruskan ke Dinas PUPR Buleleng"),
        ("forwarded", "complaint_forwarded", "diteruskan ke Dinas PUPR Buleleng"),
        ("not_authority", "complaint_not_authority", "bukan kewenangan"),
    ],
)
async def test_the_reporter_hears_who_holds_the_report_after_the_queue(
    db: Any, name: str, template: str, said: str
) -> None:
    s = Setup(db)
    tid = f"T-{uuid.uuid4().hex[:8]}"
    await s.handlers.handle_case_actions([action(tid, name)])
    [sent] = await s.inbox()
    assert sent["_id"] == f"{tid}:{name}:{template}" and said in sent["text"]


async def test_a_notification_is_not_stored_sent_when_its_event_cannot_be_queued(
    db: Any,
) -> None:
    """Stored as sent and its NotificationRecorded queued are one transaction: when the
    event's write fails after the notification's, neither is stored (the reporter got it:
    the redelivery sends it again with the same id, which the provider de-duplicates), and
    the redelivery stores both, once."""
    tid = uuid.uuid4().hex[:10]
    nid = forwarded_id(tid)
    provider = SpyProvider(db["inbox"])
    await NotifyHandlers(db["notifications"], provider, ManualClock(T0)).ensure_indexes()
    refusing = QueueRefusing(db["notifications"])
    stored_calls: list[int] = []
    failing = NotifyHandlers(refusing, provider, ManualClock(T0), lambda: stored_calls.append(1))  # type: ignore[arg-type]

    with pytest.raises(OperationFailure, match="injected"):
        await failing.handle_routed([routed(tid)])
    assert provider.sent == [nid]
    assert refusing.database.refused == 1  # the notification's write was made, its event's failed
    s = Setup(db, provider)
    assert await s.docs() == [] and await s.queued() == [] and stored_calls == []

    await s.handlers.handle_routed([routed(tid)])  # redelivered
    assert provider.sent == [nid, nid]  # same id: one message in the inbox
    assert [d["_id"] for d in await s.inbox()] == [nid]
    assert [(d["_id"], d["state"]) for d in await s.docs()] == [(nid, "sent")]
    assert [e["id"] for e in await s.queued()] == [f"{nid}:recorded"]


RETENTION = timedelta(days=90)
#: Dates far on either side of the database server's own clock, which its TTL monitor uses.
LONG_AGO = datetime(2000, 1, 3, tzinfo=UTC)
FAR_AHEAD = datetime(2100, 1, 4, tzinfo=UTC)


def dated(d: Delivery[Any], at: datetime) -> Delivery[Any]:
    """The delivery with its event's ``meta.occurred_at`` set to `at`."""
    d.message.meta.occurred_at.FromDatetime(at)
    return d


async def ttl_pass(db: Any) -> None:
    """One pass of the database's TTL monitor now (it runs every 60 s by itself), through
    the embedded server's admin command."""
    await db.client.admin.command("secantusAdmin.pruneTtl")


async def ttl_indexes(collection: Any) -> list[dict[str, Any]]:
    return [dict(i) async for i in await collection.list_indexes() if "expireAfterSeconds" in i]


async def test_sent_records_expire_after_the_retention_through_a_partial_ttl_index(
    db: Any,
) -> None:
    await Setup(db, retention=RETENTION).handlers.ensure_indexes()
    [index] = await ttl_indexes(db["notifications"])
    assert dict(index["key"]) == {"created_at": 1}
    assert index["expireAfterSeconds"] == 90 * 86400
    assert dict(index["partialFilterExpression"]) == {"state": "sent", PENDING: False}

    await Setup(db, retention=timedelta(days=120)).handlers.ensure_indexes()  # changed
    [index] = await ttl_indexes(db["notifications"])
    assert index["expireAfterSeconds"] == 120 * 86400

    await Setup(db, retention=None).handlers.ensure_indexes()  # 0: kept for good
    assert await ttl_indexes(db["notifications"]) == []


async def test_the_database_deletes_only_sent_and_published_records_past_the_retention(
    db: Any,
) -> None:
    old = Setup(db, clock=ManualClock(LONG_AGO), retention=RETENTION)
    await old.handlers.ensure_indexes()
    sent, pending, unpublished, recent = (uuid.uuid4().hex[:10] for _ in range(4))
    await old.handlers.handle_routed([dated(routed(sent), LONG_AGO)])  # event in the queue
    legacy = {"tracking_id": "", "template": "complaint_forwarded", "created_at": LONG_AGO}
    await db["notifications"].insert_many(  # the previous version's, left pending
        [
            {"_id": forwarded_id(pending), **legacy, "state": "pending", PENDING: False},
            {"_id": forwarded_id(unpublished), **legacy, "state": "pending", PENDING: False},
        ]
    )
    # sent the old way: its event waits in the document for the relay
    await old.handlers.handle_routed([dated(routed(unpublished), LONG_AGO)])
    new = Setup(db, clock=ManualClock(FAR_AHEAD), retention=RETENTION)
    await new.handlers.handle_routed([dated(routed(recent), FAR_AHEAD)])

    await ttl_pass(db)

    kept = [d["_id"] for d in await old.docs()]
    assert sorted(kept) == sorted(map(forwarded_id, [pending, unpublished, recent]))
    # the expired record's event does not depend on it: still queued for the relay
    assert f"{forwarded_id(sent)}:recorded" in [e["id"] for e in await old.queued()]


async def test_an_event_older_than_the_retention_sends_nothing_and_is_counted(db: Any) -> None:
    s = Setup(db, retention=RETENTION)  # now: T0
    await s.handlers.ensure_indexes()
    old, edge = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    stale = consumed(COMPLAINTS_ROUTED, "stale")

    await s.handlers.handle_routed(
        [
            dated(routed(old), T0 - RETENTION - timedelta(seconds=1)),
            dated(routed(edge), T0 - RETENTION),  # as old as a record can be: still sent
        ]
    )

    assert s.provider.sent == [forwarded_id(edge)]
    assert consumed(COMPLAINTS_ROUTED, "stale") == stale + 1
    assert [d["_id"] for d in await s.docs()] == [forwarded_id(edge)]
    assert [d["_id"] for d in await s.inbox()] == [forwarded_id(edge)]
    assert [e["key"] for e in await s.queued()] == [edge]


def escalation(tid: str) -> Delivery[events_pb2.OmbudsmanEscalation]:
    message = events_pb2.OmbudsmanEscalation(
        meta=common_pb2.EventMeta(event_id=f"{tid}:ombudsman:escalation", tracking_id=tid)
    )
    return Delivery(message, tid, 0, 0)


@pytest.mark.parametrize(
    ("topic", "handle", "event"),
    [
        (COMPLAINTS_ROUTED, "handle_routed", routed),
        (CASE_ACTIONS, "handle_case_actions", lambda tid: action(tid, "resolved")),
        (ESCALATIONS, "handle_escalation", escalation),
        (SLA_EVENTS, "handle_sla", lambda tid: breach(tid, "unit", 0)),
    ],
)
async def test_every_topic_is_guarded(db: Any, topic: str, handle: str, event: Any) -> None:
    s = Setup(db, retention=RETENTION)
    tid = uuid.uuid4().hex[:10]
    stale = consumed(topic, "stale")
    d = dated(event(tid), T0 - RETENTION - timedelta(days=1))
    if topic == SLA_EVENTS:
        d.message.breached.due_at.FromDatetime(T0 - RETENTION - timedelta(days=1))
    await getattr(s.handlers, handle)([d])
    assert s.provider.sent == [] and await s.docs() == []
    assert consumed(topic, "stale") == stale + 1


async def test_a_breach_is_as_old_as_its_deadline_whatever_rung_brings_it(db: Any) -> None:
    """The later rungs of a breach map onto its first rung's notification, whose record was
    created after the deadline: a rung whose deadline is older than the retention is stale
    however recent the rung itself is."""
    s = Setup(db, retention=RETENTION)
    late, recent = f"T-{uuid.uuid4().hex[:8]}", f"T-{uuid.uuid4().hex[:8]}"
    rung = dated(breach(late, "national_admins", 2), T0 - timedelta(days=10))
    rung.message.breached.due_at.FromDatetime(T0 - RETENTION - timedelta(days=1))
    first = dated(breach(recent, "unit", 0), T0 - timedelta(days=80))
    first.message.breached.due_at.FromDatetime(T0 - timedelta(days=80))
    stale = consumed(SLA_EVENTS, "stale")

    await s.handlers.handle_sla([rung, first])

    assert s.provider.sent == [f"{recent}:first_response:breach:first_response_overdue"]
    assert consumed(SLA_EVENTS, "stale") == stale + 1


async def test_without_a_retention_records_are_kept_and_old_events_are_sent(db: Any) -> None:
    s = Setup(db)  # LAPOR_NOTIFY_RECORD_RETENTION_DAYS=0
    await s.handlers.ensure_indexes()
    tid = uuid.uuid4().hex[:10]
    await s.handlers.handle_routed([dated(routed(tid), LONG_AGO)])
    assert s.provider.sent == [forwarded_id(tid)]
    assert await ttl_indexes(db["notifications"]) == []


async def test_the_inbox_expires_messages_after_its_retention(db: Any) -> None:
    inbox = CollectionProvider(db["inbox"], timedelta(days=60))
    await inbox.ensure_indexes()
    [index] = await ttl_indexes(db["inbox"])
    assert dict(index["key"]) == {"delivered_at": 1}
    assert index["expireAfterSeconds"] == 60 * 86400 and "partialFilterExpression" not in index
    for nid, at in (("old:routed:complaint_forwarded", LONG_AGO), ("new", FAR_AHEAD)):
        await inbox.send(Notification(nid, "T", "complaint_forwarded", "Laporan T …", at))

    await ttl_pass(db)

    assert [d["_id"] for d in await db["inbox"].find({}).to_list(None)] == ["new"]
    await CollectionProvider(db["inbox"], None).ensure_indexes()  # 0: kept for good
    assert await ttl_indexes(db["inbox"]) == []


@pytest.mark.parametrize("provider", ["collection", "log"])
async def test_the_service_starts_with_the_configured_retentions_and_its_backfill(
    db: Any, infra: Any, provider: str
) -> None:
    env = {
        "LAPOR_KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "LAPOR_MONGODB_URI": infra.mongodb_uri,
        "LAPOR_MONGODB_DATABASE": db.name,
        "LAPOR_GRPC_PORT": "0",
        "LAPOR_METRICS_PORT": "0",
        "LAPOR_NOTIFY_PROVIDER": provider,
        "LAPOR_NOTIFY_INBOX_RETENTION_DAYS": "45",
    }
    await db["notifications"].insert_one(  # a record of the previous version
        {"_id": "old:routed:complaint_forwarded", "state": "sent", "text": "Laporan …"}
    )
    parts = bootstrap(env=Env(env))
    try:
        for start in parts.startup:
            await start()
        for backfill in parts.backfills:
            await backfill()
    finally:
        for close in parts.close:
            await close()
    [records] = await ttl_indexes(db["notifications"])
    assert records["expireAfterSeconds"] == 90 * 86400  # the default
    inbox = [i["expireAfterSeconds"] for i in await ttl_indexes(db["inbox"])]
    assert inbox == ([45 * 86400] if provider == "collection" else [])
    assert await db["notifications"].count_documents({"text": {"$exists": True}}) == 0

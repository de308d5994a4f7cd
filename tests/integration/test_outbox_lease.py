"""One active outbox relay per service: two relays on the same outbox (two replicas), each
with its own lease object on the service's database, against the real database and broker
processes. Only the holder publishes, so every event goes out once; when it stops, it
releases the lease and the other takes over at its next poll."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from lapor.v1 import common_pb2
from prometheus_client import REGISTRY

from services.common.clock import ManualClock
from services.common.kafka import KafkaPublisher
from services.common.lease import Lease
from services.common.outbox import (
    RELAY_LEASE,
    LeaseUnknown,
    OutboxMessage,
    OutboxRelay,
    ensure_queue,
    insert_queued,
    outbox_update,
    queue_for,
    queued_fields,
)
from services.common.settings import KafkaSettings
from services.sla.relay import BATCH_OUTBOX, SlaRelay
from services.stack.supervisor import Stack
from tests.support import RecordingPublisher, read_topic

TOPIC = "lapor.complaints.received"  # an existing topic of the embedded broker
TTL = timedelta(seconds=10)


class Replica:
    """One process's relay: its own publisher (a producer of its own) and lease object."""

    def __init__(
        self, db: Any, name: str, clock: ManualClock, kafka: KafkaSettings, things: Any
    ) -> None:
        self.lease = Lease(db, RELAY_LEASE, clock, TTL, name)
        self.publisher = KafkaPublisher(kafka, f"it-{name}")
        self.relay = OutboxRelay(
            [things],
            self.publisher,
            batch_size=25,
            poll_interval=0.05,
            queues=[queue_for(things)],
            lease=self.lease,
        )
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.publisher.start()
        self.task = asyncio.create_task(self.relay.run(self.stop))

    async def halt(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)
        await self.publisher.stop()


async def store_wave(things: Any, tag: str, wave: int, n: int) -> list[str]:
    """`n` new documents with a queued first event each, and a later event in the document
    of every third: what writers on any replica store. Returns the events' ids."""

    def message(i: int, kind: str) -> OutboxMessage:
        key = f"{tag}-{wave}-{i}"
        meta = common_pb2.EventMeta(event_id=f"{key}:{kind}", tracking_id=key)
        return OutboxMessage(f"{key}:{kind}", TOPIC, key, meta.SerializeToString())

    items = [
        (
            {"_id": f"{tag}-{wave}-{i}", **queued_fields([message(i, "first")])},
            [message(i, "first")],
        )
        for i in range(n)
    ]
    assert await insert_queued(things, items) == {}
    later = [i for i in range(n) if i % 3 == 0]
    for i in later:
        await things.update_one({"_id": f"{tag}-{wave}-{i}"}, outbox_update([message(i, "later")]))
    return [m.id for _, ms in items for m in ms] + [message(i, "later").id for i in later]


async def drained(things: Any) -> None:
    for _ in range(300):
        if (
            await queue_for(things).count_documents({}) == 0
            and await things.count_documents({"_outbox_pending": True}) == 0
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the relays did not empty the outbox")


def published(infra: Stack, tag: str) -> Counter[str]:
    """How often each of the test's events is on the topic, read by an independent client."""
    ids = (
        common_pb2.EventMeta.FromString(v or b"").event_id
        for k, v in read_topic(infra.bootstrap_servers, TOPIC)
        if k and k.decode().startswith(tag)
    )
    return Counter(ids)


def twice(counts: Counter[str]) -> dict[str, int]:
    return {event_id: n for event_id, n in counts.items() if n > 1}


async def test_two_replicas_publish_each_event_once_and_hand_over_on_stop(
    db: Any, kafka_settings: KafkaSettings, infra: Stack
) -> None:
    things = db["things"]
    await ensure_queue(things)
    tag = uuid.uuid4().hex[:8]
    clock = ManualClock()  # the clocks agree; no lease runs out in this test
    replicas = [Replica(db, name, clock, kafka_settings, things) for name in ("a", "b")]
    for replica in replicas:
        await replica.start()
    try:
        expected: Counter[str] = Counter()  # event id -> 1
        for wave in range(6):  # steady load: waves written while both relays run
            expected.update(await store_wave(things, tag, wave, 60))
            for replica in replicas:  # writers on both replicas wake their relay
                replica.relay.wake()
            await asyncio.sleep(0.02)
        await drained(things)
        counts = published(infra, tag)
        assert twice(counts) == {}  # no event twice
        assert counts == expected  # none missing

        leader = next(r for r in replicas if r.lease.holding)
        other = next(r for r in replicas if r is not leader)
        assert not other.lease.holding
        await leader.halt()  # a clean shutdown releases the lease
        wave_keys = await store_wave(things, tag, 99, 30)
        expected.update(wave_keys)
        await drained(things)  # the other's poll finds the lease free: no TTL to wait out
        assert other.lease.holding
    finally:
        for replica in replicas:
            if not replica.stop.is_set():
                await replica.halt()
    counts = published(infra, tag)
    assert twice(counts) == {}
    assert counts == expected


async def test_a_relay_standing_by_publishes_nothing_and_reports_no_more(db: Any) -> None:
    things = db["things"]
    await ensure_queue(things)
    queue = queue_for(things)
    old = datetime.now(UTC) - timedelta(minutes=5)
    await queue.insert_one(
        {"_id": ObjectId.from_datetime(old), **OutboxMessage("e", "t", "k", b"").as_doc()}
    )
    clock = ManualClock()
    holder = Lease(db, RELAY_LEASE, clock, TTL, "a")
    assert await holder.held()
    recorder = RecordingPublisher()
    relay = OutboxRelay(
        [things],
        recorder,
        batch_size=1,
        queues=[queue],
        lease=Lease(db, RELAY_LEASE, clock, TTL, "b"),
    )
    oldest = {"queue": queue.name}
    assert await relay.relay_once() == 0
    assert recorder.sent == [] and not relay.full
    # Its process reports nothing waiting: the holder's gauge tells the queue's age.
    assert REGISTRY.get_sample_value("lapor_outbox_oldest_pending_seconds", oldest) == 0
    relay.wake()  # a write in its process does not wake it
    assert not relay._wakeup.is_set()
    clock.advance(TTL)  # the holder stopped renewing: this one takes over
    assert await relay.relay_once() == 1
    assert [m.id for m in recorder.sent] == ["e"]
    relay.wake()
    assert relay._wakeup.is_set()


async def test_sla_relays_share_one_lease_and_stand_by_together(db: Any) -> None:
    cases = db["clocks"]
    tid = uuid.uuid4().hex[:8]
    await cases.insert_one({"_id": tid, **queued_fields([]), "version": 1})
    await cases.update_one(
        {"_id": tid}, outbox_update([OutboxMessage(f"{tid}:doc", TOPIC, tid, b"d")])
    )
    await db[BATCH_OUTBOX].insert_one(
        {
            "_id": "batch-1",
            "at": datetime.now(UTC),
            "pending": True,
            "events": [OutboxMessage(f"{tid}:batch", TOPIC, tid, b"b").as_doc()],
        }
    )
    clock = ManualClock()
    first, second = RecordingPublisher(), RecordingPublisher()
    active = SlaRelay(cases, first, lease=Lease(db, RELAY_LEASE, clock, TTL, "a"))
    standing_by = SlaRelay(cases, second, lease=Lease(db, RELAY_LEASE, clock, TTL, "b"))
    assert await active.relay_batches_once() == 1  # the batch loop took the lease
    assert await standing_by.relay_once() == 0  # neither of its outboxes
    assert await active.relay_once() == 1  # the documents' loop holds it too
    assert sorted(m.id for m in first.sent) == [f"{tid}:batch", f"{tid}:doc"]
    assert second.sent == []
    standing_by.wake_batches()
    standing_by.wake_documents()
    assert not standing_by._wakeup.is_set() and not standing_by.documents._wakeup.is_set()

    stop = asyncio.Event()
    stop.set()
    await active.run(stop)  # stops at once, and hands the lease over
    assert await standing_by.relay_once() == 0 and standing_by.lease is not None
    assert standing_by.lease.holding


async def test_a_lease_check_the_database_fails_is_a_failed_round(
    db_to_kill: tuple[Any, Callable[[], None]],
) -> None:
    client, kill = db_to_kill
    db = client["lapor_test"]
    clock = ManualClock()
    relay = OutboxRelay(
        [db["things"]], RecordingPublisher(), lease=Lease(db, RELAY_LEASE, clock, TTL, "a")
    )
    assert await relay.relay_once() == 0  # holds the lease; nothing to publish
    kill()
    clock.advance(TTL)  # our lease ran out and cannot be renewed
    with pytest.raises(LeaseUnknown):  # counted and retried by the relay loop
        await relay.relay_once()

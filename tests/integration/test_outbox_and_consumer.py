"""The outbox relay and the consumer loop against the real broker and database processes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import grpc
import pytest
from bson import ObjectId
from lapor.v1 import common_pb2
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import AutoReconnect, PyMongoError

from services.common import outbox
from services.common.errors import Unavailable
from services.common.grpc_errors import status_for
from services.common.kafka import Delivery, EventConsumer, KafkaPublisher
from services.common.mongo import TRANSIENT_ERRORS, is_transient, write_conflict
from services.common.outbox import (
    OutboxMessage,
    OutboxRelay,
    ensure_queue,
    in_transaction,
    insert_queued,
    outbox_fields,
    outbox_update,
    queue_for,
    queued_fields,
)
from services.common.settings import KafkaSettings
from services.stack.supervisor import Stack
from tests import kafka_offsets
from tests.support import RecordingPublisher, read_topic


async def wait_committed_past(
    kafka_settings: KafkaSettings,
    topic: str,
    group: str,
    deliveries: list[Delivery[common_pb2.EventMeta]],
) -> None:
    """Wait until `group` (an EventConsumer's group name) has committed past every one of
    `deliveries`: the broker's record that a new member of the group starts after them.
    Fails when that does not happen after 150 looks, 0.2 s apart."""
    positions = [(d.partition, d.offset) for d in deliveries]
    for _ in range(150):
        if await committed_past(kafka_settings, topic, group, positions):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{group} did not commit past {positions} of {topic}")


async def committed_past(
    kafka_settings: KafkaSettings, topic: str, group: str, positions: list[tuple[int, int]]
) -> bool:
    """Whether `group` has committed past every one of `positions` (an independent client
    reads the group's offsets without joining it)."""
    bootstrap = kafka_settings.bootstrap_servers
    return await asyncio.to_thread(
        kafka_offsets.handled, bootstrap, f"{group}.{topic}", topic, positions
    )


def meta_message(tracking_id: str) -> bytes:
    return common_pb2.EventMeta(
        event_id=uuid.uuid4().hex, tracking_id=tracking_id
    ).SerializeToString()


async def test_relay_publishes_once_marks_and_replays(
    db: object, kafka_settings: KafkaSettings, infra: Stack
) -> None:
    topic = "lapor.complaints.received"  # an existing topic of the embedded broker
    tag = uuid.uuid4().hex[:8]
    docs = [
        {
            "_id": f"{tag}-{i}",
            **outbox_fields(
                [OutboxMessage(f"{tag}-e{i}", topic, f"{tag}-{i}", meta_message(f"{tag}-{i}"))]
            ),
        }
        for i in range(25)
    ]
    await db["things"].insert_many(docs)  # type: ignore[index]
    publisher = KafkaPublisher(kafka_settings, "it")
    await publisher.start()
    try:
        relay = OutboxRelay([db["things"]], publisher)  # type: ignore[index]
        assert await relay.relay_once() == 25
        assert await relay.relay_once() == 0
        assert await db["things"].count_documents({"_outbox_pending": True}) == 0  # type: ignore[index]
        mine = [
            k
            for k, _v in read_topic(infra.bootstrap_servers, topic)
            if k and k.decode().startswith(tag)
        ]
        assert sorted(mine) == sorted(d["_id"].encode() for d in docs)
        assert await relay.replay() == 25
        mine = [
            k
            for k, _v in read_topic(infra.bootstrap_servers, topic)
            if k and k.decode().startswith(tag)
        ]
        assert len(mine) == 50  # replay republishes; consumers de-duplicate on event ids
    finally:
        await publisher.stop()


async def test_queued_first_events_go_out_before_later_ones_and_leave_the_queue(db: object) -> None:
    things = db["things"]  # type: ignore[index]
    await ensure_queue(things)
    topic = "t"
    items = [
        (
            {"_id": f"d{i}", **queued_fields([OutboxMessage(f"first-{i}", topic, f"d{i}", b"1")])},
            [OutboxMessage(f"first-{i}", topic, f"d{i}", b"1")],
        )
        for i in range(5)
    ]
    assert await insert_queued(things, items) == {}
    # A later event of d0 and d3 waits in their own documents.
    for i in (0, 3):
        await things.update_one(
            {"_id": f"d{i}"}, outbox_update([OutboxMessage(f"later-{i}", topic, f"d{i}", b"2")])
        )
    recorder = RecordingPublisher()
    relay = OutboxRelay([things], recorder, batch_size=2, queues=[queue_for(things)])
    # Rounds of 2: while the queue holds a full round, the documents' events wait.
    assert await relay.relay_once() == 2 and await relay.relay_once() == 2
    assert [m.id for m in recorder.sent] == ["first-0", "first-1", "first-2", "first-3"]
    assert await relay.relay_once() == 3  # the queue's last entry, then the documents'
    assert [m.id for m in recorder.sent][4:] == ["first-4", "later-0", "later-3"]
    assert await relay.relay_once() == 0
    assert await queue_for(things).count_documents({}) == 0
    assert await things.count_documents({"_outbox_pending": True}) == 0
    # Replay carries every event the documents kept, queued ones included.
    recorder.sent.clear()
    assert await relay.replay() == 7
    assert sorted(m.id for m in recorder.sent) == sorted(
        [f"first-{i}" for i in range(5)] + ["later-0", "later-3"]
    )


async def test_insert_queued_leaves_out_duplicates_with_their_events(db: object) -> None:
    things = db["things"]  # type: ignore[index]
    await ensure_queue(things)
    await ensure_queue(things)  # idempotent

    def item(i: int) -> tuple[dict[str, object], list[OutboxMessage]]:
        return {"_id": f"d{i}"}, [OutboxMessage(f"e{i}-{uuid.uuid4().hex}", "t", f"d{i}", b"")]

    assert await insert_queued(things, [item(1), item(3)]) == {}
    failed = await insert_queued(things, [item(0), item(1), item(2), item(3), item(4)])
    assert sorted(failed) == [1, 3] and all(e["code"] == 11000 for e in failed.values())
    assert sorted(d["_id"] for d in await things.find({}).to_list(None)) == [
        f"d{i}" for i in range(5)
    ]
    queued = await queue_for(things).find({}).to_list(None)
    assert sorted(e["key"] for e in queued) == [f"d{i}" for i in range(5)]  # one each


async def test_consumer_retries_transient_errors_and_commits_after_work(
    db: object, kafka_settings: KafkaSettings
) -> None:
    topic = "lapor.notifications"
    tracking_id = await publish_one(kafka_settings, topic)

    handled: list[str] = []
    mine_seen: list[Delivery[common_pb2.EventMeta]] = []
    committed_before_done: list[bool] = []  # at each call with the message, failed or not
    failures = 2
    done = asyncio.Event()
    group = f"it-{uuid.uuid4().hex[:6]}"

    async def handle(deliveries: list[Delivery[common_pb2.EventMeta]]) -> None:
        nonlocal failures
        mine = [d for d in deliveries if d.message.tracking_id == tracking_id]
        if mine:
            mine_seen.extend(mine)
            positions = [(d.partition, d.offset) for d in mine]
            committed_before_done.append(
                await committed_past(kafka_settings, topic, group, positions)
            )
        if mine and failures:
            failures -= 1
            raise AutoReconnect("database away")
        handled.extend(d.message.tracking_id for d in mine)
        if mine:
            done.set()

    async def park(*_args: object) -> None:
        raise AssertionError("nothing should be dead-lettered")

    stop = asyncio.Event()
    consumer = EventConsumer(kafka_settings, topic, group, common_pb2.EventMeta, handle, park)
    task = asyncio.create_task(consumer.run(stop))
    try:
        await asyncio.wait_for(done.wait(), 60)
        # The work is done: the offset is committed after it (a new member of the group
        # starts after the message: no redelivery) ...
        await wait_committed_past(kafka_settings, topic, group, mine_seen)
    finally:
        stop.set()
        await task
    assert handled == [tracking_id]
    # ... and not before: neither while it failed nor while the work ran.
    assert committed_before_done == [False, False, False]


async def test_a_message_that_keeps_failing_is_parked_and_the_rest_go_on(
    db: object, kafka_settings: KafkaSettings
) -> None:
    topic = "lapor.sla.events"
    good, bad = uuid.uuid4().hex, uuid.uuid4().hex
    publisher = KafkaPublisher(kafka_settings, "it")
    await publisher.start()
    await publisher.publish_many(
        [
            OutboxMessage("b", topic, good, meta_message(bad)),
            OutboxMessage("g", topic, good, meta_message(good)),
        ]
    )
    await publisher.stop()
    handled: list[str] = []
    parked: list[str] = []
    stop = asyncio.Event()

    async def handle(deliveries: list[Delivery[common_pb2.EventMeta]]) -> None:
        if any(d.message.tracking_id == bad for d in deliveries):
            raise ValueError("poison")
        handled.extend(d.message.tracking_id for d in deliveries)
        if good in handled:
            stop.set()

    async def park(_topic: str, value: bytes | None, reason: str) -> None:
        parked.append(common_pb2.EventMeta.FromString(value or b"").tracking_id)

    consumer = EventConsumer(
        kafka_settings,
        topic,
        f"it-{uuid.uuid4().hex[:6]}",
        common_pb2.EventMeta,
        handle,
        park,
        max_attempts=2,
    )
    await asyncio.wait_for(consumer.run(stop), 90)
    assert parked == [bad]
    assert good in handled


async def test_insert_queued_fails_fast_when_the_database_is_gone(
    db_to_kill: tuple[AsyncMongoClient[Any], Callable[[], None]],
) -> None:
    """A transaction against a database that went away raises the driver's transient error
    within the server-selection timeout (the channel gets UNAVAILABLE and retries with its
    idempotency key), instead of retrying for minutes while submissions wait."""
    client, kill = db_to_kill
    things = client["it"]["things"]
    await ensure_queue(things)
    assert await insert_queued(things, [({"_id": 1}, [OutboxMessage("e1", "t", "1", b"")])]) == {}
    kill()
    with pytest.raises(TRANSIENT_ERRORS):
        await asyncio.wait_for(
            insert_queued(things, [({"_id": 2}, [OutboxMessage("e2", "t", "2", b"")])]), 30
        )


async def test_the_relay_reports_how_long_the_oldest_queued_event_has_waited(db: object) -> None:
    things = db["things"]  # type: ignore[index]
    await ensure_queue(things)
    queue = queue_for(things)
    five_minutes_ago = datetime.now(UTC) - timedelta(minutes=5)
    await queue.insert_one(
        {
            "_id": ObjectId.from_datetime(five_minutes_ago),
            **OutboxMessage("e", "t", "k", b"").as_doc(),
        }
    )
    relay = OutboxRelay([things], RecordingPublisher(), queues=[queue])
    oldest = {"queue": queue.name}
    assert REGISTRY.get_sample_value("lapor_outbox_oldest_pending_seconds", oldest) == 0
    started = REGISTRY.get_sample_value("lapor_outbox_relay_last_round_timestamp_seconds")
    assert await relay.relay_once() == 1
    assert REGISTRY.get_sample_value("lapor_outbox_oldest_pending_seconds", oldest) >= 300
    assert await relay.relay_once() == 0  # published and deleted: nothing waits
    assert REGISTRY.get_sample_value("lapor_outbox_oldest_pending_seconds", oldest) == 0
    ended = REGISTRY.get_sample_value("lapor_outbox_relay_last_round_timestamp_seconds")
    assert started is not None and ended is not None and ended >= started


async def test_insert_queued_waits_out_a_transaction_holding_the_same_key(db: object) -> None:
    """Two writers (or replicas) storing retries of one submission: the second transaction
    conflicts with the first, uncommitted one, and is run again until the first commits;
    then it sees the duplicate instead of failing."""
    things = db["things"]  # type: ignore[index]
    await things.create_index("idem", unique=True)
    await ensure_queue(things)
    client = things.database.client
    async with client.start_session() as first:
        await first.start_transaction()
        await things.insert_one({"_id": "a", "idem": "k"}, session=first)
        second = asyncio.create_task(
            insert_queued(
                things, [({"_id": "b", "idem": "k"}, [OutboxMessage("e", "t", "b", b"")])], "idem"
            )
        )
        await asyncio.sleep(0.5)  # the second keeps conflicting meanwhile
        assert not second.done()
        await first.commit_transaction()
    failed = await asyncio.wait_for(second, 30)
    assert list(failed) == [0] and failed[0]["code"] == 11000
    assert [d["_id"] for d in await things.find({}).to_list(None)] == ["a"]
    assert await queue_for(things).count_documents({}) == 0


async def test_in_transaction_returns_what_the_write_returned(db: object) -> None:
    """The shared transaction helper hands back the write's result (sla's counted writes
    return whether their compare-and-set applied), after the commit."""
    things = db["things"]  # type: ignore[index]
    await things.insert_one({"_id": "a", "n": 0})

    async def write(session: AsyncClientSession) -> int:
        result = await things.update_one({"_id": "a"}, {"$inc": {"n": 1}}, session=session)
        return result.modified_count

    assert await in_transaction(things.database.client, write) == 1
    assert (await things.find_one({"_id": "a"}))["n"] == 1


async def test_the_relay_loop_waits_after_a_partial_round_and_loses_no_wake(db: object) -> None:
    """A round that read less than a full batch is not followed by an empty one at once
    (its reads would be wasted); events stored while a round runs are taken by the next
    round at once, not after the poll interval."""
    things = db["things"]  # type: ignore[index]
    await ensure_queue(things)
    stored_during_round = asyncio.Event()

    class WritingWhilePublishing(RecordingPublisher):
        async def publish_many(self, messages: list[OutboxMessage]) -> None:
            await super().publish_many(messages)
            if len(self.sent) == 1:  # a writer stores and wakes the relay mid-round
                await insert_queued(things, [({"_id": 2}, [OutboxMessage("e2", "t", "2", b"")])])
                relay.wake()
                stored_during_round.set()

    rounds = 0

    class CountedWakeup(asyncio.Event):
        """The relay's wake-up event, noting how many rounds had run each time the loop
        starts to wait on it (it waits only after a round that was not full)."""

        def __init__(self) -> None:
            super().__init__()
            self.waits: list[int] = []
            self.idle_after_two = asyncio.Event()

        async def wait(self) -> Literal[True]:
            self.waits.append(rounds)
            if rounds >= 2:
                self.idle_after_two.set()
            return await super().wait()

    recorder = WritingWhilePublishing()
    relay = OutboxRelay(
        [things], recorder, batch_size=10, poll_interval=60, queues=[queue_for(things)]
    )
    wakeup = CountedWakeup()
    relay._wakeup = wakeup  # the loop waits on this one
    relay_once = relay.relay_once

    async def counted() -> int:
        nonlocal rounds
        rounds += 1
        return await relay_once()

    relay.relay_once = counted  # type: ignore[method-assign]
    await insert_queued(things, [({"_id": 1}, [OutboxMessage("e1", "t", "1", b"")])])
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        # the poll interval is a minute: only the wake can bring e2 out this soon
        await asyncio.wait_for(stored_during_round.wait(), 10)
        # Barrier: the loop has gone idle (waits for a wake) after its second round.
        await asyncio.wait_for(wakeup.idle_after_two.wait(), 10)
        assert [m.id for m in recorder.sent] == ["e1", "e2"]
        # It waited after each round, the first wait ending at once (the wake during the
        # round), and no round ran between: no empty round after either partial round.
        assert wakeup.waits == [1, 2] and rounds == 2
    finally:
        stop.set()
        relay.wake()
        await asyncio.wait_for(task, 10)


async def test_one_fetch_across_partitions_is_one_handled_batch_in_key_order(
    db: object, kafka_settings: KafkaSettings
) -> None:
    """A fetch that spans partitions goes to the handler as one batch (one bulk write, one
    commit), each key's events still in order; everything is committed after the work."""
    topic = "lapor.escalations"
    keys = [uuid.uuid4().hex for _ in range(12)]  # spread over the topic's partitions
    publisher = KafkaPublisher(kafka_settings, "it")
    await publisher.start()
    await publisher.publish_many(
        [
            OutboxMessage(f"{k}:{n}", topic, k, meta_message(f"{k}:{n}"))
            for n in range(3)
            for k in keys
        ]
    )
    await publisher.stop()
    batches: list[list[Delivery[common_pb2.EventMeta]]] = []
    done, stop = asyncio.Event(), asyncio.Event()

    async def handle(deliveries: list[Delivery[common_pb2.EventMeta]]) -> None:
        mine = [d for d in deliveries if d.key in keys]
        if mine:
            batches.append(mine)
        if sum(len(b) for b in batches) >= 3 * len(keys):
            done.set()

    async def park(*_args: object) -> None:
        raise AssertionError("nothing should be dead-lettered")

    group = f"it-{uuid.uuid4().hex[:6]}"
    consumer = EventConsumer(kafka_settings, topic, group, common_pb2.EventMeta, handle, park)
    task = asyncio.create_task(consumer.run(stop))
    try:
        await asyncio.wait_for(done.wait(), 60)
        delivered = [d for b in batches for d in b]
        # all of it is committed after the work: a new member of the group gets none of it
        await wait_committed_past(kafka_settings, topic, group, delivered)
    finally:
        stop.set()
        await task
    for k in keys:
        assert [d.message.tracking_id for d in delivered if d.key == k] == [
            f"{k}:{n}" for n in range(3)
        ]
    assert any(len({d.partition for d in b}) > 1 for b in batches)  # partitions shared a batch


async def test_a_conflict_that_outlasts_the_patience_is_a_transient_error_aborted_for_grpc(
    db: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction kept waiting by another one past TRANSACTION_PATIENCE raises the
    database's conflict: classed as transient (retried by consumers, never dead-lettered)
    and answered ABORTED over gRPC, not INTERNAL."""
    monkeypatch.setattr(outbox, "TRANSACTION_PATIENCE", 0.3)
    things = db["things"]  # type: ignore[index]
    await things.insert_one({"_id": "a", "n": 0})
    async with things.database.client.start_session() as holder:
        await holder.start_transaction()
        await things.update_one({"_id": "a"}, {"$inc": {"n": 1}}, session=holder)

        async def write(session: AsyncClientSession) -> None:
            await things.update_one({"_id": "a"}, {"$inc": {"n": 10}}, session=session)

        with pytest.raises(PyMongoError) as raised:
            await in_transaction(things.database.client, write)
        await holder.abort_transaction()
    assert write_conflict(raised.value) and is_transient(raised.value)
    assert status_for(raised.value)[0] == grpc.StatusCode.ABORTED
    assert (await things.find_one({"_id": "a"}))["n"] == 0  # neither wrote


async def publish_one(kafka_settings: KafkaSettings, topic: str) -> str:
    """Publish one event for a new tracking id; the id."""
    tracking_id = uuid.uuid4().hex
    publisher = KafkaPublisher(kafka_settings, "it")
    await publisher.start()
    await publisher.publish_many(
        [OutboxMessage("e", topic, tracking_id, meta_message(tracking_id))]
    )
    await publisher.stop()
    return tracking_id


@contextlib.asynccontextmanager
async def consuming(
    kafka_settings: KafkaSettings,
    topic: str,
    handle: Callable[[list[Delivery[common_pb2.EventMeta]]], Any],
) -> AsyncIterator[list[str]]:
    """A consumer of `topic` in a new group, dead-lettering after 2 counted failures, run
    for the body of the `async with`; gives the reasons of what it parked."""
    parked: list[str] = []

    async def park(_topic: str, _value: bytes | None, reason: str) -> None:
        parked.append(reason)

    group = f"it-{uuid.uuid4().hex[:6]}"
    consumer = EventConsumer(
        kafka_settings, topic, group, common_pb2.EventMeta, handle, park, max_attempts=2
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield parked
    finally:
        stop.set()
        await task


async def test_a_consumer_waits_out_a_lasting_conflict_instead_of_dead_lettering(
    db: object, kafka_settings: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler's transaction conflicts with one held open for longer than the helper's
    patience, again and again (more often than max_attempts): the consumer keeps retrying
    and applies the event once the other transaction ends; nothing is parked."""
    monkeypatch.setattr(outbox, "TRANSACTION_PATIENCE", 0.2)
    things = db["things"]  # type: ignore[index]
    await things.insert_one({"_id": "a", "n": 0})
    tracking_id = await publish_one(kafka_settings, "lapor.notifications")
    conflicts = 0
    done = asyncio.Event()

    async def handle(deliveries: list[Delivery[common_pb2.EventMeta]]) -> None:
        nonlocal conflicts
        if not any(d.message.tracking_id == tracking_id for d in deliveries):
            return

        async def write(session: AsyncClientSession) -> None:
            await things.update_one({"_id": "a"}, {"$inc": {"n": 10}}, session=session)

        try:
            await in_transaction(things.database.client, write)
        except PyMongoError:
            conflicts += 1
            raise
        done.set()

    async with consuming(kafka_settings, "lapor.notifications", handle) as parked:
        async with things.database.client.start_session() as holder:
            await holder.start_transaction()
            await things.update_one({"_id": "a"}, {"$inc": {"n": 1}}, session=holder)
            for _ in range(300):
                if conflicts > 3:
                    break
                await asyncio.sleep(0.1)
            await holder.commit_transaction()
        await asyncio.wait_for(done.wait(), 30)
    assert conflicts > 3 and parked == []
    assert (await things.find_one({"_id": "a"}))["n"] == 11  # the held write, then ours once


@pytest.fixture
async def unconfirmable(infra: Stack) -> AsyncIterator[Callable[[Any], Any]]:
    """Gives a collection through a client whose write concern the single-node database can
    never confirm (w: 3): the server makes each write (a transaction's at its commit) and
    reports a write-concern error, as a replica set does when a majority does not confirm
    in time."""
    client: AsyncMongoClient[Any] = AsyncMongoClient(infra.mongodb_uri, w=3, wTimeoutMS=200)
    yield lambda collection: client[collection.database.name][collection.name]
    await client.close()


async def test_an_unconfirmed_write_concern_is_unavailable_and_the_retry_finds_the_write(
    db: object, unconfirmable: Callable[[Any], Any]
) -> None:
    things = db["things"]  # type: ignore[index]
    await things.create_index("idem", unique=True)
    await ensure_queue(things)
    item = ({"_id": "a", "idem": "k"}, [OutboxMessage("e", "t", "a", b"")])
    with pytest.raises(PyMongoError) as raised:
        await insert_queued(unconfirmable(things), [item], "idem")
    assert is_transient(raised.value)
    assert status_for(raised.value)[0] == grpc.StatusCode.UNAVAILABLE
    # The write was made: the channel's retry with the same key finds it, stores nothing new.
    failed = await insert_queued(things, [item], "idem")
    assert list(failed) == [0] and failed[0]["code"] == 11000
    assert await things.count_documents({}) == 1
    assert await queue_for(things).count_documents({}) == 1


async def test_a_consumer_retries_an_unconfirmed_write_concern_instead_of_dead_lettering(
    db: object, kafka_settings: KafkaSettings, unconfirmable: Callable[[Any], Any]
) -> None:
    things = db["things"]  # type: ignore[index]
    tracking_id = await publish_one(kafka_settings, "lapor.notifications")
    unconfirmed = 0
    done = asyncio.Event()

    async def handle(deliveries: list[Delivery[common_pb2.EventMeta]]) -> None:
        nonlocal unconfirmed
        if not any(d.message.tracking_id == tracking_id for d in deliveries):
            return
        target = unconfirmable(things) if unconfirmed < 4 else things
        try:
            await target.bulk_write(
                [UpdateOne({"_id": tracking_id}, {"$set": {"seen": True}}, upsert=True)]
            )
        except PyMongoError:
            unconfirmed += 1
            raise
        done.set()

    async with consuming(kafka_settings, "lapor.notifications", handle) as parked:
        await asyncio.wait_for(done.wait(), 60)
    assert unconfirmed == 4 and parked == []
    assert await things.find_one({"_id": tracking_id}) == {"_id": tracking_id, "seen": True}


async def test_a_report_too_busy_to_change_is_retried_not_dead_lettered(
    db: object, kafka_settings: KafkaSettings
) -> None:
    """A handler that keeps finding its report changed under it gives up with Unavailable
    ('busy; retry', as routing's and intake's compare-and-set loops and sla's Conflict do):
    more often than max_attempts, yet the event is applied once the report is quiet."""
    tracking_id = await publish_one(kafka_settings, "lapor.notifications")
    busy = 4
    done = asyncio.Event()

    async def handle(deliveries: list[Delivery[common_pb2.EventMeta]]) -> None:
        nonlocal busy
        if any(d.message.tracking_id == tracking_id for d in deliveries):
            if busy:
                busy -= 1
                raise Unavailable(f"tracking_id: report {tracking_id} is busy; retry")
            done.set()

    async with consuming(kafka_settings, "lapor.notifications", handle) as parked:
        await asyncio.wait_for(done.wait(), 60)
    assert busy == 0 and parked == []

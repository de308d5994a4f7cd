"""One active outbox relay per service: two relays on the same outbox (two replicas), each
with its own lease object on the service's database, against the real database and broker
processes. Only the holder publishes, so every event goes out once; when it stops, it
releases the lease and the other takes over at its next poll. The keeper keeps the lease of
a holder whose round takes longer than the TTL; a holder whose rounds keep failing steps
down."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from lapor.v1 import common_pb2
from prometheus_client import REGISTRY

from services.common import outbox
from services.common.clock import ManualClock, SystemClock
from services.common.kafka import KafkaPublisher
from services.common.lease import LEASES, Lease
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
from tests.integration.test_lease import hands_over_when_cancelled, renewed
from tests.support import RecordingPublisher, polled, read_topic

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
    async def done() -> bool:
        return await empty(queue_for(things)) and await empty(things, {"_outbox_pending": True})

    if not await polled(done, 300, 0.05):
        raise AssertionError("the relays did not empty the outbox")


async def pending_batch(db: Any, event_id: str, key: str) -> None:
    """One pending ``sla_outbox`` batch holding one event."""
    await db[BATCH_OUTBOX].insert_one(
        {
            "_id": "batch-1",
            "at": datetime.now(UTC),
            "pending": True,
            "events": [OutboxMessage(event_id, TOPIC, key, b"b").as_doc()],
        }
    )


async def one_queued(db: Any, event_id: str) -> Any:
    """Collection ``things`` with one new document whose event `event_id` waits in its queue."""
    things = db["things"]
    await ensure_queue(things)
    event = OutboxMessage(event_id, TOPIC, "k", b"")
    assert await insert_queued(things, [({"_id": "d", **queued_fields([event])}, [event])]) == {}
    return things


async def empty(collection: Any, query: dict[str, Any] | None = None) -> bool:
    """Whether no document of `collection` matches `query` (by default: none at all)."""
    return not await collection.count_documents(query or {})


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
    for i, event_id in enumerate(("e", "f")):  # five minutes old, a second apart
        await queue.insert_one(
            {
                "_id": ObjectId.from_datetime(old + timedelta(seconds=i)),
                **OutboxMessage(event_id, "t", "k", b"").as_doc(),
            }
        )
    clock = ManualClock()
    recorder = RecordingPublisher()
    relay = OutboxRelay(
        [things],
        recorder,
        batch_size=1,
        queues=[queue],
        lease=Lease(db, RELAY_LEASE, clock, TTL, "b"),
    )
    oldest = {"queue": queue.name}
    assert await relay.relay_once() == 1  # the holder: it tells the queue's age
    assert [m.id for m in recorder.sent] == ["e"]
    assert REGISTRY.get_sample_value("lapor_outbox_oldest_pending_seconds", oldest) >= 299
    clock.advance(TTL)  # it stopped renewing (paused): another process takes over
    assert await Lease(db, RELAY_LEASE, clock, TTL, "a").held()
    assert await relay.relay_once() == 0
    assert [m.id for m in recorder.sent] == ["e"] and not relay.full
    # Its process reports nothing waiting any more: the holder's gauge tells the queue's age.
    assert REGISTRY.get_sample_value("lapor_outbox_oldest_pending_seconds", oldest) == 0
    relay.wake()  # a write in its process does not wake it
    assert not relay._wakeup.is_set()
    clock.advance(TTL)  # the holder stopped renewing: this one takes over again
    assert await relay.relay_once() == 1
    assert [m.id for m in recorder.sent] == ["e", "f"]
    relay.wake()
    assert relay._wakeup.is_set()


async def test_sla_relays_share_one_lease_and_stand_by_together(db: Any) -> None:
    cases = db["clocks"]
    tid = uuid.uuid4().hex[:8]
    await cases.insert_one({"_id": tid, **queued_fields([]), "version": 1})
    await cases.update_one(
        {"_id": tid}, outbox_update([OutboxMessage(f"{tid}:doc", TOPIC, tid, b"d")])
    )
    await pending_batch(db, f"{tid}:batch", tid)
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


async def test_sla_releases_the_lease_its_batch_loop_took_back_as_it_stopped(db: Any) -> None:
    """The documents' loop releases the shared lease as it stops; the batch loop's last
    round, under way, checks the lease after that and takes it again; the relay releases
    it once more when both loops have stopped."""
    cases = db["clocks"]
    await pending_batch(db, "late:batch", "late")
    publisher = RecordingPublisher()
    relay = SlaRelay(
        cases,
        publisher,
        poll_interval=0.01,
        lease=Lease(db, RELAY_LEASE, ManualClock(), TTL, "a"),
    )
    stop = asyncio.Event()
    batches_once = relay.relay_batches_once

    async def last_round_after_the_release() -> int:
        await stop.wait()

        async def released() -> bool:
            return await db[LEASES].find_one({"_id": RELAY_LEASE}) is None

        await polled(released)  # until the documents' loop has released the lease
        return await batches_once()

    relay.relay_batches_once = last_round_after_the_release  # type: ignore[method-assign]
    task = asyncio.create_task(relay.run(stop))
    assert relay.lease is not None
    await polled(lambda: relay.lease.holding)  # the documents' loop takes the lease
    assert relay.lease.holding
    stop.set()
    await asyncio.wait_for(task, 10)
    assert [m.id for m in publisher.sent] == ["late:batch"]  # that round held the lease
    assert await db[LEASES].find_one({"_id": RELAY_LEASE}) is None
    assert not relay.lease.holding


class Hanging:
    """A publisher whose publish hangs until `go` is set: a slow broker. The lease's clock
    is a manual one that the tests move by more than the TTL while the event loop's moves by
    far less, so the round's own bound (a TTL of the loop's time, `Failing`) is not reached:
    what keeps the lease meanwhile is the keeper alone."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.go = asyncio.Event()
        self.sent: list[OutboxMessage] = []
        self.hanging = 0  # publishes under way

    async def publish_many(self, messages: list[OutboxMessage]) -> None:
        self.entered.set()
        self.hanging += 1
        await self.go.wait()
        self.sent.extend(messages)


async def kept_by_a(db: Any, clock: ManualClock, other: Lease | None) -> None:
    """30 s of the lease's time in steps of a quarter of the TTL: each time holder "a"'s
    keeper renews it, and `other` never holds it."""
    for _ in range(12):
        clock.advance(TTL / 4)
        await renewed(db, RELAY_LEASE, clock, "a")
        assert other is not None and not other.holding


async def test_the_keeper_keeps_the_lease_of_a_relay_whose_round_outlasts_the_ttl(
    db: Any,
) -> None:
    things = await one_queued(db, "slow")
    clock = ManualClock()
    hanging, standing_by = Hanging(), RecordingPublisher()

    def relay(name: str, publisher: Any) -> OutboxRelay:
        lease = Lease(db, RELAY_LEASE, clock, TTL, name, keep_every=0.01)
        return OutboxRelay(
            [things], publisher, poll_interval=0.01, queues=[queue_for(things)], lease=lease
        )

    a, b = relay("a", hanging), relay("b", standing_by)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(a.run(stop))]
    try:
        await asyncio.wait_for(hanging.entered.wait(), 10)  # a holds the lease, and hangs
        tasks.append(asyncio.create_task(b.run(stop)))  # b polls the lease meanwhile
        await kept_by_a(db, clock, b.lease)
        hanging.go.set()  # the broker answers at last
        await polled(lambda: empty(queue_for(things)))
    finally:
        hanging.go.set()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert [m.id for m in hanging.sent] == ["slow"]
    assert standing_by.sent == []
    assert await queue_for(things).count_documents({}) == 0


async def test_sla_keeps_its_lease_while_its_publishes_outlast_the_ttl(db: Any) -> None:
    """Both loops hang in a publish (the documents' loop alone would renew the lease as it
    polls): the one keeper keeps the lease for both."""
    cases = db["clocks"]
    await cases.insert_one({"_id": "slow", **queued_fields([]), "version": 1})
    await cases.update_one(
        {"_id": "slow"}, outbox_update([OutboxMessage("slow:doc", TOPIC, "slow", b"d")])
    )
    await pending_batch(db, "slow:batch", "slow")
    clock = ManualClock()
    hanging, standing_by = Hanging(), RecordingPublisher()

    def relay(name: str, publisher: Any) -> SlaRelay:
        lease = Lease(db, RELAY_LEASE, clock, TTL, name, keep_every=0.01)
        return SlaRelay(cases, publisher, poll_interval=0.01, lease=lease)

    a, b = relay("a", hanging), relay("b", standing_by)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(a.run(stop))]
    try:
        await polled(lambda: hanging.hanging == 2)  # both loops hold the lease, and hang
        assert hanging.hanging == 2
        tasks.append(asyncio.create_task(b.run(stop)))
        await kept_by_a(db, clock, b.lease)
        hanging.go.set()

        async def relayed() -> bool:
            return await empty(db[BATCH_OUTBOX], {"pending": True}) and await empty(
                cases, {"_outbox_pending": True}
            )

        await polled(relayed)
    finally:
        hanging.go.set()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert sorted(m.id for m in hanging.sent) == ["slow:batch", "slow:doc"]
    assert standing_by.sent == []


class Broken:
    """A publisher that fails at once: a producer that cannot reach the broker from this
    process, or a broken one."""

    async def publish_many(self, messages: list[OutboxMessage]) -> None:
        raise ConnectionError("broker unreachable")


def stepped_down(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("stepping down")]


async def test_a_relay_failing_for_two_ttls_steps_down_and_another_takes_over(
    db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    things = await one_queued(db, "e")
    clock = ManualClock()
    healthy = RecordingPublisher()
    failing, other = (
        OutboxRelay(
            [things],
            publisher,
            queues=[queue_for(things)],
            lease=Lease(db, RELAY_LEASE, clock, TTL, name),
        )
        for name, publisher in (("a", Broken()), ("b", healthy))
    )
    assert failing.lease is not None and other.lease is not None
    caplog.set_level(logging.INFO, logger=outbox.__name__)
    for _ in range(4):  # rounds at 0, 5, 10 and 15 s fail; each renews the lease
        with pytest.raises(ConnectionError):
            await failing.relay_once()
        assert failing.lease.holding
        assert await other.relay_once() == 0  # stands by
        clock.advance(TTL / 2)
    assert stepped_down(caplog) == []
    with pytest.raises(ConnectionError):  # 20 s: two TTLs of failed rounds
        await failing.relay_once()
    assert not failing.lease.holding
    assert stepped_down(caplog) == ["stepping down: outbox relay failing for 20 s"]
    assert await other.relay_once() == 1  # at its next poll
    assert [m.id for m in healthy.sent] == ["e"]
    # It does not take the lease back for a TTL, even when free.
    await other.lease.release()
    clock.advance(TTL - timedelta(milliseconds=1))
    assert await failing.relay_once() == 0
    assert await db[LEASES].find_one({"_id": RELAY_LEASE}) is None
    clock.advance(timedelta(milliseconds=1))
    assert await failing.relay_once() == 0  # holds it again; nothing left to publish
    assert failing.lease.holding
    assert stepped_down(caplog) == ["stepping down: outbox relay failing for 20 s"]


async def test_sla_steps_down_when_its_batch_loop_keeps_failing(
    db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The documents' loop works (nothing to publish) while the batch loop fails: the batch
    loop's failures alone make both loops step down."""
    cases = db["clocks"]
    await pending_batch(db, "b1:batch", "b1")
    clock = ManualClock()
    healthy = RecordingPublisher()
    failing = SlaRelay(cases, Broken(), lease=Lease(db, RELAY_LEASE, clock, TTL, "a"))
    other = SlaRelay(cases, healthy, lease=Lease(db, RELAY_LEASE, clock, TTL, "b"))
    assert failing.lease is not None
    caplog.set_level(logging.INFO, logger=outbox.__name__)
    for _ in range(4):
        with pytest.raises(ConnectionError):
            await failing.relay_batches_once()
        assert await failing.documents.relay_once() == 0  # works, and holds the lease
        assert await other.relay_once() == 0
        clock.advance(TTL / 2)
    with pytest.raises(ConnectionError):
        await failing.relay_batches_once()
    assert stepped_down(caplog) == ["stepping down: batch outbox relay failing for 20 s"]
    assert not failing.lease.holding
    assert await failing.documents.relay_once() == 0  # stands by too
    assert not failing.lease.holding
    assert await other.relay_once() == 1
    assert [m.id for m in healthy.sent] == ["b1:batch"]


async def test_a_step_down_right_after_a_failed_check_stands_by_for_its_rest(
    db_to_kill: tuple[Any, Callable[[], None]],
) -> None:
    """The renewal in the round that steps down hits a database error: the rest that follows
    stands by (no database call) instead of failing each round with `LeaseUnknown`."""
    client, kill = db_to_kill
    db = client["lapor_test"]
    clock = ManualClock()
    lease = Lease(db, RELAY_LEASE, clock, TTL, "a")
    relay = OutboxRelay([db["things"]], RecordingPublisher(), lease=lease)
    assert await relay.relay_once() == 0
    kill()
    clock.advance(TTL * 0.6)
    assert await lease.held() and lease.error is not None  # ours until it runs out
    await lease.step_down()  # the round failed for the second TTL
    for _ in range(3):
        clock.advance(TTL / 4)
        assert await relay.relay_once() == 0  # stands by


async def broken_round() -> int:
    raise ConnectionError("broker unreachable")


async def good_round() -> int:
    return 0


@pytest.mark.parametrize("between", ["a round that worked", "a round standing by"])
async def test_a_round_between_failures_starts_the_count_again(
    db: Any, caplog: pytest.LogCaptureFixture, between: str
) -> None:
    clock = ManualClock()
    lease = Lease(db, RELAY_LEASE, clock, TTL, "a")
    failing = outbox.Failing(lease, "outbox relay")
    caplog.set_level(logging.INFO, logger=outbox.__name__)
    for second in range(0, 40, 5):  # failed rounds every 5 s, but at 15 s
        assert await lease.held()
        if second != 15:
            with pytest.raises(ConnectionError):
                await failing.round(broken_round)
        elif between == "a round that worked":
            await failing.round(good_round)
        else:
            failing.standing_by()
        clock.advance(TTL / 2)
    assert stepped_down(caplog) == []  # failing for 15 s, since 20 s
    assert await lease.held()
    with pytest.raises(ConnectionError):
        await failing.round(broken_round)
    assert stepped_down(caplog) == ["stepping down: outbox relay failing for 20 s"]


class Stuck:
    """A publish that never returns: aiokafka's idempotent producer retrying a send until a
    broker answers (tests/integration/test_relay_broker_down.py has the real one)."""

    async def publish_many(self, messages: list[OutboxMessage]) -> None:
        await asyncio.Event().wait()


async def test_a_round_still_running_after_a_ttl_fails(db: Any) -> None:
    """In both of sla's loops; the lease's clock is the system's, so the round's bound (a
    TTL of the event loop's time) and the count of failed time agree."""
    cases = db["clocks"]
    await cases.insert_one({"_id": "s", **queued_fields([]), "version": 1})
    await cases.update_one({"_id": "s"}, outbox_update([OutboxMessage("s:doc", TOPIC, "s", b"")]))
    await pending_batch(db, "s:batch", "s")
    lease = Lease(db, RELAY_LEASE, SystemClock(), timedelta(milliseconds=200), "a")
    relay = SlaRelay(cases, Stuck(), lease=lease)

    async def timed_out(round: Callable[[], Awaitable[int]]) -> bool:
        try:
            await round()
        except TimeoutError:
            return True
        return False

    for round in (relay.relay_batches_once, relay.documents.relay_once):
        assert await asyncio.wait_for(timed_out(round), 10)  # not this test's own limit
    assert await cases.count_documents({"_outbox_pending": True}) == 1  # published later
    assert await db[BATCH_OUTBOX].count_documents({"pending": True}) == 1


async def test_a_relay_cancelled_at_shutdown_hands_its_lease_over(db: Any) -> None:
    lease = Lease(db, RELAY_LEASE, ManualClock(), TTL, "a")
    relay = OutboxRelay([db["things"]], RecordingPublisher(), poll_interval=0.01, lease=lease)
    await hands_over_when_cancelled(db, lease, relay.run)


async def test_sla_relays_cancelled_at_shutdown_hand_their_lease_over(db: Any) -> None:
    lease = Lease(db, RELAY_LEASE, ManualClock(), TTL, "a")
    relay = SlaRelay(db["clocks"], RecordingPublisher(), poll_interval=0.01, lease=lease)
    await hands_over_when_cancelled(db, lease, relay.run)

"""A holder whose broker goes away steps down, and another replica publishes: two relays on
one outbox, each with the real producer and a mock broker of its own, against the real
database process, on the system clock with a short lease. aiokafka's idempotent producer
retries a send until a broker answers, so the holder's publish hangs rather than fails: its
round is stopped after a TTL and counts as failed (services/common/outbox.py, ``Failing``)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from services.common import outbox
from services.common.clock import SystemClock
from services.common.kafka import KafkaPublisher
from services.common.lease import Lease
from services.common.outbox import RELAY_LEASE, OutboxMessage, OutboxRelay, queue_for
from services.common.settings import KafkaSettings
from services.stack.supervisor import Stack
from tests.integration.test_outbox_lease import TOPIC, one_queued, stepped_down
from tests.support import polled, read_topic

TTL = timedelta(seconds=2)


def settings(bootstrap: str) -> KafkaSettings:
    return KafkaSettings(bootstrap, "PLAINTEXT", None, None, None, None, fetch_max_wait_ms=20)


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    # A minute: the review saw the holder keep its lease that long.
    if not await polled(condition, 600, 0.1):
        raise AssertionError(what)


async def test_a_holder_whose_broker_is_unreachable_steps_down_and_another_publishes(
    db: Any, infra: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    own = Stack(tmp_path)  # holder a's broker; b publishes through the session's
    publishers: list[KafkaPublisher] = []
    tasks: list[asyncio.Task[None]] = []
    stop = asyncio.Event()
    try:
        tag = uuid.uuid4().hex[:8]
        things = await one_queued(db, f"{tag}:first")
        queue = queue_for(things)

        async def relay(name: str, bootstrap: str) -> OutboxRelay:
            publisher = KafkaPublisher(settings(bootstrap), f"it-{name}")
            await publisher.start()
            publishers.append(publisher)
            lease = Lease(db, RELAY_LEASE, SystemClock(), TTL, name)
            relay = OutboxRelay([things], publisher, poll_interval=0.1, queues=[queue], lease=lease)
            tasks.append(asyncio.create_task(relay.run(stop)))
            return relay

        async def drained() -> bool:
            return await queue.count_documents({}) == 0

        a = await relay("a", own.start_kafka())
        await until(drained, "a did not publish the first event")  # a holds the lease
        b = await relay("b", infra.bootstrap_servers)
        assert a.lease is not None and b.lease is not None and a.lease.holding
        caplog.set_level(logging.INFO, logger=outbox.__name__)
        own.kafka_control("down 1")  # a's producer can no longer reach its broker
        event = OutboxMessage(f"{tag}:later", TOPIC, tag, b"")
        await queue.insert_one(event.as_doc())

        async def b_published() -> bool:
            return b.lease is not None and b.lease.holding and await drained()

        await until(b_published, "the holder kept its lease: nothing published the event")
        assert stepped_down(caplog) and all(
            m.startswith("stepping down: outbox relay failing for") for m in stepped_down(caplog)
        )
        assert not a.lease.holding
        keys = [k for k, _ in read_topic(infra.bootstrap_servers, TOPIC)]
        assert tag.encode() in keys  # b published it, through its own broker
    finally:
        if own.kafka is not None:
            own.kafka_control("up 1")  # a's producer can flush and stop
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        for publisher in publishers:
            await asyncio.wait_for(publisher.stop(), 10)
        own.stop()

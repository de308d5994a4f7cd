"""An outbox replay (disaster recovery: ``LAPOR_OUTBOX_REPLAY=1``) that fails part-way runs
again when the runtime restarts the relay worker, until it has gone through; sla's two
relay loops stop together when one fails, so a restart runs exactly two again. Against the
real database process; the publisher is a recorder that fails when told to."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from services.common.outbox import OutboxMessage, OutboxRelay, outbox_fields
from services.sla.relay import BATCH_OUTBOX, SlaRelay

TOPIC = "lapor.complaints.received"


class FlakyPublisher:
    """Records what it publishes; the first `failures` calls raise as a broker timing out."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[str] = []

    async def publish_many(self, messages: list[OutboxMessage]) -> None:
        if self.failures:
            self.failures -= 1
            raise TimeoutError("the broker did not answer")
        self.sent.extend(m.id for m in messages)


def published_docs(n: int, prefix: str) -> list[dict[str, Any]]:
    """Documents whose events went out once already (kept for a replay)."""
    docs = []
    for i in range(n):
        doc = {
            "_id": f"{prefix}{i}",
            **outbox_fields([OutboxMessage(f"{prefix}e{i}", TOPIC, f"{prefix}{i}", b"x")]),
        }
        doc["_published"] = doc.pop("_outbox")
        doc.pop("_outbox_pending", None)
        docs.append(doc)
    return docs


async def stopped() -> asyncio.Event:
    stop = asyncio.Event()
    stop.set()  # the relay loop returns at once: only the replay runs
    return stop


async def test_a_failed_replay_runs_again_on_restart(db: Any) -> None:
    await db["things"].insert_many(published_docs(5, "d"))
    publisher = FlakyPublisher(failures=1)
    relay = OutboxRelay([db["things"]], publisher, batch_size=2)
    relay.replay_on_start = True
    with pytest.raises(TimeoutError):
        await relay.run(await stopped())
    assert relay.replay_on_start  # still owed
    await relay.run(await stopped())  # the runtime's restart
    assert sorted(publisher.sent) == [f"de{i}" for i in range(5)]
    assert not relay.replay_on_start
    publisher.sent.clear()
    await relay.run(await stopped())  # a later restart does not replay again
    assert publisher.sent == []


async def test_sla_replays_both_outboxes_even_after_one_failed(db: Any) -> None:
    cases = db["clocks"]
    await cases.insert_many(published_docs(3, "c"))
    events = [OutboxMessage(f"b{i}", TOPIC, f"c{i}", b"y").as_doc() for i in range(2)]
    await db[BATCH_OUTBOX].insert_one(
        {"_id": "batch-1", "events": events, "pending": False, "at": datetime.now(UTC)}
    )
    publisher = FlakyPublisher(failures=1)
    relay = SlaRelay(cases, publisher, batch_size=2)
    relay.replay_on_start = True
    with pytest.raises(Exception) as failed:  # noqa: PT011 - a TaskGroup's ExceptionGroup
        await relay.run(await stopped())
    assert failed.group_contains(TimeoutError)
    await relay.run(await stopped())
    # Whatever the failure interrupted is replayed whole (consumers drop the repeats).
    assert set(publisher.sent) == {"b0", "b1", "ce0", "ce1", "ce2"}
    publisher.sent.clear()
    await relay.run(await stopped())
    assert publisher.sent == []

"""Transactional outbox kept inside the aggregate's own document.

A service stores the events it must publish in the same document write that changes
the state (field ``_outbox``), so state and events are saved or lost together without a
multi-document transaction. The relay publishes pending events (at least once, in order
per document) and then removes exactly the ones it published. Consumers de-duplicate on
the event id, so a relay that crashes between publishing and marking does no harm.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from services.common.clock import sleep_until_or_stop
from services.common.metrics import OUTBOX_PUBLISHED, OUTBOX_RELAY_ERRORS
from services.common.mongo import Doc

log = logging.getLogger(__name__)

PENDING = "_outbox_pending"
OUTBOX = "_outbox"
PUBLISHED = "_published"
PUBLISHED_KEEP = 50  # published events kept per document, for replay


@dataclass(frozen=True)
class OutboxMessage:
    id: str
    topic: str
    key: str
    value: bytes

    def as_doc(self) -> Doc:
        return {"id": self.id, "topic": self.topic, "key": self.key, "value": self.value}


def outbox_fields(messages: list[OutboxMessage]) -> Doc:
    """Fields to put into a new document."""
    return {OUTBOX: [m.as_doc() for m in messages], PENDING: bool(messages)}


def outbox_update(messages: list[OutboxMessage]) -> Doc:
    """Update operators appending events to an existing document."""
    return {
        "$push": {OUTBOX: {"$each": [m.as_doc() for m in messages]}},
        "$set": {PENDING: True},
    }


def merge_updates(*updates: Doc) -> Doc:
    merged: dict[str, dict[str, Any]] = {}
    for update in updates:
        for op, fields in update.items():
            merged.setdefault(op, {}).update(fields)
    return merged


class Publisher(Protocol):
    async def publish_many(self, messages: list[OutboxMessage]) -> None: ...


class OutboxRelay:
    def __init__(
        self,
        collections: list[AsyncCollection[Doc]],
        publisher: Publisher,
        batch_size: int = 500,
        poll_interval: float = 0.5,
    ) -> None:
        self._collections = collections
        self._publisher = publisher
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._wakeup = asyncio.Event()
        self.replay_on_start = False

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self, stop: asyncio.Event) -> None:
        if self.replay_on_start:
            self.replay_on_start = False
            await self.replay()
        await relay_loop(stop, self.relay_once, self._wakeup, self._poll_interval, "outbox relay")

    async def replay(self) -> int:
        """Publish again every event these collections ever published (and kept).

        For a broker that lost its data: the embedded in-memory broker on each start, or a
        production topic rebuilt after a disaster. Consumers are idempotent, so events they
        already handled change nothing; events lost with the old broker are handled now.
        """
        total = 0
        for collection in self._collections:
            cursor = collection.find({PUBLISHED: {"$exists": True}}, {PUBLISHED: 1}).sort("_id", 1)
            batch: list[OutboxMessage] = []
            async for doc in cursor:
                for e in doc.get(PUBLISHED, []):
                    batch.append(OutboxMessage(e["id"], e["topic"], e["key"], e["value"]))
                if len(batch) >= self._batch_size:
                    await self._publisher.publish_many(batch)
                    total += len(batch)
                    batch = []
            if batch:
                await self._publisher.publish_many(batch)
                total += len(batch)
        log.info("outbox replayed", extra={"events": total})
        return total

    async def relay_once(self) -> int:
        total = 0
        for collection in self._collections:
            docs = await collection.find({PENDING: True}, {OUTBOX: 1}).to_list(self._batch_size)
            if not docs:
                continue
            messages = [
                OutboxMessage(e["id"], e["topic"], e["key"], e["value"])
                for doc in docs
                for e in doc.get(OUTBOX, [])
            ]
            await self._publisher.publish_many(messages)
            for message in messages:
                OUTBOX_PUBLISHED.labels(topic=message.topic).inc()
            pairs = [mark_published(doc["_id"], doc[OUTBOX]) for doc in docs if doc.get(OUTBOX)]
            if pairs:
                result = await collection.bulk_write([fast for fast, _ in pairs], ordered=False)
                if result.matched_count < len(pairs):  # some got new events meanwhile
                    await collection.bulk_write([slow for _, slow in pairs], ordered=False)
            stale = [doc["_id"] for doc in docs if not doc.get(OUTBOX)]
            if stale:
                await collection.update_many(
                    {"_id": {"$in": stale}, OUTBOX: {"$size": 0}}, {"$set": {PENDING: False}}
                )
            total += len(messages)
        return total


async def relay_loop(
    stop: asyncio.Event,
    relay_once: Callable[[], Awaitable[int]],
    wakeup: asyncio.Event,
    poll_interval: float,
    name: str,
) -> None:
    """Run `relay_once` until `stop`: again at once while it publishes, else after
    `wakeup` is set (a writer stored events) or `poll_interval` passed; after a failure,
    a second later."""
    while not stop.is_set():
        try:
            published = await relay_once()
        except Exception:
            OUTBOX_RELAY_ERRORS.inc()
            log.exception(f"{name} failed; retrying")
            if await sleep_until_or_stop(stop, 1.0):
                return
            continue
        if published == 0:
            wakeup.clear()
            waiter = asyncio.ensure_future(wakeup.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait(
                {waiter, stopper}, timeout=poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            stopper.cancel()


def mark_published(doc_id: Any, entries: list[dict[str, Any]]) -> tuple[UpdateOne, UpdateOne]:
    """The writes that mark `entries` published: one write in the usual case.

    When the outbox still holds exactly the events just published, one compare-and-set
    empties it, clears the pending flag and keeps the events for replay. When events were
    appended meanwhile, the second write pulls only the published ones and the flag stays
    set, so the new ones go out in the next round (it matches nothing after the first).
    """
    ids = [e["id"] for e in entries]
    keep = {"$each": entries, "$slice": -PUBLISHED_KEEP}
    fast = UpdateOne(
        {"_id": doc_id, OUTBOX: {"$size": len(ids)}, f"{OUTBOX}.0.id": ids[0]},
        {"$set": {OUTBOX: [], PENDING: False}, "$push": {PUBLISHED: keep}},
    )
    slow = UpdateOne(
        {"_id": doc_id, f"{OUTBOX}.id": {"$in": ids}},
        {"$pull": {OUTBOX: {"id": {"$in": ids}}}, "$push": {PUBLISHED: keep}},
    )
    return fast, slow

"""Transactional outbox, in two forms.

* **In the document**: a service stores the events it must publish in the same document
  write that changes the state (field ``_outbox``), so state and events are saved or lost
  together without a multi-document transaction. The relay publishes pending events (at
  least once, in order per document) and then removes exactly the ones it published.
* **Queued**: a document written in bulk and rarely changed again (a new complaint, a new
  case) is inserted together with its events in a queue collection, in one multi-document
  transaction. The relay publishes queue entries in insertion order and deletes them: it
  never rewrites the document itself. On the embedded database that halves what a new
  document costs (an update there rewrites the whole document and every index entry of it,
  twice the CPU of the insert), and the document's collection is left to its writers.

A document's first event may wait in a queue and its later ones in the document; the relay
publishes a round's queued events before its in-document ones, and holds the in-document
ones back while the queue has more than one round's worth, so no later event overtakes the
first. Consumers de-duplicate on the event id, so a relay that crashes between publishing
and marking (or deleting) does no harm.

Every replica of a service runs a relay, but only one is active: the holder of the
service's ``outbox-relay`` lease (services/common/lease.py). The others stand by: their
rounds check the lease (one read of one document) and publish nothing, and writes in their
process do not wake them. The active relay picks up the events written on other replicas at
its next poll (`LAPOR_OUTBOX_POLL_SECONDS`), its own process's at once (`OutboxRelay.wake`).
When the active process stops cleanly its relay releases the lease and another takes over
at its next poll; when it dies, once the lease has run out (`LAPOR_LEASE_TTL_SECONDS`). The
lease's keeper renews it while a round takes long (a slow broker), but a round still running
after a TTL counts as failed (a publish that hangs: the producer retries until a broker
answers); an active relay whose rounds have failed for `STEP_DOWN_AFTER` TTLs steps down, so
a replica that can reach the broker takes over. Two relays may still overlap briefly (a
paused holder that resumes, clocks further apart than the TTL): they then publish some
events twice, which consumers drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.mongo_client import AsyncMongoClient
from pymongo.errors import BulkWriteError, CollectionInvalid, PyMongoError

from services.common.clock import doubling, sleep_until_or_stop
from services.common.lease import Lease, run_holding
from services.common.logging import loggable
from services.common.metrics import (
    OUTBOX_LAST_ROUND,
    OUTBOX_OLDEST,
    OUTBOX_PUBLISHED,
    OUTBOX_RELAY_ERRORS,
)
from services.common.mongo import Doc, duplicate_keys_only, write_conflict

log = logging.getLogger(__name__)

PENDING = "_outbox_pending"
OUTBOX = "_outbox"
PUBLISHED = "_published"
PUBLISHED_KEEP = 50  # published events kept per document, for replay
QUEUE_SUFFIX = "_outbox"  # a queue collection is named after its documents' collection
RELAY_LEASE = "outbox-relay"  # one active relay per service (per database)


@dataclass(frozen=True)
class OutboxMessage:
    id: str
    topic: str
    key: str
    value: bytes

    def as_doc(self) -> Doc:
        return {"id": self.id, "topic": self.topic, "key": self.key, "value": self.value}

    @classmethod
    def from_doc(cls, entry: Doc) -> OutboxMessage:
        """The message `as_doc` stored (an outbox, queue or replay entry)."""
        return cls(entry["id"], entry["topic"], entry["key"], entry["value"])


def outbox_fields(messages: list[OutboxMessage]) -> Doc:
    """Fields to put into a new document."""
    return {OUTBOX: [m.as_doc() for m in messages], PENDING: bool(messages)}


def outbox_update(messages: list[OutboxMessage]) -> Doc:
    """Update operators appending events to an existing document."""
    return {
        "$push": {OUTBOX: {"$each": [m.as_doc() for m in messages]}},
        "$set": {PENDING: True},
    }


def queued_fields(messages: list[OutboxMessage]) -> Doc:
    """Fields of a new document whose events go into the queue (`queue_entries`): the
    document keeps them for replay from the start (a replay may then publish one that the
    relay has not yet: consumers de-duplicate)."""
    return {OUTBOX: [], PENDING: False, PUBLISHED: [m.as_doc() for m in messages]}


def queue_entries(messages: list[OutboxMessage]) -> list[Doc]:
    """Queue documents for `messages`, in order (an ObjectId ``_id`` orders the queue)."""
    return [{"_id": ObjectId(), **m.as_doc()} for m in messages]


def queue_for(collection: AsyncCollection[Doc]) -> AsyncCollection[Doc]:
    """The queue collection that belongs to `collection` (same database)."""
    return collection.database[collection.name + QUEUE_SUFFIX]


async def ensure_queue(collection: AsyncCollection[Doc]) -> None:
    """Create `collection`'s queue up front: a transaction may not create a collection."""
    with contextlib.suppress(CollectionInvalid):  # it exists
        await collection.database.create_collection(queue_for(collection).name)


async def insert_queued(
    collection: AsyncCollection[Doc],
    items: list[tuple[Doc, list[OutboxMessage]]],
    unique_field: str = "_id",
) -> dict[int, Doc]:
    """Insert each new document with its events queued, all in one transaction.

    A document that a unique index refuses (a duplicate) is left out with its events, and
    the others are stored: the answer maps the refused items' positions to their write
    errors (code 11000; ``keyPattern`` names the index). A transaction stops at its first
    refused write, so after one refusal a single query on `unique_field` (the index
    duplicates are expected on, a scalar or an array field) finds the batch's other
    collisions before the next attempt. A write conflict with another transaction is
    waited out by `in_transaction`.
    """
    failed: dict[int, Doc] = {}
    remaining = list(range(len(items)))
    queue = queue_for(collection)
    checked = False
    while remaining:
        docs = [items[i][0] for i in remaining]
        entries = [e for i in remaining for e in queue_entries(items[i][1])]

        async def write(
            session: AsyncClientSession, docs: list[Doc] = docs, entries: list[Doc] = entries
        ) -> None:
            await collection.insert_many(docs, ordered=False, session=session)
            if entries:
                await queue.insert_many(entries, session=session)

        try:
            await in_transaction(collection.database.client, write)
            return failed
        except BulkWriteError as exc:
            if not duplicate_keys_only(exc):
                raise
            for error in exc.details["writeErrors"]:
                failed[remaining[error["index"]]] = error
        if not checked:
            checked = True
            failed.update(await _collisions(collection, items, remaining, failed, unique_field))
        remaining = [i for i in remaining if i not in failed]
    return failed


TRANSACTION_PATIENCE = 10.0  # seconds a transaction is run again after write conflicts


_T = TypeVar("_T")


async def in_transaction(
    client: AsyncMongoClient[Doc], write: Callable[[AsyncClientSession], Awaitable[_T]]
) -> _T:
    """Run `write` in one transaction, commit it and return what `write` returned.

    A transaction the database aborted for a conflict (label ``TransientTransactionError``:
    another transaction holds one of the same keys, e.g. a retry of the same submission
    written by the other writer or another replica) is run again after a short, growing
    pause, for up to `TRANSACTION_PATIENCE` seconds: once the other one commits, this one
    sees a duplicate; if it aborts, this one goes through. A database that cannot be reached
    raises at once, as a single write would (the channel gets UNAVAILABLE and retries with
    its idempotency key; a consumer retries the batch): the driver's ``with_transaction``
    would keep trying for two minutes while callers wait.

    `write` is run again only after an attempt the database aborted, so it need not be
    idempotent. A commit whose outcome is unknown (label ``UnknownTransactionCommitResult``:
    the connection failed or the write concern timed out during the commit, after the
    driver's own single retry of the commit) is raised, neither committed again nor run
    again: the caller finds out what was stored when it retries, as after any failed write.
    """
    deadline = time.monotonic() + TRANSACTION_PATIENCE
    pause = 0.005
    while True:
        async with client.start_session() as session:
            await session.start_transaction()
            try:
                result = await write(session)
                await session.commit_transaction()
                return result
            except PyMongoError as exc:
                if session.in_transaction:
                    with contextlib.suppress(PyMongoError):
                        await session.abort_transaction()
                if not write_conflict(exc) or time.monotonic() + pause > deadline:
                    raise
        await asyncio.sleep(pause * (0.5 + random.random()))  # noqa: S311 - jitter
        pause = min(pause * 2, 0.25)


async def _collisions(
    collection: AsyncCollection[Doc],
    items: list[tuple[Doc, list[OutboxMessage]]],
    remaining: list[int],
    failed: dict[int, Doc],
    field: str,
) -> dict[int, Doc]:
    """The items whose `field` value(s) a stored document already holds."""

    def values(doc: Doc) -> list[Any]:
        value = doc.get(field)
        return list(value) if isinstance(value, list) else [value]

    owners: dict[Any, int] = {}
    for i in remaining:
        if i not in failed:
            for value in values(items[i][0]):
                owners.setdefault(value, i)
    if not owners:
        return {}
    found: dict[int, Doc] = {}
    stored = collection.find({field: {"$in": list(owners)}}, {field: 1})
    async for doc in stored:
        for value in values(doc):
            if value in owners:
                error = {"code": 11000, "keyPattern": {field: 1}, "errmsg": "duplicate key"}
                found[owners[value]] = error
    return found


def merge_updates(*updates: Doc) -> Doc:
    merged: dict[str, dict[str, Any]] = {}
    for update in updates:
        for op, fields in update.items():
            merged.setdefault(op, {}).update(fields)
    return merged


class Publisher(Protocol):
    async def publish_many(self, messages: list[OutboxMessage]) -> None: ...


async def publish_counted(publisher: Publisher, messages: list[OutboxMessage]) -> None:
    """Publish `messages` and count them by topic (``lapor_outbox_published_total``)."""
    await publisher.publish_many(messages)
    for message in messages:
        OUTBOX_PUBLISHED.labels(topic=message.topic).inc()


class LeaseUnknown(RuntimeError):
    """The relay could not tell whether it is the active one: the lease check failed."""


async def active(lease: Lease | None, queues: list[str]) -> bool:
    """Whether a relay with `lease` (None: always active) may publish now. A relay standing
    by shows its `queues` as empty (``lapor_outbox_oldest_pending_seconds`` 0: the active
    process reports their age). A lease check the database failed raises `LeaseUnknown`
    once our lease has run out, so the round counts as failed (the relay cannot work
    without its database anyway)."""
    if lease is None or await lease.held():
        return True
    if lease.error is not None:
        raise LeaseUnknown(f"lease {lease.name} could not be checked") from lease.error
    for queue in queues:
        OUTBOX_OLDEST.labels(queue=queue).set(0)
    return False


#: An active relay whose rounds have failed for this many TTLs in a row steps down.
STEP_DOWN_AFTER = 2


class Failing:
    """How long the rounds of one relay loop have failed in a row while it held its lease.

    A round still running after a TTL is stopped and counts as failed (a publish that hangs:
    the producer retries until a broker answers). Past `STEP_DOWN_AFTER` TTLs (this process
    cannot reach the broker, its producer is broken) the relay steps down
    (`Lease.step_down`): another replica, which may reach the broker, takes the lease over,
    and this one does not take it back for a TTL. When every replica fails (the broker is
    down), the lease then moves every 2 to 3 TTLs, not on every round. Times come from the
    lease's clock; the bound on a round, from the event loop's."""

    def __init__(self, lease: Lease | None, name: str) -> None:
        self._lease = lease
        self._name = name
        self._since: datetime | None = None  # the start of the first failed round in a row

    async def round(self, work: Callable[[], Awaitable[int]]) -> int:
        """Run `work`, a round of the active relay, and return what it returned; raise what
        it raised, after stepping down once it has failed for long enough."""
        if self._lease is None:
            return await work()
        started = self._lease.clock.now()
        try:
            # Bounded: aiokafka's idempotent producer retries a send until a broker answers,
            # so a publish to a broker this process cannot reach never fails by itself, and
            # the keeper would renew the lease for it meanwhile. A round still running after
            # a TTL (of the event loop's time) is a failed round. Cancelling it part-way is
            # safe: entries it published but had not yet deleted or marked stay pending and
            # are published again later, and a cancelled send the producer still delivers
            # in the background is one more copy: consumers drop duplicates on the event id.
            async with asyncio.timeout(self._lease.ttl.total_seconds()):
                result = await work()
        except Exception:
            await self._failed(self._lease, started)
            raise
        self._since = None
        return result

    def standing_by(self) -> None:
        """A round that found the lease held elsewhere: a later failure starts a new count."""
        self._since = None

    async def _failed(self, lease: Lease, started: datetime) -> None:
        self._since = self._since or started
        failing = lease.clock.now() - self._since
        if failing < lease.ttl * STEP_DOWN_AFTER:
            return
        self._since = None
        if lease.holding:
            log.warning(
                f"stepping down: {self._name} failing for {failing.total_seconds():.0f} s",
                extra={"lease": lease.name},
            )
            await lease.step_down()


class OutboxRelay:
    def __init__(
        self,
        collections: list[AsyncCollection[Doc]],
        publisher: Publisher,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        queues: list[AsyncCollection[Doc]] | None = None,
        lease: Lease | None = None,
    ) -> None:
        self._collections = collections
        self._queues = queues or []
        for queue in self._queues:  # the series exist from the start
            OUTBOX_OLDEST.labels(queue=queue.name).set(0)
        OUTBOX_LAST_ROUND.set_to_current_time()
        self._publisher = publisher
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        #: Only the holder publishes (None: this relay always does, e.g. a single process).
        self.lease = lease
        self._failing = Failing(lease, "outbox relay")
        self._wakeup = asyncio.Event()
        self.replay_on_start = False
        self.full = False  # the last round read a full batch: more may be waiting

    def wake(self) -> None:
        """A writer in this process stored events. A relay standing by is not woken: the
        active one, in another process, takes them at its next poll."""
        if self.lease is None or self.lease.holding:
            self._wakeup.set()

    async def run(self, stop: asyncio.Event, keeper: bool = True) -> None:
        """Relay until `stop`, with the lease's keeper beside the loop (`keeper` False: the
        caller runs it, as sla's relay does for the lease its two loops share)."""
        if self.replay_on_start:
            # Not gated by the lease: a replay is an operator's one-off in its own process
            # (or the embedded stack's single one), beside the active relay.
            await self.replay()
            # Cleared once done: a replay that failed part-way (the broker timed out) runs
            # again, from the start, when the runtime restarts this worker.
            self.replay_on_start = False
        # Stopped or cancelled (shutdown): hand over at once instead of after the TTL. Not
        # after a crash: the runtime restarts this worker a second later and it carries on.
        await run_holding(
            self.lease,
            stop,
            relay_loop(
                stop,
                self.relay_once,
                self._wakeup,
                self._poll_interval,
                "outbox relay",
                more=lambda: self.full,
            ),
            keeper=keeper,
        )

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
                    batch.append(OutboxMessage.from_doc(e))
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
        """One round: publish what is pending, then mark (or delete) it. Returns the number
        of events published; records the round's end and each queue's oldest entry's age
        (for the alert on an outbox that falls behind or a relay that stopped). A relay
        standing by (another process holds its lease) publishes nothing and reports no
        more waiting; an active one that keeps failing steps down (`Failing`)."""
        published = 0
        if await active(self.lease, [q.name for q in self._queues]):
            published = await self._failing.round(self._round)
        else:
            self._failing.standing_by()
            self.full = False
        OUTBOX_LAST_ROUND.set_to_current_time()
        return published

    async def _round(self) -> int:
        # In-document events are read before the queues and published after them: an event
        # read here belongs to a document whose queued first event was committed earlier,
        # so it is in this round's queue batch unless that batch is full.
        pending = [
            (c, await c.find({PENDING: True}, {OUTBOX: 1}).to_list(self._batch_size))
            for c in self._collections
        ]
        self.full = any(len(docs) == self._batch_size for _, docs in pending)
        total = 0
        drained = True
        for queue in self._queues:
            entries = await queue.find({}).sort("_id", 1).to_list(self._batch_size)
            waited = time.time() - entries[0]["_id"].generation_time.timestamp() if entries else 0
            OUTBOX_OLDEST.labels(queue=queue.name).set(max(0.0, waited))
            if not entries:
                continue
            messages = [OutboxMessage.from_doc(e) for e in entries]
            await publish_counted(self._publisher, messages)
            await queue.delete_many({"_id": {"$in": [e["_id"] for e in entries]}})
            total += len(messages)
            drained = drained and len(entries) < self._batch_size
        if not drained:
            self.full = True
            return total  # the next round, at once, takes more of the queue first
        for collection, docs in pending:
            if not docs:
                continue
            messages = [OutboxMessage.from_doc(e) for doc in docs for e in doc.get(OUTBOX, [])]
            await publish_counted(self._publisher, messages)
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


FAILURE_LOG_EVERY = 60  # failures of a relay between two log lines while it keeps failing


async def relay_loop(
    stop: asyncio.Event,
    relay_once: Callable[[], Awaitable[int]],
    wakeup: asyncio.Event,
    poll_interval: float,
    name: str,
    more: Callable[[], bool],
) -> None:
    """Run `relay_once` until `stop`: again at once while events may be left (`more`: the
    last round took a full batch somewhere), else after `wakeup` is set (a writer stored
    events) or `poll_interval` passed. At low rates a round then costs its reads once, not
    twice (the second, empty round).

    After a failure (the broker or the database away), again after a pause growing from
    0.5 s to 5 s. The first failure of a run is logged with its traceback, then one line
    every `FAILURE_LOG_EVERY` failures, and one when the relay works again: an outage of an
    hour is a few dozen lines, not thousands of tracebacks (the count is in
    ``lapor_outbox_relay_errors_total``)."""
    failures = 0
    while not stop.is_set():
        # Cleared before the round reads: a writer that stores during the round sets it
        # again, so the wait below ends at once and the next round takes its events.
        wakeup.clear()
        try:
            await relay_once()
        except Exception as exc:
            OUTBOX_RELAY_ERRORS.inc()
            failures += 1
            if failures == 1:
                log.error(f"{name} failed; retrying", exc_info=loggable(exc))
            elif failures % FAILURE_LOG_EVERY == 0:
                log.warning(
                    f"{name} still failing; retrying",
                    extra={"failures": failures, "error": type(exc).__name__},
                )
            if await sleep_until_or_stop(stop, doubling(0.5, failures - 1, 5.0)):
                return
            continue
        if failures:
            log.info(f"{name} works again", extra={"failures": failures})
            failures = 0
        if not more():
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

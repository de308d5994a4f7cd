"""The SLA service's outbox relay.

Two outboxes, both written in the same write (or transaction) as the state they follow from:

* each report's own document (``_outbox``): the events of the use cases driven by the case's
  actions and the officers (``deadlines_set``), relayed by the shared ``OutboxRelay``; a
  routed report's first ``deadlines_set`` goes into that relay's queue (``clocks_outbox``)
  in the transaction that starts its clocks, so publishing it rewrites no report;
* ``sla_outbox``: one document per sweep write (up to a few hundred reports), inserted in the
  same transaction as those reports' compare-and-set updates, holding the events of the
  transitions that write made happen (warnings, breaches, escalations, auto-close due).
  Publishing a thousand escalations then costs a few marks instead of a thousand.

Nothing orders the two relays, so a report's events can reach consumers out of order (a
breach waiting in ``sla_outbox`` published after a later ``deadlines_set``). Each SlaEvent
carries ``clocks_version``, the report document's version its write left, and consumers drop
an event older than one they applied (docs/sla.md, "Ordering of SLA events").

The batch relay publishes a pending batch document's events, then marks it published with a
compare-and-set (``pending: true`` -> ``false``): a relay killed in between, or two relays at
once, can publish a batch twice, never lose one; consumers de-duplicate on the event id.
Published batches are kept (``published_at``, expired after ``KEEP_DAYS``) so ``replay``
can publish them again to a broker that lost its data.

Both relays share one lease (services/common/lease.py): one sla process publishes both
outboxes and the others stand by. One lease rather than one each: a single process to look
for (``lapor_lease_held{lease="outbox-relay"}``), one lease document read per poll by each
process standing by, and the two loops hand over together at shutdown. One keeper renews it
for both, and either loop failing for two TTLs steps down for both (services/common/outbox.py,
``Failing``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from pymongo.asynchronous.collection import AsyncCollection

from services.common.lease import Lease, run_holding
from services.common.metrics import OUTBOX_OLDEST
from services.common.mongo import Doc, ensure_ttl_index
from services.common.outbox import (
    Failing,
    OutboxMessage,
    OutboxRelay,
    Publisher,
    active,
    publish_counted,
    queue_for,
    relay_loop,
)

log = logging.getLogger(__name__)

BATCH_OUTBOX = "sla_outbox"
#: Days a published batch is kept for a replay (LAPOR_SLA_OUTBOX_KEEP_DAYS): at least the
#: retention of lapor.escalations, whose events the batches carry (with title and body).
KEEP_DAYS = 30


def batch_outbox_of(cases: AsyncCollection[Doc]) -> AsyncCollection[Doc]:
    return cases.database[BATCH_OUTBOX]


def messages_of(doc: Doc) -> list[OutboxMessage]:
    return [OutboxMessage.from_doc(e) for e in doc["events"]]


class SlaRelay:
    def __init__(
        self,
        cases: AsyncCollection[Doc],
        publisher: Publisher,
        batch_size: int = 200,
        batches: int = 20,
        poll_interval: float = 0.5,
        keep_days: int = KEEP_DAYS,
        lease: Lease | None = None,
    ) -> None:
        self.documents = OutboxRelay(
            [cases],
            publisher,
            batch_size=batch_size,
            poll_interval=poll_interval,
            queues=[queue_for(cases)],
            lease=lease,
        )
        self.lease = lease  # the documents' relay's too: both loops run in its holder
        self._failing = Failing(lease, "batch outbox relay")
        OUTBOX_OLDEST.labels(queue=BATCH_OUTBOX).set(0)  # the series exists from the start
        self.outbox = batch_outbox_of(cases)
        self._publisher = publisher
        self._batches = batches
        self._poll_interval = poll_interval
        self._keep_days = keep_days
        self._wakeup = asyncio.Event()
        self._full = False  # the last round read a full set of batches
        self.replay_on_start = False
        self._replay_batches = False  # the batch outbox still to be replayed

    def wake_documents(self) -> None:
        """The document relay only: a report's own events or its queued first deadlines
        (routed reports, case actions, officers), none in ``sla_outbox``."""
        self.documents.wake()

    def wake_batches(self) -> None:
        """The batch relay only: a sweep wrote ``sla_outbox`` batches (not while standing
        by: the active relay takes them at its next poll)."""
        if self.lease is None or self.lease.holding:
            self._wakeup.set()

    async def ensure_indexes(self) -> None:
        await self.outbox.create_index("pending")
        await ensure_ttl_index(self.outbox, "published_at", self._keep_days * 86400)

    async def relay_batches_once(self) -> int:
        if not await active(self.lease, [BATCH_OUTBOX]):
            self._failing.standing_by()
            self._full = False
            return 0
        return await self._failing.round(self._relay_batches)

    async def _relay_batches(self) -> int:
        docs = await self.outbox.find({"pending": True}).sort("at", 1).to_list(self._batches)
        oldest = docs[0]["at"].replace(tzinfo=UTC) if docs else None  # stored in UTC
        waited = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        OUTBOX_OLDEST.labels(queue=BATCH_OUTBOX).set(max(0.0, waited))
        self._full = len(docs) == self._batches
        if not docs:
            return 0
        messages = [m for doc in docs for m in messages_of(doc)]
        await publish_counted(self._publisher, messages)
        await self.outbox.update_many(
            {"_id": {"$in": [d["_id"] for d in docs]}, "pending": True},
            {"$set": {"pending": False, "published_at": datetime.now(UTC)}},
        )
        return len(messages)

    async def relay_once(self) -> int:
        """One round of both outboxes (tests; the service runs them as two loops)."""
        return await self.relay_batches_once() + await self.documents.relay_once()

    async def replay_batches(self) -> int:
        total = 0
        async for doc in self.outbox.find({"pending": False}).sort("at", 1):
            messages = messages_of(doc)
            await self._publisher.publish_many(messages)
            total += len(messages)
        log.info("sla batch outbox replayed", extra={"events": total})
        return total

    async def run(self, stop: asyncio.Event) -> None:
        if self.replay_on_start:  # each loop clears its own part once it has replayed it
            self.documents.replay_on_start = True
            self._replay_batches = True
            self.replay_on_start = False
        # One loop failing stops the other, so the runtime's restart runs exactly two again.
        # Both stopped or cancelled (shutdown): the documents' relay released the lease as it
        # stopped; again, in case the batch loop's last round renewed it meanwhile.
        # One keeper for the lease both loops share.
        await run_holding(
            self.lease, stop, self.documents.run(stop, keeper=False), self._run_batches(stop)
        )

    async def _run_batches(self, stop: asyncio.Event) -> None:
        if self._replay_batches:
            await self.replay_batches()
            self._replay_batches = False
        await relay_loop(
            stop,
            self.relay_batches_once,
            self._wakeup,
            self._poll_interval,
            "batch outbox relay",
            more=lambda: self._full,
        )

"""Rate-limit counters in MongoDB, shared by every intake replica.

Fixed-window counters: one document per (limit, key, window), ``$inc``-ed with an upsert;
every replica counts into the same documents. A counter's id starts with the end of its
window (``<epoch seconds, 12 digits>:<limit>:<key>``), so ended counters are one range of
the ``_id`` index and are deleted by range every minute: no further index to maintain.
Each replica decides at once from what it knows: the counts it last read from MongoDB plus
its own increments since. A background sync, every ``sync_interval`` seconds, writes its
increments (one ``bulk_write``) and reads the counters back (one ``find``), so a check costs
no database round trip on the request's path, and the database sees two operations per
interval, however many submissions. A single replica enforces a limit exactly; with N
replicas a key can overshoot by what the other replicas let through within one interval
(or before a new key's first sync). Refused attempts count too: a client that keeps
hammering stays refused until the window ends. A fixed window lets a burst of up to twice
a limit through around a window boundary: the limits brake abuse, they are not quotas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from services.common.clock import Clock
from services.common.errors import ResourceExhausted
from services.common.mongo import Doc, duplicate_keys_only
from services.intake.limits import Hit

log = logging.getLogger(__name__)
PURGE_INTERVAL_SECONDS = 60.0


class MongoRateLimiter:
    def __init__(
        self, collection: AsyncCollection[Doc], clock: Clock, sync_interval: float = 0.1
    ) -> None:
        self._collection = collection
        self._clock = clock
        self._interval = sync_interval
        self._known: dict[str, int] = {}  # counts read from MongoDB (all replicas)
        self._unsent: dict[str, int] = {}  # this replica's increments not yet written
        self._inflight: dict[str, int] = {}  # being written, not yet read back
        self._ends: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    async def ensure_indexes(self) -> None:
        """Nothing beyond ``_id``: ended counters are found by their id."""

    async def purge(self) -> int:
        """Delete the counters whose window has ended."""
        ended = _prefix(self._clock.now()) + ";"  # ";" sorts after ":": ends up to now
        result = await self._collection.delete_many({"_id": {"$lt": ended}})
        return result.deleted_count

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.sync()

    async def hit(self, hits: list[Hit]) -> None:
        hits = [h for h in hits if h.limit.count > 0]
        if not hits:
            return
        if self._task is None:
            self._task = asyncio.create_task(self._sync_forever())
        now = self._clock.now()
        refused: tuple[Hit, datetime] | None = None
        for h in hits:
            _index, end = h.limit.window_of(now)
            counter = f"{_prefix(end)}:{h.limit.name}:{h.key}"
            self._ends[counter] = end
            self._unsent[counter] = self._unsent.get(counter, 0) + 1
            if self.count(counter) > h.limit.count and refused is None:
                refused = (h, end)
        if refused is not None:
            h, end = refused
            raise ResourceExhausted(
                f"rate limit: at most {h.limit.count} submissions per {h.limit.name} "
                f"every {int(h.limit.window.total_seconds())} s",
                max((end - now).total_seconds(), 1.0),
            )

    def count(self, counter: str) -> int:
        return (
            self._known.get(counter, 0)
            + self._inflight.get(counter, 0)
            + self._unsent.get(counter, 0)
        )

    async def sync(self) -> None:
        """Write this replica's increments and read the counters back."""
        unsent, self._unsent = self._unsent, {}
        self._inflight = unsent
        if not unsent:
            self._forget_ended()
            return
        ops = [
            UpdateOne(
                {"_id": counter},
                {"$inc": {"n": n}},
                upsert=True,
            )
            for counter, n in unsent.items()
        ]
        try:
            try:
                await self._collection.bulk_write(ops, ordered=False)
            except BulkWriteError as exc:  # two replicas upserting one new counter at once
                if not duplicate_keys_only(exc):
                    raise  # e.g. write concern unconfirmed: counted again next round (stricter)
                errors = exc.details["writeErrors"]
                await self._collection.bulk_write([ops[e["index"]] for e in errors], ordered=False)
        except BaseException:
            for counter, n in unsent.items():  # not written: keep them for the next round
                self._unsent[counter] = self._unsent.get(counter, 0) + n
            self._inflight = {}
            raise
        try:
            docs = await self._collection.find({"_id": {"$in": list(unsent)}}).to_list(None)
        finally:
            for counter, n in unsent.items():  # written: counted in MongoDB from now on
                self._known[counter] = self._known.get(counter, 0) + n
            self._inflight = {}
        for doc in docs:  # increments made meanwhile are still in _unsent: no double count
            self._known[doc["_id"]] = int(doc["n"])
        self._forget_ended()

    def _forget_ended(self) -> None:
        now = self._clock.now()
        for counter in [c for c, end in self._ends.items() if end <= now]:
            if counter not in self._unsent:
                self._ends.pop(counter, None)
                self._known.pop(counter, None)

    async def _sync_forever(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(self._interval)
            rounds += 1
            try:
                await self.sync()
                if rounds % max(int(PURGE_INTERVAL_SECONDS / self._interval), 1) == 0:
                    await self.purge()
            except Exception:  # noqa: BLE001 - the next round retries
                log.warning("could not sync rate-limit counters; retrying")


def _prefix(at: datetime) -> str:
    return f"{int(at.timestamp()):012d}"

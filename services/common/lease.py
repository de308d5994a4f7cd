"""A lease: one process of a service does a job the others stand by for.

Work that every replica could do but only one should (the outbox relay, which would publish
the same events once per replica; sla's deadline sweep, which would race itself) runs only
in the process that holds the job's lease. The lease is one document in the service's own
database, collection ``leases``::

    {_id: <lease name>, holder: <instance id>, until: <datetime>, since: <datetime>}

The holder renews it (``until`` = now + TTL) whenever it checks with less than half the TTL
left, so a working holder keeps it for good. Its job checks it as it goes (before each
round, batch or write), and a keeper (`Lease.keep`) checks it every quarter of the TTL
beside the job, so a step of the job that outlasts what is left of the lease (a slow
publish, a slow check before a sweep's batch) does not hand the lease over; a relay bounds
its rounds itself, so that a relay stuck for good does not keep the lease
(services/common/outbox.py, ``Failing``). A holder that stops (killed, paused, cut off from
the database) stops renewing, and another process takes the lease once ``until`` has
passed: failover takes up to the TTL. A holder that shuts down deletes the document
(`Lease.release`; `handed_over` around a worker, also when it is cancelled), and another
takes over at its next check; one that cannot do the job steps down (`Lease.step_down`:
releases it and does not take it again for a TTL), so that another process gets to try.

Times come from the injected clock and are compared across processes: the replicas' clocks
must agree to well within the TTL (NTP on the nodes). A clock ahead by more than the TTL
takes a lease that is still held, and two processes then do the job at once for a while:
the work guarded by a lease must stay safe (at least once, idempotent, compare-and-set)
when that happens, and it is. The lease only saves the duplicated work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime, timedelta

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from services.common.clock import Clock, SystemClock, sleep_until_or_stop
from services.common.metrics import LEASE_HELD
from services.common.mongo import Doc
from services.common.settings import CommonSettings

log = logging.getLogger(__name__)

LEASES = "leases"
#: Default time a lease lasts without renewal: the failover time (LAPOR_LEASE_TTL_SECONDS).
DEFAULT_TTL = timedelta(seconds=10)

#: Seconds a worker's release of its lease as it ends may take (`Lease.hand_over`).
RELEASE_TIMEOUT = 2.0

_instance: tuple[int, str] | None = None


def instance_id() -> str:
    """This process's holder id: host name, process id and a random suffix (a restarted
    process, even with the same pid in a new container, is a new holder)."""
    global _instance
    pid = os.getpid()
    if _instance is None or _instance[0] != pid:
        _instance = (pid, f"{socket.gethostname()}:{pid}:{secrets.token_hex(4)}")
    return _instance[1]


def _millis(when: datetime) -> datetime:
    """`when` as the database stores it (milliseconds), so both sides compare the same."""
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


class Lease:
    """Lease `name` in `db` for `holder` (by default this process)."""

    def __init__(
        self,
        db: AsyncDatabase[Doc],
        name: str,
        clock: Clock,
        ttl: timedelta = DEFAULT_TTL,
        holder: str | None = None,
        keep_every: float | None = None,
    ) -> None:
        """`keep_every`: seconds between the keeper's checks (`keep`; by default a quarter of
        the TTL: tests on a manual clock pass a short one)."""
        if ttl <= timedelta(0):
            raise ValueError(f"lease {name}: the TTL must be positive, not {ttl}")
        self.name = name
        self.holder = holder or instance_id()
        self._leases: AsyncCollection[Doc] = db[LEASES]
        self._clock = clock
        self._ttl = ttl
        self._keep_every = ttl.total_seconds() / 4 if keep_every is None else keep_every
        self._until: datetime | None = None  # our lease's end, as we last wrote it
        self._resting_until: datetime | None = None  # stepped down: not taken before this
        self._lock = asyncio.Lock()  # one check at a time (sla's two relay loops share one)
        #: The database error of the last check, None when it got an answer.
        self.error: PyMongoError | None = None
        self._held = False  # what the gauge and the log last said
        LEASE_HELD.labels(lease=name).set(0)  # the series exists from the start

    @property
    def ttl(self) -> timedelta:
        return self._ttl

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def keep_every(self) -> float:
        """Seconds between the keeper's checks: also how often a job that waits for the
        lease should ask for it."""
        return self._keep_every

    @property
    def holding(self) -> bool:
        """Whether we held the lease at the last check and it has not run out since (no
        database call)."""
        return self._until is not None and self._clock.now() < self._until

    async def held(self) -> bool:
        """Whether this process holds the lease now; takes or renews it when it may.

        No database call while we hold it with more than half the TTL left. Otherwise one
        read, and a conditional write only when the lease is ours, has run out or does not
        exist: a process standing by makes no write while another holds it. A database
        error is not raised (`error` keeps it): we still hold the lease until our own
        ``until`` has passed, and not after. For a TTL after `step_down`: False, with no
        database call."""
        return await self._check(take=True)

    async def keep(self, stop: asyncio.Event) -> None:
        """Renew the lease while this process holds it, until `stop`: a check every quarter
        of the TTL, run beside the job, so the lease outlives a step of the job that takes
        longer than the TTL. It never takes a lease it does not hold (the job's own checks
        do), nor one given up meanwhile (`release`, `step_down`)."""
        while not await sleep_until_or_stop(stop, self._keep_every):
            if self.holding:
                await self._check(take=False)

    async def _check(self, take: bool) -> bool:
        """`held`; with `take` False, only while we hold it (the keeper)."""
        if self._fresh(self._clock.now()):
            return True
        async with self._lock:
            now = self._clock.now()
            if self._fresh(now):
                return True
            if self._resting_until is not None and now < self._resting_until:
                return False  # stepped down (also while we waited)
            if not take and not self.holding:  # released or lost while we waited
                return False
            try:
                held = await self._take(now)
            except PyMongoError as exc:
                if self.error is None:
                    log.warning(
                        "lease check failed; holding only until the lease runs out",
                        extra={"lease": self.name, "error": type(exc).__name__},
                    )
                self.error = exc
                held = self._until is not None and now < self._until
            else:
                if self.error is not None:
                    log.info("lease check works again", extra={"lease": self.name})
                self.error = None
            if not held:
                self._until = None
            self._report(held)
            return held

    async def release(self) -> None:
        """Give the lease up (clean shutdown): delete its document if we hold it, so another
        process takes over at its next check instead of after the TTL."""
        async with self._lock:
            self._until = None
            # A check's error is about a lease we no longer hold: kept, it would make every
            # round of a step-down's rest fail (`LeaseUnknown`) with no database call made.
            self.error = None
            try:
                result = await self._leases.delete_one({"_id": self.name, "holder": self.holder})
            except PyMongoError as exc:
                log.warning(
                    "could not release the lease; another process takes it when it runs out",
                    extra={"lease": self.name, "error": type(exc).__name__},
                )
            else:
                if result.deleted_count:
                    log.info("lease released", extra={"lease": self.name})
            self._report(False, quiet=True)

    async def step_down(self) -> None:
        """Give the lease up because this process cannot do the job (its relay keeps
        failing): `release` it, and answer False without a database call for one TTL, so
        another process takes it over and this one does not take it straight back."""
        self._resting_until = self._clock.now() + self._ttl
        await self.release()

    async def hand_over(self) -> None:
        """`release` as the job's worker ends (stopped, or cancelled by a shutdown that
        stopped waiting for it), within `RELEASE_TIMEOUT`: a database that does not answer
        cannot hold the shutdown up (the lease then runs out within the TTL)."""
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT):
                await self.release()
        except TimeoutError:
            log.warning(
                "could not release the lease in time; another process takes it when it runs out",
                extra={"lease": self.name},
            )

    def _fresh(self, now: datetime) -> bool:
        return self._until is not None and self._until - now > self._ttl / 2

    async def _take(self, now: datetime) -> bool:
        doc = await self._leases.find_one({"_id": self.name})
        ours = doc is not None and doc.get("holder") == self.holder
        runs_until = doc.get("until") if doc is not None else None
        if not ours and isinstance(runs_until, datetime) and _aware(runs_until) > now:
            return False  # another holder's lease runs: no write
        until = _millis(now + self._ttl)
        since = doc.get("since", now) if doc is not None and ours else now
        try:
            # Ours, run out or missing: a holder that took it since our read makes the
            # filter miss, and the upsert then hits the unique _id. An ``until`` removed or
            # set to null by hand (None matches both) counts as run out, as above.
            result = await self._leases.update_one(
                {
                    "_id": self.name,
                    "$or": [
                        {"holder": self.holder},
                        {"until": {"$lte": now}},
                        {"until": None},
                    ],
                },
                {"$set": {"holder": self.holder, "until": until, "since": since}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        if not result.matched_count and result.upserted_id is None:
            return False
        self._until = until
        return True

    def _report(self, held: bool, quiet: bool = False) -> None:
        if held == self._held:
            return
        self._held = held
        LEASE_HELD.labels(lease=self.name).set(1 if held else 0)
        if not quiet:
            log.info("lease taken" if held else "lease lost", extra={"lease": self.name})


@contextlib.asynccontextmanager
async def handed_over(lease: Lease | None) -> AsyncIterator[None]:
    """Around a worker that does `lease`'s job: hand the lease over (`Lease.hand_over`) when
    the worker stops, or is cancelled (a shutdown that stopped waiting), so another process
    takes over at once instead of after the TTL. Not when it crashed: the runtime restarts
    it a second later and it carries on as the holder."""
    if lease is None:
        yield
        return
    try:
        yield
    except BaseException as exc:
        if not isinstance(exc, Exception):  # cancelled
            await lease.hand_over()
        raise
    await lease.hand_over()


def service_lease(
    db: AsyncDatabase[Doc], name: str, settings: CommonSettings, clock: Clock | None = None
) -> Lease:
    """Lease `name` of a service in its database `db`, as its settings say: lasting
    ``LAPOR_LEASE_TTL_SECONDS`` without renewal, held as ``LAPOR_INSTANCE_ID`` (unset: a
    name of this process's own), on `clock` (the system clock by default)."""
    return Lease(
        db,
        name,
        clock or SystemClock(),
        timedelta(seconds=settings.lease_ttl_seconds),
        settings.instance_id,
    )


async def run_holding(
    lease: Lease | None,
    stop: asyncio.Event,
    *jobs: Coroutine[object, object, None],
    keeper: bool = True,
) -> None:
    """Run `jobs` (a worker doing `lease`'s job, each checking the lease itself) until they
    end, with the lease's keeper beside them until `stop` (`keeper` False: the caller runs
    it), and hand the lease over when they stop or are cancelled (`handed_over`). One job
    failing stops the others, so the runtime's restart runs them all again."""
    async with handed_over(lease), asyncio.TaskGroup() as tasks:
        if keeper and lease is not None:  # a step of a job may outlast the TTL
            tasks.create_task(lease.keep(stop))
        for job in jobs:
            tasks.create_task(job)

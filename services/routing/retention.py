"""What a closed case keeps only for a while: its published events (``_published``, up to 50,
kept for an outbox replay) and its text's fingerprint (word-bigram hashes, compared only with
reports received within 14 days of it, services/routing/domain/similarity.py). Both go
``LAPOR_ROUTING_CLOSED_TRIM_DAYS`` after the case was last written in a final state
(``closed_at``, case_store.py): its closure, or an event it published since (a refused
reporter action), so every event is kept that long after it was published. The default, 90
days, is longer than the 14-day similarity window, sla's 30-day replay of its own batches and
the longest an event can come back (about 60 days: a 30-day topic, then 30 days among the
dead letters), so no consumer can still need the events and no new report can be a
near-duplicate of the case; a setting under 60 days is refused. The case itself, its history
and its links to similar reports stay, and so do the applied event ids (``_applied``), which
keep consumed events from being applied twice."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from pymongo.asynchronous.collection import AsyncCollection

from services.common.clock import Clock, sleep_until_or_stop
from services.common.lease import Lease, run_holding
from services.common.mongo import Doc
from services.common.outbox import PENDING, PUBLISHED
from services.common.settings import Env, SettingsError
from services.common.status import FINAL_STATES
from services.routing.case_store import CLOSED_AT
from services.routing.metrics import CASES_TRIMMED

log = logging.getLogger(__name__)

TRIM_INTERVAL_SECONDS = 3600.0
#: The lease whose holder trims (services/common/lease.py): one routing replica, not each.
TRIM_LEASE = "routing-trim"
TRIM_BATCH = 500  # cases per write: a first trim of a national backlog goes in short writes
DEFAULT_TRIM_DAYS = 90
TRIM_DAYS_SETTING = "LAPOR_ROUTING_CLOSED_TRIM_DAYS"
#: The shortest trim: past the 14-day near-duplicate window and the about 60 days an event
#: can still come back (a 30-day topic, then 30 days among the dead letters).
MIN_TRIM_DAYS = 60
MAX_TRIM_DAYS = 36500
_TRIMMED = {PUBLISHED: "", "fingerprint": "", CLOSED_AT: ""}


def closed_trim_days(env: Env) -> int:
    """``LAPOR_ROUTING_CLOSED_TRIM_DAYS``: 0 (keep for good) or 60 to 36500 days."""
    days = env.integer(TRIM_DAYS_SETTING, DEFAULT_TRIM_DAYS, low=-(2**31), high=2**31)
    if days and not MIN_TRIM_DAYS <= days <= MAX_TRIM_DAYS:
        raise SettingsError(
            f"{TRIM_DAYS_SETTING}={days} is outside {MIN_TRIM_DAYS}..{MAX_TRIM_DAYS} (0 keeps "
            "them): a closed case's events can be needed for about 60 days (a 30-day topic, "
            "then the dead letters) and its fingerprint for 14"
        )
    return days


@dataclass
class ClosedCaseTrim:
    cases: AsyncCollection[Doc]
    clock: Clock
    keep: timedelta = timedelta(days=DEFAULT_TRIM_DAYS)  # 0: keep for good
    batch: int = TRIM_BATCH
    #: Only its holder trims (None: this process always does).
    lease: Lease | None = None

    async def trim(self) -> int:
        """Drop ``_published`` and ``fingerprint`` of the cases closed longer than `keep`
        ago, `batch` cases per write. A case whose events wait in its outbox is left for the
        next round: the relay would put them back into ``_published`` after publishing.
        Returns how many cases were trimmed; idempotent."""
        if self.keep <= timedelta(0):
            return 0
        due = {CLOSED_AT: {"$lt": self.clock.now() - self.keep}, PENDING: {"$ne": True}}
        trimmed = 0
        # No hint: unhinted, SecantusDB (0.7) looks up the closed_at range; hinted, it reads
        # the whole index (every case closed and not yet trimmed) for each batch. Its explain
        # reports a COLLSCAN for this two-field filter all the same: its explain, not its plan.
        while True:
            found = await self.cases.find(due, {"_id": 1}).limit(self.batch).to_list(self.batch)
            if not found:
                break
            ids = [d["_id"] for d in found]
            result = await self.cases.update_many(
                {"_id": {"$in": ids}, **due}, {"$unset": _TRIMMED}
            )
            trimmed += result.modified_count
            if len(found) < self.batch:
                break
        if trimmed:
            CASES_TRIMMED.inc(trimmed)
            log.info("closed cases trimmed", extra={"cases": trimmed})
        return trimmed

    async def run(self, stop: asyncio.Event) -> None:
        """Trim at start and then every hour, in the holder of the `lease` only; a failed
        round waits for the next. The lease is checked every quarter of its TTL (and kept
        by its keeper through a long first trim), so another replica takes over soon after
        the holder stops, and trims at once; a clean stop, or a cancel at shutdown,
        releases it."""
        await run_holding(self.lease, stop, self._trims(stop))

    async def _trims(self, stop: asyncio.Event) -> None:
        last: float | None = None  # monotonic time of this process's last trim
        while True:
            if self.lease is not None and not await self.lease.held():
                last = None  # taken over: a new turn as holder trims at once
            elif last is None or time.monotonic() - last >= TRIM_INTERVAL_SECONDS:
                last = time.monotonic()
                await self._trim_logged()
            # Without a lease nothing needs asking between trims.
            wait = TRIM_INTERVAL_SECONDS if self.lease is None else self.lease.keep_every
            if await sleep_until_or_stop(stop, wait):
                return

    async def _trim_logged(self) -> None:
        try:
            await self.trim()
        except Exception as exc:  # noqa: BLE001 - next round
            log.warning("could not trim closed cases; retrying", extra={"error": repr(exc)[:200]})

    async def date_undated_closures(self) -> int:
        """Give cases that reached a final state before ``closed_at`` existed that field from
        their last change (``updated_at``: never before the closure), so the trim sees them.
        Cases trimmed already (nothing left to trim) are left alone. A backfill (run in the
        background after start); idempotent. Returns how many cases changed."""
        result = await self.cases.update_many(
            {
                "state": {"$in": [s.value for s in FINAL_STATES]},
                CLOSED_AT: {"$exists": False},
                "$or": [{PUBLISHED: {"$exists": True}}, {"fingerprint": {"$exists": True}}],
            },
            [{"$set": {CLOSED_AT: {"$ifNull": ["$updated_at", "$routed_at"]}}}],
        )
        return result.modified_count

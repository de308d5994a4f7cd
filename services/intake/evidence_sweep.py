"""The orphan sweep: evidence files stored in GridFS but never listed on their report.

An upload stores its file first and lists it on the report afterwards; an intake process
killed in between (or a listing that failed and whose clean-up failed too, or an upload
cancelled during its listing write, which may still land and so deletes nothing) leaves a
file that nobody can see. Every file is marked pending until it is listed. At start and then
every `interval`, each intake process looks at the files still pending whose upload date is
older than `grace` (by the injected clock): a file its report lists just loses the mark; any
other is deleted, chunks and files document. The grace must be longer than the longest
upload (a file is dated when it is started and again when it is finished). Several
replicas may sweep at once: each deletion is conditional, deleting twice is harmless, and
each file is counted once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from services.common.clock import Clock, sleep_until_or_stop
from services.common.settings import Env
from services.intake.metrics import EVIDENCE_ORPHANS_DELETED

log = logging.getLogger(__name__)

BATCH = 200  # files looked at per query
MAX_ROUNDS = 50  # queries per sweep at most; what is left waits for the next sweep


@dataclass(frozen=True)
class SweepSettings:
    grace: timedelta = timedelta(hours=1)
    interval_seconds: float = 600.0

    @classmethod
    def from_env(cls, env: Env) -> SweepSettings:
        grace = env.number("LAPOR_EVIDENCE_ORPHAN_GRACE_SECONDS", 3600.0, low=1.0, high=604800.0)
        return cls(
            grace=timedelta(seconds=grace),
            interval_seconds=env.number(
                "LAPOR_EVIDENCE_SWEEP_INTERVAL_SECONDS", 600.0, low=0.1, high=86400.0
            ),
        )


class OrphanPort(Protocol):
    async def pending_before(self, cutoff: datetime, limit: int) -> list[tuple[Any, str]]:
        """(file id, tracking id) of pending files dated before `cutoff`, oldest first."""
        ...

    async def listed_ids(self, tracking_id: str) -> set[str]: ...
    async def settle(self, file_id: Any) -> None:
        """Clear the pending mark of a file its report lists."""
        ...

    async def remove_orphan(self, file_id: Any, cutoff: datetime) -> bool:
        """Delete the file if it is still pending and dated before `cutoff`; True when this
        call deleted it."""
        ...


@dataclass
class OrphanSweep:
    store: OrphanPort
    clock: Clock
    settings: SweepSettings

    async def sweep_once(self) -> int:
        """One sweep over every overdue pending file; returns how many were deleted."""
        cutoff = self.clock.now() - self.settings.grace
        deleted = 0
        for _ in range(MAX_ROUNDS):
            batch = await self.store.pending_before(cutoff, BATCH)
            listed: dict[str, set[str]] = {}
            for file_id, tracking_id in batch:
                if tracking_id not in listed:
                    listed[tracking_id] = await self.store.listed_ids(tracking_id)
                if str(file_id) in listed[tracking_id]:
                    await self.store.settle(file_id)
                elif await self.store.remove_orphan(file_id, cutoff):
                    deleted += 1
                    EVIDENCE_ORPHANS_DELETED.inc()
            if len(batch) < BATCH:
                break
        if deleted:
            log.info("evidence orphans deleted", extra={"count": deleted})
        return deleted

    async def run(self, stop: asyncio.Event) -> None:
        """The intake worker: a sweep at start, then one every interval."""
        while not stop.is_set():
            try:
                await self.sweep_once()
            except Exception:  # noqa: BLE001 - the next round tries again
                log.warning("evidence orphan sweep failed; retrying next round", exc_info=True)
            if await sleep_until_or_stop(stop, self.settings.interval_seconds):
                return

"""The evidence orphan sweep against the real database process: a file stored but never
listed on its report (an intake process killed in between) is deleted, chunks and all, once
the grace period has passed on the injected clock; listed files, young files and running
uploads stay; two replicas sweeping at once delete and count each orphan once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.common.clock import ManualClock
from services.common.errors import Unavailable
from services.intake.evidence import EvidenceHandlers, EvidenceHeader, EvidenceLimits
from services.intake.evidence_store import GridFsEvidenceStore
from services.intake.evidence_sweep import OrphanSweep, SweepSettings
from services.intake.followup import hash_follow_up_code
from services.intake.reporter import ReporterHandlers
from services.intake.reporter_store import MongoReportRepository
from services.intake.reporter_wiring import verify_code

CODE = "7K3M-9QX2-DACB"
TID = "7K3M-9QX2-DAC"
OTHER = "PD9Z-5S2Z-JY0"
PDF = b"%PDF-1.4\n" + b"%" * 600_000 + b"\n%%EOF\n"  # three GridFS chunks
GRACE = SweepSettings(grace=timedelta(hours=1), interval_seconds=0.05)


async def chunks(data: bytes, size: int = 64 * 1024) -> Any:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def deleted_total() -> float:
    return REGISTRY.get_sample_value("lapor_intake_evidence_orphans_deleted_total") or 0.0


class Env:
    def __init__(self, db: Any) -> None:
        self.db = db
        self.clock = ManualClock()
        self.store = GridFsEvidenceStore(db, db["complaints"], self.clock)
        reporter = ReporterHandlers(
            MongoReportRepository(db["complaints"]), verify_code, lambda d: None, self.clock,
            str, 2,
        )  # fmt: skip
        self.handlers = EvidenceHandlers(reporter, self.store, self.clock, EvidenceLimits())

    async def report(self, tid: str) -> None:
        await self.db["complaints"].insert_one(
            {
                "_id": tid,
                "privacy": "anonymous",
                "state": "in_progress",
                "received_at": datetime(2026, 3, 1, tzinfo=UTC),
                "follow_up_codes": [hash_follow_up_code(CODE)],
            }
        )

    async def upload(self, tid: str, name: str = "surat.pdf") -> str:
        header = EvidenceHeader(tid, CODE, name, "application/pdf")
        return (await self.handlers.upload(header, chunks(PDF))).evidence_id

    async def orphan(self, tid: str, *, finished: bool = True) -> str:
        """What a process killed after storing a file (or in the middle of it) leaves."""
        f = await self.store.create(tid, "yatim.pdf", "application/pdf")
        async for c in chunks(PDF[:300_000]):
            await f.write(c)
        if finished:
            return await f.close()
        return str(f._id)

    async def files(self) -> set[str]:
        return {str(d["_id"]) async for d in self.db["evidence.files"].find({}, {"_id": 1})}

    async def chunk_owners(self) -> set[str]:
        return {str(i) for i in await self.db["evidence.chunks"].distinct("files_id")}


@pytest.fixture
async def env(db: Any) -> Env:
    e = Env(db)
    await e.store.ensure_indexes()
    await e.report(TID)
    await e.report(OTHER)
    return e


async def test_an_orphan_is_deleted_after_the_grace_period_and_listed_files_stay(
    env: Env,
) -> None:
    kept = await env.upload(TID)
    kept_other = await env.upload(OTHER)
    orphan = await env.orphan(TID)
    half_written = await env.orphan(OTHER, finished=False)
    sweep = OrphanSweep(env.store, env.clock, GRACE)
    before = deleted_total()

    assert await sweep.sweep_once() == 0  # within the grace period: nothing is touched
    assert await env.files() == {kept, kept_other, orphan, half_written}

    env.clock.advance(timedelta(minutes=61))
    young = await env.orphan(TID)  # stored just now: its upload may still be listing it
    assert await sweep.sweep_once() == 2
    assert await env.files() == {kept, kept_other, young}
    assert await env.chunk_owners() == {kept, kept_other, young}
    assert deleted_total() - before == 2
    for tid, listed in ((TID, kept), (OTHER, kept_other)):
        assert await env.store.read(listed) == PDF
        doc = await env.db["complaints"].find_one({"_id": tid})
        assert [e["id"] for e in doc["evidence"]] == [listed]
    assert await sweep.sweep_once() == 0  # nothing left to do


async def test_a_file_listed_before_a_crash_keeps_and_loses_its_pending_mark(env: Env) -> None:
    """Killed between listing the file and clearing its mark: the sweep finds it listed."""
    listed = await env.upload(TID)
    await env.db["evidence.files"].update_one(
        {"metadata.tracking_id": TID}, {"$set": {"metadata.pending": True}}
    )
    env.clock.advance(timedelta(hours=2))
    assert await OrphanSweep(env.store, env.clock, GRACE).sweep_once() == 0
    doc = await env.db["evidence.files"].find_one({"metadata.tracking_id": TID})
    assert str(doc["_id"]) == listed and "pending" not in doc["metadata"]
    assert await env.store.read(listed) == PDF


async def test_two_replicas_sweeping_at_once_delete_and_count_each_orphan_once(
    env: Env,
) -> None:
    orphans = {await env.orphan(TID) for _ in range(5)}
    kept = await env.upload(OTHER)
    env.clock.advance(timedelta(hours=2))
    before = deleted_total()
    one, two = (OrphanSweep(env.store, env.clock, GRACE) for _ in range(2))
    counts = await asyncio.gather(one.sweep_once(), two.sweep_once())
    assert sum(counts) == len(orphans) == deleted_total() - before
    assert await env.files() == {kept} and await env.chunk_owners() == {kept}


async def test_an_upload_outlasting_the_grace_period_fails_and_leaves_nothing(env: Env) -> None:
    """A running upload's file is dated when it started; if the sweep takes it, finishing
    the upload fails (UNAVAILABLE: send again) and its later chunks are deleted too."""
    swept = asyncio.Event()

    async def slow() -> Any:
        yield PDF[:100_000]
        yield PDF[100_000:300_000]
        env.clock.advance(timedelta(hours=2))
        assert await OrphanSweep(env.store, env.clock, GRACE).sweep_once() == 1
        swept.set()
        yield PDF[300_000:]

    header = EvidenceHeader(TID, CODE, "lambat.pdf", "application/pdf")
    with pytest.raises(Unavailable, match="^content: the upload took longer"):
        await env.handlers.upload(header, slow())
    assert swept.is_set()
    assert await env.files() == set() and await env.chunk_owners() == set()
    doc = await env.db["complaints"].find_one({"_id": TID})
    assert "evidence" not in doc


async def test_the_worker_sweeps_at_start_and_then_every_interval(env: Env) -> None:
    first = await env.orphan(TID)
    env.clock.advance(timedelta(hours=2))
    stop = asyncio.Event()
    worker = asyncio.create_task(OrphanSweep(env.store, env.clock, GRACE).run(stop))

    async def gone(file_id: str) -> None:
        for _ in range(250):
            if file_id not in await env.files():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{file_id} was not swept")

    await gone(first)
    second = await env.orphan(OTHER)
    env.clock.advance(timedelta(hours=2))
    await gone(second)
    stop.set()
    await asyncio.wait_for(worker, 5)

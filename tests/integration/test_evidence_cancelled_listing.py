"""An upload cancelled (the client hung up) while its finished file is being listed on the
report, against the real database process: the listing write may still land after the
call ended, so the file is never deleted then; it is listed and kept, or not listed and
deleted by the orphan sweep. Never listed and gone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common.clock import ManualClock
from services.intake.evidence import (
    EvidenceHandlers,
    EvidenceHeader,
    EvidenceLimits,
    StoredEvidence,
)
from services.intake.evidence_store import GridFsEvidenceFile, GridFsEvidenceStore
from services.intake.evidence_sweep import OrphanSweep, SweepSettings
from services.intake.followup import hash_follow_up_code
from services.intake.reporter import ReporterHandlers
from services.intake.reporter_store import MongoReportRepository
from services.intake.reporter_wiring import verify_code

CODE = "7K3M-9QX2-DACB"
TID = "7K3M-9QX2-DAC"
PDF = b"%PDF-1.4\n" + b"%" * 600_000 + b"\n%%EOF\n"  # three GridFS chunks
SWEEP = SweepSettings(grace=timedelta(hours=1), interval_seconds=600.0)


async def chunks(data: bytes, size: int = 64 * 1024) -> Any:
    for i in range(0, len(data), size):
        yield data[i : i + size]


class ListingInFlight:
    """The evidence store port over the GridFS store, whose listing write, once started,
    reaches the database only when the test lets it land, whatever became of the call that
    started it (as a write already sent to the database)."""

    def __init__(self, store: GridFsEvidenceStore) -> None:
        self.store = store
        self.started = asyncio.Event()
        self.land = asyncio.Event()
        self.write: asyncio.Task[int] | None = None

    async def create(
        self, tracking_id: str, file_name: str, content_type: str
    ) -> GridFsEvidenceFile:
        return await self.store.create(tracking_id, file_name, content_type)

    async def attach(
        self,
        tracking_id: str,
        item: StoredEvidence,
        max_report_bytes: int,
        max_files: int | None = None,
    ) -> int:
        async def sent() -> int:
            await self.land.wait()
            return await self.store.attach(tracking_id, item, max_report_bytes, max_files)

        self.write = asyncio.create_task(sent())
        self.started.set()
        return await asyncio.shield(self.write)  # cancelling the caller does not stop it

    async def delete(self, evidence_id: str) -> None:
        await self.store.delete(evidence_id)


async def files_and_listing(db: Any) -> tuple[set[str], set[str]]:
    stored = {str(d["_id"]) async for d in db["evidence.files"].find({}, {"_id": 1})}
    doc = await db["complaints"].find_one({"_id": TID}, {"evidence.id": 1})
    return stored, {e["id"] for e in doc.get("evidence", [])}


@pytest.mark.parametrize("write_lands", [True, False])
async def test_a_hang_up_during_the_listing_never_leaves_a_listed_file_deleted(
    db: Any, write_lands: bool
) -> None:
    await db["complaints"].insert_one(
        {
            "_id": TID,
            "privacy": "anonymous",
            "state": "in_progress",
            "received_at": datetime(2026, 3, 1, tzinfo=UTC),
            "follow_up_codes": [hash_follow_up_code(CODE)],
        }
    )
    clock = ManualClock()
    gridfs = GridFsEvidenceStore(db, db["complaints"], clock)
    await gridfs.ensure_indexes()
    store = ListingInFlight(gridfs)
    reporter = ReporterHandlers(
        MongoReportRepository(db["complaints"]), verify_code, lambda d: None, clock, str, 2
    )
    handlers = EvidenceHandlers(reporter, store, clock, EvidenceLimits())

    header = EvidenceHeader(TID, CODE, "surat.pdf", "application/pdf")
    upload = asyncio.create_task(handlers.upload(header, chunks(PDF)))
    await store.started.wait()
    upload.cancel()  # the client hangs up while the file is being listed
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert store.write is not None
    if write_lands:
        store.land.set()
        await store.write
    else:  # it never reached the database
        store.write.cancel()
        with pytest.raises(asyncio.CancelledError):
            await store.write

    stored, listed = await files_and_listing(db)
    assert listed <= stored  # a listed file is never gone
    for evidence_id in listed:
        assert await gridfs.read(evidence_id) == PDF

    clock.advance(SWEEP.grace + timedelta(seconds=1))
    await OrphanSweep(gridfs, clock, SWEEP).sweep_once()
    stored, listed = await files_and_listing(db)
    assert stored == listed  # kept while listed, swept otherwise
    assert len(listed) == (1 if write_lands else 0)
    for evidence_id in listed:
        assert await gridfs.read(evidence_id) == PDF
    if not write_lands:
        assert await db["evidence.chunks"].count_documents({}) == 0

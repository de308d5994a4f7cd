"""Evidence uploads stream into GridFS against the real database process: chunks are in
the database while the upload is still running, and the memory an upload takes stays near
one GridFS chunk plus one message, whatever the file's size (measured with tracemalloc;
pymongo's own AsyncGridIn, which gathers the whole file, is measured the same way to show
the measurement sees buffering)."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from gridfs import AsyncGridFSBucket

from services.common.clock import ManualClock
from services.intake.evidence import EvidenceHandlers, EvidenceHeader, EvidenceLimits, MiB
from services.intake.evidence_store import CHUNK_BYTES, GridFsEvidenceStore
from services.intake.followup import hash_follow_up_code
from services.intake.reporter import ReporterHandlers
from services.intake.reporter_store import MongoReportRepository
from services.intake.reporter_wiring import verify_code

CODE = "7K3M-9QX2-DACB"
TID = "7K3M-9QX2-DAC"
MESSAGE = 64 * 1024  # what a client sends per gRPC message
FILE = 12 * MiB
HEAD = b"%PDF-1.4\n"


def piece(i: int) -> bytes:
    """The i-th message of the file, made when it is sent (the test holds no whole file)."""
    if i == 0:
        return HEAD + bytes([i % 251]) * (MESSAGE - len(HEAD))
    return bytes([i % 251]) * MESSAGE


async def messages(count: int) -> AsyncIterator[bytes]:
    for i in range(count):
        yield piece(i)


async def setup(db: Any) -> tuple[EvidenceHandlers, GridFsEvidenceStore]:
    complaints = db["complaints"]
    await complaints.insert_one(
        {
            "_id": TID,
            "privacy": "anonymous",
            "state": "in_progress",
            "received_at": datetime(2026, 3, 1, tzinfo=UTC),
            "follow_up_codes": [hash_follow_up_code(CODE)],
        }
    )
    store = GridFsEvidenceStore(db, complaints, ManualClock())
    await store.ensure_indexes()
    reporter = ReporterHandlers(
        MongoReportRepository(complaints), verify_code, lambda d: None, ManualClock(), str, 2
    )
    limits = EvidenceLimits(max_file_bytes=64 * MiB, max_report_bytes=64 * MiB)
    return EvidenceHandlers(reporter, store, ManualClock(), limits), store


async def test_chunks_reach_the_database_while_the_upload_runs(db: Any) -> None:
    _, store = await setup(db)
    f = await store.create(TID, "surat.pdf", "application/pdf")
    written = b""
    seen: list[int] = []
    for i in range(16):  # 1 MiB in 64 KiB messages: 4 full chunks, then a short one
        written += piece(i)
        await f.write(piece(i))
        seen.append(await db["evidence.chunks"].count_documents({}))
    # A chunk is in the database as soon as it is full: after the 4th message, the 8th...
    assert seen == [(i + 1) * MESSAGE // CHUNK_BYTES for i in range(16)]
    assert seen[-1] == 4
    file_id = await f.close()
    assert await db["evidence.chunks"].count_documents({}) == 5
    assert await store.read(file_id) == written  # a standard GridFS reader reads it
    doc = await db["evidence.files"].find_one()
    assert doc["length"] == len(written) and doc["chunkSize"] == CHUNK_BYTES
    assert doc["metadata"]["pending"] is True  # until the report lists it


async def upload_peak(handlers: EvidenceHandlers, count: int) -> tuple[int, str]:
    header = EvidenceHeader(TID, CODE, "surat.pdf", "application/pdf")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        stored = await handlers.upload(header, messages(count))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, stored.sha256


async def test_memory_per_upload_stays_near_one_chunk_plus_one_message(db: Any) -> None:
    handlers, store = await setup(db)
    count = FILE // MESSAGE
    await upload_peak(handlers, 4)  # warm up: connections, caches
    peak, sha = await upload_peak(handlers, count)
    expected = hashlib.sha256()
    for i in range(count):
        expected.update(piece(i))
    assert sha == expected.hexdigest()
    # One chunk being filled, its copy being sent, the message, and the driver's encoding.
    assert peak < 4 * CHUNK_BYTES + 2 * MESSAGE, peak
    assert peak < FILE / 8, peak


async def test_the_measurement_sees_a_buffering_writer(db: Any) -> None:
    """The control: pymongo's AsyncGridIn keeps the chunks of the whole file until close."""
    bucket = AsyncGridFSBucket(db, bucket_name="control")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        grid_in = bucket.open_upload_stream("surat.pdf")
        async for m in messages(FILE // MESSAGE):
            await grid_in.write(m)
        await grid_in.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak > FILE, peak

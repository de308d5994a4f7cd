"""Officers download the reporter's evidence from real GridFS (the SecantusDB process): a
multi-chunk file written by intake's evidence store streams back chunk by chunk with its
SHA-256 intact, the download is in the audit collection, a closed report's evidence stays
readable to its institution, and files that are not the report's listed ones are not found."""

from __future__ import annotations

import hashlib
import tracemalloc
from datetime import UTC, datetime
from typing import Any

import pytest

from services.common.auth import Principal
from services.common.clock import ManualClock
from services.common.errors import NotFound
from services.common.regions import default_regions
from services.intake.evidence import MiB, StoredEvidence
from services.intake.evidence_store import CHUNK_BYTES, GridFsEvidenceStore
from services.intake.officer_evidence import MAX_PIECE, OfficerEvidence
from services.intake.officer_evidence_store import (
    DOWNLOADS,
    MongoDownloadLog,
    MongoEvidenceCatalog,
)
from services.routing.domain.directory import Directory

TID = "7K3M-9QX2-DAC"
OTHER_TID = "PD9Z-5S2Z-JY0"
UNIT = "pemda-51.08/dpupr"
NOW = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
SIZE = 4 * MiB + 12345  # 17 GridFS chunks, the last one short


def content(i: int) -> bytes:
    """The i-th 64 KiB piece of the file, made when it is written."""
    head = b"\xff\xd8\xff\xe0" if i == 0 else b""
    return (head + bytes([i % 251, (i * 7) % 251]) * 32768)[: 64 * 1024]


async def store_file(store: GridFsEvidenceStore, tracking_id: str, size: int) -> StoredEvidence:
    digest = hashlib.sha256()
    f = await store.create(tracking_id, "jalan.jpg", "image/jpeg")
    written, i = 0, 0
    while written < size:
        data = content(i)[: size - written]
        digest.update(data)
        await f.write(data)
        written += len(data)
        i += 1
    evidence_id = await f.close()
    item = StoredEvidence(evidence_id, "jalan.jpg", "image/jpeg", size, digest.hexdigest(), NOW, 0)
    assert await store.attach(tracking_id, item, 64 * MiB) == size
    return item


async def setup(db: Any) -> tuple[OfficerEvidence, GridFsEvidenceStore]:
    complaints = db["complaints"]
    for tid in (TID, OTHER_TID):
        await complaints.insert_one(
            {
                "_id": tid,
                "privacy": "confidential",
                "state": "in_progress",
                "institution": {"id": UNIT, "name": "DPUPR Kabupaten Buleleng"},
                "received_at": NOW,
                "reporter": {"sealed": "not for officers"},
            }
        )
    store = GridFsEvidenceStore(db, complaints, ManualClock(NOW))
    await store.ensure_indexes()
    downloads = MongoDownloadLog(db[DOWNLOADS])
    await downloads.ensure_indexes()
    evidence = OfficerEvidence(
        MongoEvidenceCatalog(db, complaints),
        downloads,
        Directory.seed(default_regions()),
        ManualClock(NOW),
    )
    return evidence, store


async def test_a_multi_chunk_file_streams_back_chunk_by_chunk_with_its_digest(db: Any) -> None:
    evidence, store = await setup(db)
    item = await store_file(store, TID, SIZE)
    chunks = await db["evidence.chunks"].count_documents({})
    assert chunks == -(-SIZE // CHUNK_BYTES) == 17
    # Closed since: its institution still reads it.
    await db["complaints"].update_one({"_id": TID}, {"$set": {"state": "closed"}})
    officer = Principal("nip-198101", "pemda-51.08", "officer")  # the government above

    listed = await evidence.list(officer, TID)
    assert [(i.evidence_id, i.size_bytes, i.sha256) for i in listed.items] == [
        (item.evidence_id, SIZE, item.sha256)
    ]
    meta, stream = await evidence.download(officer, TID, item.evidence_id)
    assert meta.sha256 == item.sha256
    digest, sizes = hashlib.sha256(), []
    tracemalloc.start()
    try:
        async for piece in stream:
            digest.update(piece)
            sizes.append(len(piece))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == item.sha256
    assert sum(sizes) == SIZE
    assert sizes[:-1] == [CHUNK_BYTES] * 16 and 0 < sizes[-1] <= MAX_PIECE  # one per chunk
    # Never the whole file: a few chunks at most (the driver's reply, the copy handed on).
    assert peak < 6 * CHUNK_BYTES < SIZE // 2, peak

    (record,) = await db[DOWNLOADS].find({}, {"_id": 0}).to_list(None)
    assert record == {
        "at": NOW,
        "subject": "nip-198101",
        "institution": "pemda-51.08",
        "role": "officer",
        "tracking_id": TID,
        "evidence_id": item.evidence_id,
        "size_bytes": SIZE,
        "sha256": item.sha256,
    }


async def test_only_the_reports_listed_files_are_found(db: Any) -> None:
    evidence, store = await setup(db)
    mine = await store_file(store, TID, 1000)
    theirs = await store_file(store, OTHER_TID, 2000)
    pending = await store.create(TID, "half.jpg", "image/jpeg")  # not listed (yet)
    await pending.write(content(0)[:500])
    pending_id = await pending.close()
    admin = Principal("admin-1", "national", "national_admin")
    for evidence_id in (theirs.evidence_id, pending_id, "65f0c0ffee0000000000ffff"):
        with pytest.raises(NotFound, match="evidence_id"):
            await evidence.download(admin, TID, evidence_id)
    # A listing naming a file of another report (a damaged document) finds nothing either.
    await db["complaints"].update_one(
        {"_id": TID},
        {"$push": {"evidence": {"id": theirs.evidence_id, "size": 2000, "sha256": "x"}}},
    )
    with pytest.raises(NotFound, match="evidence_id"):
        await evidence.download(admin, TID, theirs.evidence_id)
    with pytest.raises(NotFound, match="tracking_id"):
        await evidence.list(Principal("nip-2", "pemda-51.71/dpupr", "officer"), TID)
    _, stream = await evidence.download(admin, TID, mine.evidence_id)
    data = b"".join([piece async for piece in stream])
    assert hashlib.sha256(data).hexdigest() == mine.sha256
    assert await db[DOWNLOADS].count_documents({}) == 1


async def test_a_unit_unknown_to_intakes_directory_reads_by_the_stored_ancestors(db: Any) -> None:
    """A unit added at run time: intake's shipped directory does not know it, the ids above
    it are stored from routing's event (services/intake/projection.py, ``holder``)."""
    evidence, store = await setup(db)
    section = f"{UNIT}/seksi-jalan"
    await db["complaints"].update_one(
        {"_id": TID},
        {"$set": {"institution": {"id": section, "name": "Seksi Jalan", "ancestors": [UNIT]}}},
    )
    await store_file(store, TID, 1000)
    for reader in (section, UNIT):
        listed = await evidence.list(Principal("nip-3", reader, "officer"), TID)
        assert listed.holder_ancestors == (UNIT,) and len(listed.items) == 1
    with pytest.raises(NotFound, match="tracking_id"):
        await evidence.list(Principal("nip-4", f"{UNIT}/seksi-lain", "officer"), TID)

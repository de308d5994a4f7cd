"""Evidence in GridFS against the real database process: stored with its digest, listed on
the report within the report's limit, nothing left behind by an aborted upload; the name the
reporter gave a file is kept for the reporter, never read for officers."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from services.common.auth import Principal
from services.common.clock import ManualClock
from services.common.regions import default_regions
from services.intake.evidence import (
    EvidenceHandlers,
    EvidenceHeader,
    EvidenceLimits,
    StoredEvidence,
)
from services.intake.evidence_store import GridFsEvidenceStore
from services.intake.followup import hash_follow_up_code
from services.intake.officer_evidence import OfficerEvidence
from services.intake.officer_evidence_store import (
    DOWNLOADS,
    MongoDownloadLog,
    MongoEvidenceCatalog,
)
from services.intake.reporter import ReporterHandlers
from services.intake.reporter_store import MongoReportRepository
from services.intake.reporter_wiring import verify_code
from services.routing.domain.directory import Directory

CODE = "7K3M-9QX2-DACB"
PDF = b"%PDF-1.4\n" + b"%" * 700_000 + b"\n%%EOF\n"  # spans several GridFS chunks


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def setup(db: Any, limits: EvidenceLimits) -> tuple[EvidenceHandlers, GridFsEvidenceStore]:
    complaints = db["complaints"]
    await complaints.insert_one(
        {
            "_id": "7K3M-9QX2-DAC",
            "privacy": "anonymous",
            "state": "in_progress",
            "received_at": datetime(2026, 3, 1, tzinfo=UTC),
            "follow_up_codes": [hash_follow_up_code(CODE)],
        }
    )
    store = GridFsEvidenceStore(db, complaints)
    await store.ensure_indexes()
    reporter = ReporterHandlers(
        MongoReportRepository(complaints), verify_code, lambda d: None, ManualClock(), str, 2
    )
    return EvidenceHandlers(reporter, store, ManualClock(), limits), store


async def test_upload_is_stored_in_gridfs_with_its_digest(db: Any) -> None:
    handlers, store = await setup(db, EvidenceLimits(max_file_bytes=1_000_000))
    header = EvidenceHeader("7K3M-9QX2-DAC", CODE, "surat.pdf", "application/pdf")
    stored = await handlers.upload(header, chunks(PDF))
    assert stored.sha256 == hashlib.sha256(PDF).hexdigest()
    assert await store.read(stored.evidence_id) == PDF
    doc = await db["complaints"].find_one({"_id": "7K3M-9QX2-DAC"})
    assert doc["evidence_bytes"] == len(PDF)
    assert doc["evidence"][0]["sha256"] == stored.sha256
    gridfs_file = await db["evidence.files"].find_one()
    assert gridfs_file["metadata"]["tracking_id"] == "7K3M-9QX2-DAC"


async def test_refused_upload_leaves_no_chunks(db: Any) -> None:
    handlers, _ = await setup(db, EvidenceLimits(max_file_bytes=300_000))
    header = EvidenceHeader("7K3M-9QX2-DAC", CODE, "surat.pdf", "application/pdf")
    try:
        await handlers.upload(header, chunks(PDF))
    except Exception as exc:  # noqa: BLE001
        assert "must be at most 300000 bytes" in str(exc)
    else:
        raise AssertionError("an oversize file was accepted")
    assert await db["evidence.chunks"].count_documents({}) == 0
    assert await db["evidence.files"].count_documents({}) == 0
    doc = await db["complaints"].find_one({"_id": "7K3M-9QX2-DAC"})
    assert "evidence" not in doc


async def test_report_limit_is_enforced_by_the_listing_write(db: Any) -> None:
    _, store = await setup(db, EvidenceLimits())
    item = StoredEvidence("id1", "a.pdf", "application/pdf", 600, "00", datetime.now(UTC), 0)
    assert await store.attach("7K3M-9QX2-DAC", item, 1000) == 600
    assert await store.attach("7K3M-9QX2-DAC", item, 1000) == -1
    await db["complaints"].update_one({"_id": "7K3M-9QX2-DAC"}, {"$set": {"state": "closed"}})
    assert await store.attach("7K3M-9QX2-DAC", item, 10_000) == -2


async def test_officers_never_get_the_name_the_reporter_gave_the_file(db: Any) -> None:
    handlers, _ = await setup(db, EvidenceLimits(max_file_bytes=1_000_000))
    await db["complaints"].update_one(  # a report keeping its reporter's (sealed) identity
        {"_id": "7K3M-9QX2-DAC"},
        {"$set": {"privacy": "confidential", "reporter": {"kid": "k1", "nonce": b"n", "ct": b"c"}}},
    )
    name = "Surat_Kuasa_Budi_Santoso_081234567890.pdf"
    header = EvidenceHeader("7K3M-9QX2-DAC", CODE, name, "application/pdf")
    stored = await handlers.upload(header, chunks(PDF))
    assert stored.file_name == name  # the reporter's receipt
    doc = await db["complaints"].find_one({"_id": "7K3M-9QX2-DAC"})
    assert doc["evidence"][0]["name"] == name  # kept for GetMyReport, with the identity

    officers = OfficerEvidence(
        MongoEvidenceCatalog(db, db["complaints"]),
        MongoDownloadLog(db[DOWNLOADS]),
        Directory.seed(default_regions()),
        ManualClock(),
    )
    admin = Principal("admin-1", "national", "national_admin")  # the report is not routed
    (item,) = (await officers.list(admin, "7K3M-9QX2-DAC")).items
    assert item.file_name == f"lampiran-{stored.evidence_id}.pdf"
    meta, content = await officers.download(admin, "7K3M-9QX2-DAC", stored.evidence_id)
    assert b"".join([piece async for piece in content]) == PDF
    seen = repr([item, meta, await db[DOWNLOADS].find({}, {"_id": 0}).to_list(None)])
    for part in (name, "Budi", "Santoso", "081234567890", "Surat_Kuasa"):
        assert part not in seen

"""MongoDB adapters of the officers' evidence API: the report's listing and holder (from the
complaint document), the files' bytes (GridFS bucket ``evidence``, read chunk document by
chunk document) and the download audit (collection ``evidence_downloads``).

Only the fields named here are ever read from a complaint (``institution.id``,
``institution.ancestors`` and the listed files' ``id``, ``type``, ``size``, ``sha256`` and
``at``), so the reporter's sealed identity, and the name they gave each file, never even leave
the database: officers get the neutral name of ``officer_evidence_names.py`` instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from services.common.mongo import Doc
from services.intake.officer_evidence import DownloadRecord, EvidenceItem, ReportEvidence
from services.intake.officer_evidence_names import officer_file_name

BUCKET = "evidence"  # services/intake/evidence_store.py writes it
DOWNLOADS = "evidence_downloads"
# What is read of a complaint: never the reporter's identity, never the file names they chose.
_PROJECTION = {
    "institution.id": 1,
    "institution.ancestors": 1,
    **{f"evidence.{field}": 1 for field in ("id", "type", "size", "sha256", "at")},
}


def _item(entry: Doc) -> EvidenceItem:
    at = entry.get("at")
    evidence_id, content_type = str(entry["id"]), str(entry.get("type") or "")
    return EvidenceItem(
        evidence_id=evidence_id,
        file_name=officer_file_name(evidence_id, content_type),  # never entry["name"]
        content_type=content_type,
        size_bytes=int(entry.get("size") or 0),
        sha256=str(entry.get("sha256") or ""),
        uploaded_at=at if isinstance(at, datetime) else datetime.min,
    )


class MongoEvidenceCatalog:
    def __init__(self, db: AsyncDatabase[Doc], complaints: AsyncCollection[Doc]) -> None:
        self._complaints = complaints
        self._files = db[f"{BUCKET}.files"]
        self._chunks = db[f"{BUCKET}.chunks"]

    async def report(self, tracking_id: str) -> ReportEvidence | None:
        doc = await self._complaints.find_one({"_id": tracking_id}, _PROJECTION)
        if doc is None:
            return None
        institution = doc.get("institution") or {}
        items = tuple(_item(e) for e in doc.get("evidence") or [] if e.get("id"))
        ancestors = tuple(str(a) for a in institution.get("ancestors") or ())
        return ReportEvidence(tracking_id, str(institution.get("id") or ""), items, ancestors)

    async def open(self, tracking_id: str, evidence_id: str) -> AsyncIterator[bytes] | None:
        try:
            file_id = ObjectId(evidence_id)
        except (InvalidId, TypeError):
            return None
        found = await self._files.find_one(
            {"_id": file_id, "metadata.tracking_id": tracking_id, "metadata.swept": {"$ne": True}},
            {"length": 1},
        )
        if found is None:
            return None
        return self._chunks_of(file_id, int(found.get("length") or 0))

    async def _chunks_of(self, file_id: ObjectId, length: int) -> AsyncIterator[bytes]:
        """One chunk document per query, in order: the file is never held whole."""
        sent, n = 0, 0
        while sent < length:
            chunk = await self._chunks.find_one({"files_id": file_id, "n": n}, {"data": 1})
            if chunk is None:
                return  # cut short: the caller's size check reports it
            data = bytes(chunk["data"])
            if not data:
                return
            sent += len(data)
            n += 1
            yield data


class MongoDownloadLog:
    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._collection = collection

    async def ensure_indexes(self) -> None:
        await self._collection.create_index([("tracking_id", 1), ("at", 1)])
        await self._collection.create_index([("subject", 1), ("at", 1)])

    async def record(self, entry: DownloadRecord) -> None:
        await self._collection.insert_one(
            {
                "at": entry.at,
                "subject": entry.subject,
                "institution": entry.institution,
                "role": entry.role,
                "tracking_id": entry.tracking_id,
                "evidence_id": entry.evidence_id,
                "size_bytes": entry.size_bytes,
                "sha256": entry.sha256,
            }
        )

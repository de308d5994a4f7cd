"""GridFS adapter for evidence files, and their listing on the complaint document."""

from __future__ import annotations

import contextlib

from bson import ObjectId
from bson.errors import InvalidId
from gridfs import AsyncGridFSBucket
from gridfs.asynchronous.grid_file import AsyncGridIn
from gridfs.errors import NoFile
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from services.common.mongo import Doc
from services.intake.evidence import StoredEvidence
from services.intake.reporter_rules import EVIDENCE_CLOSED_STATES

BUCKET = "evidence"


class GridFsEvidenceFile:
    def __init__(self, grid_in: AsyncGridIn) -> None:
        self._in = grid_in

    async def write(self, data: bytes) -> None:
        await self._in.write(data)

    async def close(self) -> str:
        await self._in.close()
        return str(self._in._id)

    async def abort(self) -> None:
        await self._in.abort()


class GridFsEvidenceStore:
    """Files in the `evidence.files` / `evidence.chunks` bucket, each tagged with its
    tracking id (so an orphan left by a crash can be found); listed on the complaint."""

    def __init__(self, db: AsyncDatabase[Doc], complaints: AsyncCollection[Doc]) -> None:
        self._bucket = AsyncGridFSBucket(db, bucket_name=BUCKET)
        self._files = db[f"{BUCKET}.files"]
        self._complaints = complaints

    async def ensure_indexes(self) -> None:
        await self._files.create_index("metadata.tracking_id")

    def create(self, tracking_id: str, file_name: str, content_type: str) -> GridFsEvidenceFile:
        grid_in = self._bucket.open_upload_stream(
            file_name, metadata={"tracking_id": tracking_id, "content_type": content_type}
        )
        return GridFsEvidenceFile(grid_in)

    async def attach(self, tracking_id: str, item: StoredEvidence, max_report_bytes: int) -> int:
        entry = {
            "id": item.evidence_id,
            "name": item.file_name,
            "type": item.content_type,
            "size": item.size_bytes,
            "sha256": item.sha256,
            "at": item.uploaded_at,
        }
        room = max_report_bytes - item.size_bytes
        doc = await self._complaints.find_one_and_update(
            {
                "_id": tracking_id,
                "state": {"$nin": [s.value for s in EVIDENCE_CLOSED_STATES]},
                "$or": [{"evidence_bytes": {"$lte": room}}, {"evidence_bytes": None}],
            },
            {"$push": {"evidence": entry}, "$inc": {"evidence_bytes": item.size_bytes}},
            projection={"evidence_bytes": 1},
            return_document=True,
        )
        if doc is not None:
            return int(doc["evidence_bytes"])
        current = await self._complaints.find_one({"_id": tracking_id}, {"state": 1})
        if current is not None and current.get("state") in EVIDENCE_CLOSED_STATES:
            return -2
        return -1

    async def delete(self, evidence_id: str) -> None:
        with contextlib.suppress(NoFile, InvalidId):
            await self._bucket.delete(ObjectId(evidence_id))

    async def read(self, evidence_id: str) -> bytes:
        stream = await self._bucket.open_download_stream(ObjectId(evidence_id))
        return await stream.read()

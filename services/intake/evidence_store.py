"""GridFS adapter for evidence files, their listing on the complaint document, and what the
orphan sweep needs.

Files are written in GridFS's layout (bucket `evidence`: `evidence.files`,
`evidence.chunks`, 255 KiB chunks), so any GridFS reader can read a finished file, but not
with pymongo's `AsyncGridIn`: that one keeps every chunk document in memory until 48 MB
have gathered or the file is closed, i.e. a whole evidence file per upload. Here each
chunk is inserted as soon as it is full, so an upload holds at most one chunk of its own
(plus the gRPC message being copied in).

The files document is inserted **first**, tagged with the tracking id and
`metadata.pending: true`, and its `uploadDate` (from the injected clock) is set again when
the file is finished; `pending` is removed once the file is listed on its report. A file
still pending long after its upload date was never listed (a crash, a lost connection): the
sweep (`evidence_sweep.py`) marks it `swept` (one conditional write, so a file finishing at
that moment either moves its upload date first and is spared, or finds the mark and fails),
then deletes its chunks, then its files document.

The files document's `filename` is the neutral ``lampiran-<evidence id>.<ext>``
(`officer_file_name`), never the name the reporter gave the file (which may carry their name
or number): only the report's listing keeps that, for the reporter, while their identity is
kept. `neutral_file_names` renames the files stored before this was so (a backfill, run in
the background after start).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from bson import ObjectId
from bson.errors import InvalidId
from bson.int64 import Int64
from gridfs import AsyncGridFSBucket
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from services.common.clock import Clock, SystemClock
from services.common.errors import Unavailable
from services.common.mongo import Doc
from services.intake.evidence import (
    OVER_REPORT_BYTES,
    OVER_REPORT_FILES,
    REPORT_CLOSED,
    StoredEvidence,
)
from services.intake.officer_evidence_names import PREFIX, officer_file_name
from services.intake.reporter_rules import EVIDENCE_CLOSED_STATES

log = logging.getLogger(__name__)

BUCKET = "evidence"
CHUNK_BYTES = 255 * 1024  # GridFS's default chunk size
PENDING = "metadata.pending"
SWEPT = "metadata.swept"
# A name `officer_file_name` gives: nothing of the reporter's in it.
NEUTRAL_NAME = re.compile(rf"^{PREFIX}-[0-9a-f]+\.[a-z0-9]+$")
RENAME_BATCH = 500  # renames per write


class GridFsEvidenceFile:
    """One file being written: chunks go to the database as they fill."""

    def __init__(self, store: GridFsEvidenceStore, file_id: ObjectId, chunk_bytes: int) -> None:
        self._store = store
        self._id = file_id
        self._chunk_bytes = chunk_bytes
        self._buffer = bytearray()
        self._next = 0  # number of the next chunk
        self._length = 0

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            take = view[: self._chunk_bytes - len(self._buffer)]
            self._buffer += take
            view = view[len(take) :]
            if len(self._buffer) == self._chunk_bytes:
                await self._flush()

    async def _flush(self) -> None:
        data = bytes(self._buffer)
        self._buffer.clear()
        await self._store.chunks.insert_one({"files_id": self._id, "n": self._next, "data": data})
        self._next += 1
        self._length += len(data)

    async def close(self) -> str:
        if self._buffer:
            await self._flush()
        done = await self._store.files.update_one(
            {"_id": self._id, SWEPT: {"$ne": True}},
            {"$set": {"length": Int64(self._length), "uploadDate": self._store.clock.now()}},
        )
        if done.matched_count == 0:
            # Swept as an orphan: the upload took longer than the sweep's grace period.
            raise Unavailable(
                "content: the upload took longer than the server keeps unfinished files; "
                "send the file again"
            )
        return str(self._id)

    async def abort(self) -> None:
        await self._store.remove(self._id)


class GridFsEvidenceStore:
    """Files in the `evidence.files` / `evidence.chunks` bucket, each tagged with its
    tracking id (so an orphan left by a crash can be found); listed on the complaint."""

    def __init__(
        self,
        db: AsyncDatabase[Doc],
        complaints: AsyncCollection[Doc],
        clock: Clock | None = None,
        *,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self._bucket = AsyncGridFSBucket(db, bucket_name=BUCKET)
        self.files = db[f"{BUCKET}.files"]
        self.chunks = db[f"{BUCKET}.chunks"]
        self._complaints = complaints
        self.clock = clock or SystemClock()
        self._chunk_bytes = chunk_bytes

    async def ensure_indexes(self) -> None:
        await self.files.create_index("metadata.tracking_id")
        # The sweep's query; only pending files carry the field, so the index stays small.
        await self.files.create_index([(PENDING, 1), ("uploadDate", 1)], sparse=True)
        # GridFS's own indexes (what a GridFS driver would create on its first write).
        await self.files.create_index([("filename", 1), ("uploadDate", 1)])
        await self.chunks.create_index([("files_id", 1), ("n", 1)], unique=True)

    async def create(
        self, tracking_id: str, file_name: str, content_type: str
    ) -> GridFsEvidenceFile:
        """A new file of `tracking_id`. `file_name`, the reporter's, goes on the listing
        (`attach`) only: the files document gets the neutral name."""
        file_id = ObjectId()
        await self.files.insert_one(
            {
                "_id": file_id,
                "length": Int64(0),
                "chunkSize": self._chunk_bytes,
                "uploadDate": self.clock.now(),
                "filename": officer_file_name(str(file_id), content_type),
                "metadata": {
                    "tracking_id": tracking_id,
                    "content_type": content_type,
                    "pending": True,
                },
            }
        )
        return GridFsEvidenceFile(self, file_id, self._chunk_bytes)

    async def attach(
        self,
        tracking_id: str,
        item: StoredEvidence,
        max_report_bytes: int,
        max_files: int | None = None,
    ) -> int:
        """List the file on its report in one conditional write: the report open, its bytes
        within `max_report_bytes` and fewer than `max_files` files listed (the array has no
        element at index max_files - 1), so parallel uploads cannot pass either limit.

        The reporter's own file name goes on the listing only while the report keeps their
        identity (``reporter``): an anonymous report, or one whose identity was erased or
        given up, lists the file without it (the reporter then sees the neutral name)."""
        entry: Doc = {
            "id": item.evidence_id,
            "type": item.content_type,
            "size": item.size_bytes,
            "sha256": item.sha256,
            "at": item.uploaded_at,
        }
        room = max_report_bytes - item.size_bytes
        condition: Doc = {
            "_id": tracking_id,
            "state": {"$nin": [s.value for s in EVIDENCE_CLOSED_STATES]},
            "$or": [{"evidence_bytes": {"$lte": room}}, {"evidence_bytes": None}],
        }
        if max_files is not None:
            condition[f"evidence.{max_files - 1}"] = {"$exists": False}
        # Decided in the write itself. An identity can only go, never come back, so a
        # report that misses the first form (its identity went meanwhile) takes the second.
        forms = [
            ({"reporter": {"$exists": True}}, {**entry, "name": item.file_name}),
            ({"reporter": {"$exists": False}}, entry),
        ]
        doc = None
        for identity, listed in forms:
            doc = await self._complaints.find_one_and_update(
                {**condition, **identity},
                {"$push": {"evidence": listed}, "$inc": {"evidence_bytes": item.size_bytes}},
                projection={"evidence_bytes": 1},
                return_document=True,
            )
            if doc is not None:
                break
        if doc is not None:
            await self._settled(item.evidence_id)
            return int(doc["evidence_bytes"])
        current = await self._complaints.find_one(
            {"_id": tracking_id}, {"state": 1, "evidence.id": 1}
        )
        if current is not None and current.get("state") in EVIDENCE_CLOSED_STATES:
            return REPORT_CLOSED
        if max_files is not None and len((current or {}).get("evidence") or []) >= max_files:
            return OVER_REPORT_FILES
        return OVER_REPORT_BYTES

    async def _settled(self, evidence_id: str) -> None:
        """The file is listed: no longer a sweep candidate. Best effort: a file still marked
        pending is found listed by the sweep, which then clears the mark."""
        try:
            await self.files.update_one({"_id": ObjectId(evidence_id)}, {"$unset": {PENDING: ""}})
        except Exception:  # noqa: BLE001 - the upload succeeded; the sweep settles it
            log.warning("could not clear the pending mark of an evidence file; the sweep will")

    async def delete(self, evidence_id: str) -> None:
        try:
            file_id = ObjectId(evidence_id)
        except (InvalidId, TypeError):
            return
        await self.remove(file_id)

    async def remove(self, file_id: ObjectId) -> None:
        """Chunks first, then the files document: a removal cut short leaves the files
        document, so the sweep finds the file again. Removing twice is harmless."""
        await self.chunks.delete_many({"files_id": file_id})
        await self.files.delete_one({"_id": file_id})

    async def read(self, evidence_id: str) -> bytes:
        stream = await self._bucket.open_download_stream(ObjectId(evidence_id))
        return await stream.read()

    # The orphan sweep's port.

    async def pending_before(self, cutoff: datetime, limit: int) -> list[tuple[ObjectId, str]]:
        """(file id, tracking id) of files still pending whose upload date is before
        `cutoff`, oldest first."""
        cursor = (
            self.files.find(
                {PENDING: True, "uploadDate": {"$lt": cutoff}}, {"metadata.tracking_id": 1}
            )
            .sort("uploadDate", 1)
            .limit(limit)
        )
        return [
            (d["_id"], str((d.get("metadata") or {}).get("tracking_id", ""))) async for d in cursor
        ]

    async def listed_ids(self, tracking_id: str) -> set[str]:
        doc = await self._complaints.find_one({"_id": tracking_id}, {"evidence.id": 1})
        return {str(e.get("id")) for e in (doc or {}).get("evidence", [])}

    async def settle(self, file_id: ObjectId) -> None:
        await self.files.update_one({"_id": file_id}, {"$unset": {PENDING: ""}})

    async def remove_orphan(self, file_id: ObjectId, cutoff: datetime) -> bool:
        """Remove a pending file whose upload date is still before `cutoff`. True when this
        call removed the files document (two sweeps racing: one of them)."""
        marked = await self.files.update_one(
            {"_id": file_id, PENDING: True, "uploadDate": {"$lt": cutoff}}, {"$set": {SWEPT: True}}
        )
        if marked.matched_count == 0:
            return False  # finished meanwhile, or already removed
        await self.chunks.delete_many({"files_id": file_id})
        gone = await self.files.delete_one({"_id": file_id})
        return gone.deleted_count == 1


async def neutral_file_names(files: AsyncCollection[Doc]) -> int:
    """Give every file in `files` (``evidence.files``) whose `filename` is not a neutral one
    (the name its reporter gave it, stored before 2026-11-24) its neutral name. A backfill;
    idempotent, and a run cut short (the process stopping) is finished by the next.
    Returns how many files changed."""
    renamed = 0
    batch: list[UpdateOne] = []
    cursor = files.find({"filename": {"$not": NEUTRAL_NAME}}, {"filename": 1, "metadata": 1})
    async for doc in cursor:
        content_type = str((doc.get("metadata") or {}).get("content_type", ""))
        batch.append(
            UpdateOne(
                {"_id": doc["_id"], "filename": doc["filename"]},
                {"$set": {"filename": officer_file_name(str(doc["_id"]), content_type)}},
            )
        )
        if len(batch) == RENAME_BATCH:
            renamed += (await files.bulk_write(batch, ordered=False)).modified_count
            batch = []
    if batch:
        renamed += (await files.bulk_write(batch, ordered=False)).modified_count
    return renamed


async def drop_unkept_file_names(complaints: AsyncCollection[Doc]) -> int:
    """Remove the names reporters gave their files from the listings of reports that keep
    no identity (anonymous, or erased or given up), which versions before 2026-11-24 kept
    there for files uploaded to such a report. A backfill; idempotent. Returns how many
    reports changed."""
    result = await complaints.update_many(
        {"reporter": {"$exists": False}, "evidence.name": {"$exists": True}},
        {"$unset": {"evidence.$[].name": ""}},
    )
    return result.modified_count

"""The per-report evidence file limit against the real database process: the listing write
itself refuses a file over the limit (its filter on the array's size), so uploads racing
for the last place cannot pass it: exactly one is listed, the others' files are deleted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from services.common.errors import ValidationError
from services.intake.evidence import (
    OVER_REPORT_BYTES,
    OVER_REPORT_FILES,
    REPORT_CLOSED,
    EvidenceHeader,
    EvidenceLimits,
    StoredEvidence,
)
from tests.integration.test_evidence_store import CODE, setup

TID = "7K3M-9QX2-DAC"
PDF = b"%PDF-1.4\n" + b"%" * 300_000 + b"\n%%EOF\n"  # two GridFS chunks


def item(n: int, size: int = 100) -> StoredEvidence:
    return StoredEvidence(f"id{n}", f"{n}.pdf", "application/pdf", size, "00", datetime.now(UTC), 0)


async def listed(db: Any) -> list[str]:
    doc = await db["complaints"].find_one({"_id": TID}, {"evidence.id": 1})
    return [e["id"] for e in doc.get("evidence", [])]


async def test_the_listing_write_refuses_a_file_over_the_limit(db: Any) -> None:
    _, store = await setup(db, EvidenceLimits())
    assert await store.attach(TID, item(1), 10_000, max_files=2) == 100
    assert await store.attach(TID, item(2), 10_000, max_files=2) == 200
    assert await store.attach(TID, item(3), 10_000, max_files=2) == OVER_REPORT_FILES
    assert await listed(db) == ["id1", "id2"]
    doc = await db["complaints"].find_one({"_id": TID})
    assert doc["evidence_bytes"] == 200  # nothing half-written
    # Within the count, the byte limit still answers for itself; a higher count lets in.
    assert await store.attach(TID, item(3, 9_900), 10_000, max_files=3) == OVER_REPORT_BYTES
    assert await store.attach(TID, item(3), 10_000, max_files=3) == 300
    assert await store.attach(TID, item(4), 10_000) == 400  # no count limit given
    await db["complaints"].update_one({"_id": TID}, {"$set": {"state": "closed"}})
    assert await store.attach(TID, item(5), 10_000, max_files=1) == REPORT_CLOSED


async def test_listings_racing_for_the_last_place_list_exactly_one(db: Any) -> None:
    _, store = await setup(db, EvidenceLimits())
    for n in range(4):
        assert await store.attach(TID, item(n), 1_000_000, max_files=5) >= 0
    results = await asyncio.gather(
        *(store.attach(TID, item(10 + n), 1_000_000, max_files=5) for n in range(8))
    )
    assert sorted(results) == [OVER_REPORT_FILES] * 7 + [500]
    assert len(await listed(db)) == 5
    doc = await db["complaints"].find_one({"_id": TID})
    assert doc["evidence_bytes"] == 500


async def files_of(db: Any) -> int:
    return int(await db["evidence.files"].count_documents({"metadata.tracking_id": TID}))


async def test_an_upload_over_the_limit_is_refused_and_stores_nothing(db: Any) -> None:
    limits = EvidenceLimits(max_file_bytes=1_000_000, max_report_bytes=10_000_000, max_files=2)
    handlers, _ = await setup(db, limits)

    async def chunks() -> AsyncIterator[bytes]:
        yield PDF

    for n in range(2):
        await handlers.upload(EvidenceHeader(TID, CODE, f"{n}.pdf", "application/pdf"), chunks())
    chunks_before = await db["evidence.chunks"].count_documents({})
    with pytest.raises(ValidationError) as err:
        await handlers.upload(EvidenceHeader(TID, CODE, "2.pdf", "application/pdf"), chunks())
    assert str(err.value) == "content: all evidence of one report must be at most 2 files"
    assert await files_of(db) == 2 and len(await listed(db)) == 2
    assert await db["evidence.chunks"].count_documents({}) == chunks_before


async def test_uploads_racing_for_the_last_place_one_wins_the_other_leaves_nothing(
    db: Any,
) -> None:
    limits = EvidenceLimits(max_file_bytes=1_000_000, max_report_bytes=10_000_000, max_files=2)
    handlers, _ = await setup(db, limits)

    async def whole() -> AsyncIterator[bytes]:
        yield PDF

    await handlers.upload(EvidenceHeader(TID, CODE, "first.pdf", "application/pdf"), whole())
    # Both uploads pass the early check (one place left) before either is listed.
    checked = [asyncio.Event(), asyncio.Event()]
    go = asyncio.Event()

    async def held(i: int) -> AsyncIterator[bytes]:
        yield PDF[:10_000]  # the sniffed head: the early checks are behind
        checked[i].set()
        await go.wait()
        yield PDF[10_000:]

    racing = [
        asyncio.create_task(
            handlers.upload(EvidenceHeader(TID, CODE, f"r{i}.pdf", "application/pdf"), held(i))
        )
        for i in range(2)
    ]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in checked)), 10)
    go.set()
    outcomes = await asyncio.gather(*racing, return_exceptions=True)
    won = [o for o in outcomes if isinstance(o, StoredEvidence)]
    lost = [o for o in outcomes if isinstance(o, ValidationError)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert "must be at most 2 files" in str(lost[0])
    ids = await listed(db)
    assert len(ids) == 2 and won[0].evidence_id in ids
    # The loser's file is gone (files document and chunks); only the listed ones remain.
    stored = {str(d["_id"]) async for d in db["evidence.files"].find({}, {"_id": 1})}
    assert stored == set(ids)
    chunk_owners = {str(c) for c in await db["evidence.chunks"].distinct("files_id")}
    assert chunk_owners == set(ids)

"""Group commit and idempotency against the real database process."""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import UTC, datetime

from services.common.ids import new_tracking_id
from services.common.settings import Secret
from services.intake.domain import (
    Channel,
    Classification,
    Contact,
    Privacy,
    SubmitComplaint,
    receive,
)
from services.intake.identity import IdentityCipher
from services.intake.store import MongoComplaintStore

CIPHER = IdentityCipher.from_config(Secret(f"k1:{base64.b64encode(os.urandom(32)).decode()}"), "k1")


def command(key: str, title: str = "Jalan rusak", name: str = "") -> SubmitComplaint:
    return SubmitComplaint(
        Channel.WEB,
        Privacy.CONFIDENTIAL,
        Classification.COMPLAINT,
        title,
        "Berlubang besar",
        "51.08",
        Contact(name=name, phone="081234567890" if name else ""),
        key,
    )


async def make_store(db: object) -> MongoComplaintStore:
    store = MongoComplaintStore(db["complaints"], CIPHER)  # type: ignore[index]
    await store.ensure_indexes()
    return store


async def test_concurrent_retries_with_one_key_store_one_complaint(db: object) -> None:
    store = await make_store(db)
    now = datetime.now(UTC)
    results = await asyncio.gather(
        *(store.add(receive(command("retry-1"), new_tracking_id(), now)) for _ in range(40))
    )
    assert len({r.tracking_id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    assert await db["complaints"].count_documents({"idem": "web:retry-1"}) == 1  # type: ignore[index]
    # a later, separate retry gets the same answer from the unique index
    late = await store.add(receive(command("retry-1"), new_tracking_id(), now))
    assert late.duplicate and late.tracking_id == results[0].tracking_id
    await store.close()


async def test_a_burst_is_stored_in_shared_writes_each_with_its_event(db: object) -> None:
    store = await make_store(db)
    now = datetime.now(UTC)
    results = await asyncio.gather(
        *(store.add(receive(command(f"k{i}"), new_tracking_id(), now)) for i in range(300))
    )
    assert len({r.tracking_id for r in results}) == 300
    docs = await db["complaints"].find({}, {"_outbox": 1, "_outbox_pending": 1}).to_list(None)  # type: ignore[index]
    assert len(docs) == 300
    assert all(d["_outbox_pending"] and len(d["_outbox"]) == 1 for d in docs)
    await store.close()


async def test_identity_is_stored_only_encrypted(db: object) -> None:
    store = await make_store(db)
    stored = await store.add(
        receive(command("enc-1", name="Ni Luh Sekar"), new_tracking_id(), datetime.now(UTC))
    )
    raw = await db["complaints"].find_one({"_id": stored.tracking_id})  # type: ignore[index]
    assert "Ni Luh Sekar" not in repr(raw) and "081234567890" not in repr(raw)
    assert raw["reporter"]["kid"] == "k1"
    await store.close()

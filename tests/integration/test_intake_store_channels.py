"""The complaint store's duplicate detection, follow-up codes, privacy raising and
forgetting of dedupe keys, against the real database process."""

from __future__ import annotations

import asyncio
import base64
import os
from dataclasses import replace
from datetime import UTC, datetime

from lapor.v1 import events_pb2

from services.common.ids import new_tracking_id
from services.common.settings import Secret
from services.common.topics import REPORTER_ACTIONS
from services.intake.abuse import dedupe_key
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
CMD = SubmitComplaint(
    Channel.WEB,
    Privacy.CONFIDENTIAL,
    Classification.COMPLAINT,
    "Jalan rusak",
    "Berlubang",
    "51.08",
    Contact(name="Ketut", phone="+6281234567890"),
)
NOW = datetime.now(UTC)


async def make_store(db: object) -> MongoComplaintStore:
    store = MongoComplaintStore(db["complaints"], CIPHER)  # type: ignore[index]
    await store.ensure_indexes()
    return store


def keys(base: str, bucket: int) -> tuple[str, ...]:
    return (dedupe_key(bucket, base), dedupe_key(bucket + 1, base))


def complaint(key: str, dedupe: tuple[str, ...] = keys("h", 1)) -> object:
    cmd = replace(CMD, idempotency_key=key)
    return receive(
        cmd,
        new_tracking_id(),
        NOW,
        follow_up_hash="s256$00$00",
        dedupe_keys=dedupe,
    )


async def test_the_same_dedupe_key_returns_the_first_even_racing(db: object) -> None:
    store = await make_store(db)
    results = await asyncio.gather(*(store.add(complaint(f"k{i}")) for i in range(20)))  # type: ignore[arg-type]
    assert len({r.tracking_id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    later = await store.add(complaint("k99", keys("h", 2)))  # type: ignore[arg-type]
    assert later.duplicate and later.tracking_id == results[0].tracking_id
    other = await store.add(complaint("k100", keys("g", 2)))  # type: ignore[arg-type]
    assert not other.duplicate
    assert await db["complaints"].count_documents({}) == 2  # type: ignore[index]
    assert await store.forget_dedupe_keys(2) == 1  # only the first report's bucket 1 expired
    assert await store.forget_dedupe_keys(4) == 2
    docs = await db["complaints"].find({}, {"idem": 1}).to_list(None)  # type: ignore[index]
    assert all(len(d["idem"]) == 1 and d["idem"][0].startswith("web:") for d in docs)
    # forgotten: the same report is new again, its idempotency key still holds
    again = await store.add(complaint("k100", keys("g", 2)))  # type: ignore[arg-type]
    assert again.duplicate and again.tracking_id == other.tracking_id
    await store.close()


async def test_raising_to_anonymous_drops_the_identity_with_its_event(db: object) -> None:
    store = await make_store(db)
    stored = await store.add(complaint("r1", ()))  # type: ignore[arg-type]
    tid = stored.tracking_id
    await store.add_follow_up_code(tid, "s256$01$01")
    assert not await store.raise_privacy(tid, Privacy.PUBLIC, Privacy.ANONYMOUS, NOW)
    assert await store.raise_privacy(tid, Privacy.CONFIDENTIAL, Privacy.ANONYMOUS, NOW)
    doc = await db["complaints"].find_one({"_id": tid})  # type: ignore[index]
    assert doc["privacy"] == "anonymous" and "reporter" not in doc and not doc["reachable"]
    assert doc["follow_up_codes"] == ["s256$00$00", "s256$01$01"]
    event = doc["_outbox"][-1]
    assert event["topic"] == REPORTER_ACTIONS and event["key"] == tid
    action = events_pb2.ReporterAction.FromString(event["value"])
    assert (action.action, action.privacy, action.meta.tracking_id) == (
        "privacy_raised",
        "anonymous",
        tid,
    )
    await store.close()

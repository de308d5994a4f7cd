"""Group commit and idempotency against the real database process."""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import UTC, datetime

from lapor.v1 import events_pb2
from prometheus_client import REGISTRY

from services.common.ids import new_tracking_id
from services.common.settings import Secret
from services.common.topics import COMPLAINTS_RECEIVED
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
    assert all(r.same_request for r in results if r.duplicate)  # retries: each may get a code
    assert await db["complaints"].count_documents({"idem": "web:retry-1"}) == 1  # type: ignore[index]
    # a later, separate retry gets the same answer from the unique index
    late = await store.add(receive(command("retry-1"), new_tracking_id(), now))
    assert late.duplicate and late.same_request and late.tracking_id == results[0].tracking_id
    await store.close()


def group_commits() -> tuple[float, float]:
    """(writes, complaints written) so far: the group-commit size histogram's count and sum
    (process-wide: compare before and after)."""
    count = REGISTRY.get_sample_value("lapor_intake_group_commit_size_count") or 0.0
    total = REGISTRY.get_sample_value("lapor_intake_group_commit_size_sum") or 0.0
    return count, total


async def test_a_burst_is_stored_in_shared_writes_each_with_its_event(db: object) -> None:
    store = await make_store(db)
    now = datetime.now(UTC)
    writes_before, written_before = group_commits()
    results = await asyncio.gather(
        *(store.add(receive(command(f"k{i}"), new_tracking_id(), now)) for i in range(300))
    )
    writes_after, written_after = group_commits()
    assert len({r.tracking_id for r in results}) == 300
    # Every complaint was written once, and the writes were shared: one write per complaint
    # would be 300 writes.
    assert written_after - written_before == 300
    assert 1 <= writes_after - writes_before <= 300 / 2
    assert len(await db["complaints"].find({}).to_list(None)) == 300  # type: ignore[index]
    await assert_one_queued_event_each(db, {r.tracking_id for r in results})
    await store.close()


async def assert_one_queued_event_each(db: object, tracking_ids: set[str]) -> None:
    """Each complaint's ComplaintReceived waits in the queue, and only theirs; the complaint
    keeps it for replay and has nothing pending in its own outbox."""
    queued = await db["complaints_outbox"].find({}).sort("_id", 1).to_list(None)  # type: ignore[index]
    assert sorted(e["key"] for e in queued) == sorted(tracking_ids)
    for entry in queued:
        event = events_pb2.ComplaintReceived.FromString(entry["value"])
        assert entry["topic"] == COMPLAINTS_RECEIVED and event.meta.tracking_id == entry["key"]
    docs = await db["complaints"].find({"_id": {"$in": list(tracking_ids)}}).to_list(None)  # type: ignore[index]
    assert all(not d["_outbox_pending"] and d["_outbox"] == [] for d in docs)
    kept = {d["_id"]: [e["id"] for e in d["_published"]] for d in docs}
    assert kept == {e["key"]: [e["id"]] for e in queued}


async def test_a_batch_with_stored_duplicates_stores_the_rest_and_their_events_only(
    db: object,
) -> None:
    store = await make_store(db)
    now = datetime.now(UTC)
    first = await asyncio.gather(
        *(store.add(receive(command(f"d{i}"), new_tracking_id(), now)) for i in range(3))
    )
    # One burst mixes retries of all three (each refused by the unique index in its own
    # write) with new reports: one transaction refuses at its first duplicate; the rest are
    # found by one query and the new ones stored in the next attempt.
    keys = ["d0", "n0", "d1", "n1", "n2", "d2", "n3"]
    results = await asyncio.gather(
        *(store.add(receive(command(k), new_tracking_id(), now)) for k in keys)
    )
    by_key = dict(zip(keys, results, strict=True))
    for i, original in enumerate(first):
        assert by_key[f"d{i}"].duplicate and by_key[f"d{i}"].tracking_id == original.tracking_id
    new = {by_key[k].tracking_id for k in keys if k.startswith("n")}
    assert not any(by_key[k].duplicate for k in keys if k.startswith("n")) and len(new) == 4
    assert await db["complaints"].count_documents({}) == 7  # type: ignore[index]
    await assert_one_queued_event_each(db, new | {r.tracking_id for r in first})
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


async def test_a_caller_that_gave_up_does_not_spoil_the_answers_of_its_batch(db: object) -> None:
    """Submissions written in one shared write; two callers give up before it ends (their
    deadline passed: their futures are cancelled), one of them the leader of a racing retry.
    Every other caller still gets its stored report, the retry its leader's."""
    store = await make_store(db)
    now = datetime.now(UTC)
    complaints = [receive(command(f"gave-up-{i}"), new_tracking_id(), now) for i in range(10)]
    retry = receive(command("gave-up-0"), new_tracking_id(), now)
    tasks = [asyncio.create_task(store.add(c)) for c in [*complaints, retry]]
    await asyncio.sleep(0)  # every submission is queued; the writer has not run yet
    tasks[0].cancel()
    tasks[5].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert isinstance(results[5], asyncio.CancelledError)
    answered = [r for i, r in enumerate(results) if i not in (0, 5)]
    assert all(not isinstance(r, BaseException) for r in answered), answered
    for complaint, stored in zip(complaints, results, strict=False):
        if not isinstance(stored, BaseException):
            assert stored.tracking_id == complaint.tracking_id and not stored.duplicate
    last = results[-1]
    assert not isinstance(last, BaseException)
    assert last.duplicate and last.same_request and last.tracking_id == complaints[0].tracking_id
    # What the callers who gave up sent was stored all the same: their retry finds it.
    assert await db["complaints"].count_documents({}) == 10  # type: ignore[index]
    await store.close()


async def test_the_submitting_client_is_kept_and_told_to_later_duplicates(db: object) -> None:
    store = await make_store(db)
    now = datetime.now(UTC)
    first = await store.add(
        receive(command("client-1"), new_tracking_id(), now, client_id="social-bot")
    )
    assert first.client_id == "social-bot" and not first.duplicate
    replay = await store.add(
        receive(command("client-1"), new_tracking_id(), now, client_id="someone-else")
    )
    assert replay.duplicate and replay.same_request and replay.client_id == "social-bot"
    doc = await db["complaints"].find_one({"_id": first.tracking_id})  # type: ignore[index]
    assert doc["client"] == "social-bot"
    await store.close()

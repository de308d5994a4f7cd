"""The complaint store's duplicate detection, follow-up codes, privacy raising and
forgetting of dedupe keys, against the real database process."""

from __future__ import annotations

import asyncio
import base64
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from lapor.v1 import events_pb2

from services.common.clock import ManualClock
from services.common.errors import ResourceExhausted
from services.common.ids import new_tracking_id
from services.common.settings import Secret
from services.common.topics import REPORTER_ACTIONS
from services.intake.abuse import AbuseHasher, dedupe_bucket, dedupe_key
from services.intake.channel_auth import ChannelClient
from services.intake.domain import (
    Channel,
    Classification,
    Contact,
    InstitutionOrigin,
    Privacy,
    SubmitComplaint,
    fingerprint,
    receive,
)
from services.intake.handlers import IntakeHandlers
from services.intake.identity import IdentityCipher
from services.intake.limits import Hit, RateLimits
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
    # Each had its own key: the same text only, never the same request (no code for them).
    assert not any(r.same_request for r in results)
    later = await store.add(complaint("k99", keys("h", 2)))  # type: ignore[arg-type]
    assert later.duplicate and later.tracking_id == results[0].tracking_id
    assert not later.same_request
    other = await store.add(complaint("k100", keys("g", 2)))  # type: ignore[arg-type]
    assert not other.duplicate
    assert await db["complaints"].count_documents({}) == 2  # type: ignore[index]
    assert await store.forget_dedupe_keys(2) == 1  # only the first report's bucket 1 expired
    assert await store.forget_dedupe_keys(4) == 2
    docs = await db["complaints"].find({}, {"idem": 1}).to_list(None)  # type: ignore[index]
    assert all(len(d["idem"]) == 1 and d["idem"][0].startswith("web:") for d in docs)
    # forgotten: the same report is new again, its idempotency key still holds
    again = await store.add(complaint("k100", keys("g", 2)))  # type: ignore[arg-type]
    assert again.duplicate and again.same_request and again.tracking_id == other.tracking_id
    await store.close()


async def test_reports_sharing_only_the_email_are_one_report(db: object) -> None:
    store = await make_store(db)
    hasher, window = AbuseHasher(b"k" * 32), timedelta(minutes=10)
    at = datetime(2026, 1, 5, 9, 9, tzinfo=UTC)
    bucket = dedupe_bucket(at, window)

    def reported_by(contact: Contact, key: str, body: str = CMD.body) -> object:
        cmd = replace(CMD, reporter=contact, idempotency_key=key, body=body)
        dedupe = hasher.dedupe_keys(cmd, fingerprint(cmd), at, window)
        return receive(cmd, new_tracking_id(), NOW, dedupe_keys=tuple(dedupe))

    first = await store.add(reported_by(Contact(phone="+6281234567890", email="a@b.id"), "e1"))  # type: ignore[arg-type]
    resend = await store.add(reported_by(Contact(email="A@B.id", handle="x:@a"), "e2"))  # type: ignore[arg-type]
    assert resend.duplicate and resend.tracking_id == first.tracking_id
    other = await store.add(reported_by(Contact(email="a@b.id"), "e3", body="Lain"))  # type: ignore[arg-type]
    assert not other.duplicate
    doc = await db["complaints"].find_one({"_id": first.tracking_id})  # type: ignore[index]
    assert len(doc["idem"]) == 5  # the scope, then phone and e-mail in two windows
    assert not any("81234567890" in k or "a@b.id" in k for k in doc["idem"])
    assert await store.forget_dedupe_keys(bucket + 1) == 2  # both reports' first window
    assert await store.forget_dedupe_keys(bucket + 2) == 2
    docs = await db["complaints"].find({}, {"idem": 1}).to_list(None)  # type: ignore[index]
    assert sorted(d["idem"] for d in docs) == [["web:e1"], ["web:e3"]]
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


async def test_retries_racing_a_copy_of_the_text_get_no_code_through_it(db: object) -> None:
    """Copies of one request (one key) racing each other, whose text and contact match a
    stored report: the leader matched only the text, so neither it nor its followers count
    as the same request (none may be handed a follow-up code for the stored report)."""
    store = await make_store(db)
    original = await store.add(complaint("mine", keys("h", 5)))  # type: ignore[arg-type]
    copies = await asyncio.gather(
        *(store.add(complaint("theirs", keys("h", 5))) for _ in range(10))  # type: ignore[arg-type]
    )
    assert {c.tracking_id for c in copies} == {original.tracking_id}
    assert all(c.duplicate and not c.same_request for c in copies)
    await store.close()


async def test_plain_institution_references_of_older_reports_are_hashed(
    db: object,
) -> None:
    """Reports stored before references were hashed keep `institution_system:ref:<source>:
    <reference>` in their scope: the backfill replaces it by the keyed hash, after which a
    retry of such a report (hashed scope) still finds it."""
    store = await make_store(db)
    hasher = AbuseHasher(b"k" * 32)
    complaints = db["complaints"]  # type: ignore[index]
    origin = InstitutionOrigin("aduan-buleleng", "A/17:x")
    cmd = replace(CMD, channel=Channel.INSTITUTION_SYSTEM, institution=origin)
    old = receive(cmd, new_tracking_id(), NOW, idempotency_scope="unused")
    await store.add(old)  # type: ignore[arg-type]
    await complaints.update_one(  # as the version before stored it
        {"_id": old.tracking_id},
        {
            "$set": {
                "idem": ["institution_system:ref:aduan-buleleng:A/17:x", "dedupe:000000000001:h"]
            }
        },
    )
    await complaints.insert_one({"_id": "other", "idem": "institution_system:ref:sys-b:9"})
    assert await store.hash_plain_references(hasher.reference_key) == 2
    doc = await complaints.find_one({"_id": old.tracking_id})
    scope = (
        f"institution_system:refh:aduan-buleleng:{hasher.reference_key('aduan-buleleng', 'A/17:x')}"
    )
    assert doc["idem"] == [scope, "dedupe:000000000001:h"]
    assert "A/17" not in repr(doc)
    other = await complaints.find_one({"_id": "other"})
    assert other["idem"] == f"institution_system:refh:sys-b:{hasher.reference_key('sys-b', '9')}"
    retry = await store.add(receive(cmd, new_tracking_id(), NOW, idempotency_scope=scope))  # type: ignore[arg-type]
    assert retry.duplicate and retry.same_request and retry.tracking_id == old.tracking_id
    assert await store.hash_plain_references(hasher.reference_key) == 0  # nothing left
    await store.close()


async def test_anonymous_reports_give_up_scopes_that_lead_to_the_reporter(db: object) -> None:
    """After the retention, an anonymous report's scope that is a keyed hash of a post or an
    institution reference becomes 'forgotten:<tracking id>'; other reports, other scopes
    (an idempotency key) and the dedupe keys stay; running it again changes nothing."""
    store = await make_store(db)
    complaints = db["complaints"]  # type: ignore[index]
    old, recent = NOW - timedelta(days=8), NOW - timedelta(days=1)
    docs = [
        ("A1", "anonymous", old, ["social_media:post:h1", "dedupe:000000000009:x"]),
        ("A2", "anonymous", old, "institution_system:refh:aduan-buleleng:h2"),
        ("A3", "anonymous", old, "web:key-1"),
        ("A4", "anonymous", recent, "social_media:post:h4"),
        ("C1", "confidential", old, "social_media:post:h5"),
    ]
    await complaints.insert_many(
        [{"_id": i, "privacy": p, "received_at": at, "idem": idem} for i, p, at, idem in docs]
    )
    assert await store.forget_anonymous_scopes(NOW - timedelta(days=7)) == 2
    kept = {d["_id"]: d["idem"] async for d in complaints.find({})}
    assert kept == {
        "A1": ["forgotten:A1", "dedupe:000000000009:x"],
        "A2": "forgotten:A2",
        "A3": "web:key-1",
        "A4": "social_media:post:h4",
        "C1": "social_media:post:h5",
    }
    assert await store.forget_anonymous_scopes(NOW - timedelta(days=7)) == 0
    await store.close()


async def test_a_plain_reference_whose_hash_another_report_holds_gives_its_scope_up(
    db: object,
) -> None:
    """During a rolling upgrade an old pod stored the reference in plain text and a retry on
    a new pod stored a second report under its hash: the backfill gives the first report's
    scope up instead of failing on the unique index at every retry."""
    store = await make_store(db)
    hasher = AbuseHasher(b"k" * 32)
    complaints = db["complaints"]  # type: ignore[index]
    hashed = f"institution_system:refh:sys-c:{hasher.reference_key('sys-c', '42')}"
    await complaints.insert_many(
        [
            {"_id": "OLD", "idem": "institution_system:ref:sys-c:42"},
            {"_id": "RETRY", "idem": hashed},
        ]
    )
    assert await store.hash_plain_references(hasher.reference_key) == 1
    kept = {d["_id"]: d["idem"] async for d in complaints.find({})}
    assert kept == {"OLD": "forgotten:OLD", "RETRY": hashed}
    assert await store.hash_plain_references(hasher.reference_key) == 0
    await store.close()


class OverTheLimit:
    """The rate limiter port refusing every submission."""

    async def hit(self, hits: list[Hit]) -> None:
        raise ResourceExhausted("over the limit", 60.0)


async def test_a_retry_on_a_new_pod_finds_the_report_an_old_pod_stored_in_plain(
    db: object,
) -> None:
    """Rolling upgrade: an old pod stored an institution system's report under its plain
    reference; the retry reaching a new pod (which keys it by the hash) gets that report
    back as the same request (with a follow-up code, the same client), under the rate limit
    and over it, and nothing new is stored."""
    store = await make_store(db)
    hasher = AbuseHasher(b"k" * 32)
    complaints = db["complaints"]  # type: ignore[index]
    client = ChannelClient("aduan-buleleng", frozenset({Channel.INSTITUTION_SYSTEM}))
    origin = InstitutionOrigin("aduan-buleleng", "ADU/2026/0117")
    cmd = replace(CMD, channel=Channel.INSTITUTION_SYSTEM, institution=origin)
    at = NOW.replace(microsecond=NOW.microsecond // 1000 * 1000)
    dedupe = hasher.dedupe_keys(cmd, fingerprint(cmd), at, timedelta(minutes=10))
    old = receive(  # as the version before stored it
        cmd,
        new_tracking_id(),
        at,
        idempotency_scope="institution_system:ref:aduan-buleleng:ADU/2026/0117",
        dedupe_keys=tuple(dedupe),
        client_id=client.client_id,
    )
    await store.add(old)

    def new_pod(**options: Any) -> IntakeHandlers:
        return IntakeHandlers(
            store, ManualClock(at), new_tracking_id, lambda _: True, hasher=hasher, **options
        )

    limits = replace(RateLimits.unlimited(), dedupe_window=timedelta(minutes=10))
    for handlers in (new_pod(limits=limits), new_pod(limits=limits, limiter=OverTheLimit())):
        retry = await handlers.submit_from(cmd, client)
        assert retry.stored.tracking_id == old.tracking_id
        assert retry.stored.duplicate and retry.stored.same_request  # not only the same text
        assert retry.follow_up_code
        assert await complaints.count_documents({}) == 1
    other = replace(cmd, institution=InstitutionOrigin("aduan-buleleng", "ADU/2026/0118"))
    assert not (await new_pod().submit_from(other, client)).stored.duplicate  # another report
    await store.close()


async def test_a_report_stored_under_both_forms_is_answered_by_the_hashed_one(
    db: object,
) -> None:
    """A retry stored twice while old and new pods ran side by side: later retries get the
    report under the hash, the one that keeps its scope when the backfill runs."""
    store = await make_store(db)
    hasher = AbuseHasher(b"k" * 32)
    complaints = db["complaints"]  # type: ignore[index]
    origin = InstitutionOrigin("sys-c", "42")
    cmd = replace(CMD, channel=Channel.INSTITUTION_SYSTEM, institution=origin)
    hashed = f"institution_system:refh:sys-c:{hasher.reference_key('sys-c', '42')}"
    for tid, scope in (("OLD", "institution_system:ref:sys-c:42"), ("RETRY", hashed)):
        await store.add(receive(cmd, tid, NOW, idempotency_scope=scope))
    handlers = IntakeHandlers(
        store, ManualClock(NOW), new_tracking_id, lambda _: True, hasher=hasher
    )
    assert (await handlers.submit(cmd)).tracking_id == "RETRY"
    assert await store.hash_plain_references(hasher.reference_key) == 1
    assert (await handlers.submit(cmd)).tracking_id == "RETRY"
    assert await complaints.count_documents({}) == 2
    await store.close()

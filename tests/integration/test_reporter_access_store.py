"""Access by verified contact against the real database process: a code's tries are taken
atomically (parallel guesses cannot exceed them), a code is consumed once, tokens are
checked by hash, report and expiry, wrong-code counts are shared by every replica (two
handler sets over one database), and every collection expires its documents by TTL."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import timedelta
from typing import Any

import pytest

from services.common.clock import ManualClock
from services.common.errors import PermissionDenied, ResourceExhausted
from services.common.ids import new_tracking_id
from services.intake.abuse import AbuseHasher
from services.intake.access_codes import (
    AccessCodeMessage,
    AccessHandlers,
    AccessSettings,
    ContactPoint,
    GuessGuard,
    token_hash,
)
from services.intake.access_store import (
    ATTEMPTS,
    CODES,
    INBOX,
    TOKENS,
    CollectionCodeSender,
    MongoAccessCodes,
    MongoAccessTokens,
    MongoAttemptLog,
    code_sender,
)
from services.intake.domain import Contact
from services.intake.reporter import ReporterHandlers
from services.intake.reporter_store import MongoReportRepository
from services.intake.reporter_wiring import verify_code

PHONE = "+6281234567890"


async def test_a_codes_tries_are_taken_atomically_and_it_is_consumed_once(db: Any) -> None:
    codes, now = MongoAccessCodes(db[CODES]), ManualClock().now()
    await codes.ensure_indexes()
    await codes.put("T1", "h1", now + timedelta(minutes=10), 5)
    taken = await asyncio.gather(*(codes.take_attempt("T1", now) for _ in range(20)))
    assert sorted(t for t in taken if t) == ["h1"] * 5
    assert await codes.take_attempt("T1", now) is None
    await codes.put("T1", "h2", now + timedelta(minutes=10), 5)  # a new code replaces it
    assert await codes.take_attempt("T1", now) == "h2"
    assert await codes.take_attempt("T1", now + timedelta(minutes=10)) is None  # expired
    await codes.touch("T1", now + timedelta(minutes=10))  # the code is left alone
    assert await codes.take_attempt("T1", now) == "h2"
    decoy = await db[CODES].find_one({"_id": "decoy:T1"})
    assert decoy["tries_left"] == 0 and decoy["expires_at"] is not None  # written, like put
    await db[CODES].delete_one({"_id": "decoy:T1"})
    assert await codes.take_attempt("T2", now) is None
    assert not await codes.consume("T1", "h1")
    consumed = await asyncio.gather(*(codes.consume("T1", "h2") for _ in range(5)))
    assert consumed.count(True) == 1
    assert await db[CODES].count_documents({}) == 0


async def test_tokens_are_checked_by_hash_report_and_expiry(db: Any) -> None:
    tokens, now = MongoAccessTokens(db[TOKENS]), ManualClock().now()
    await tokens.ensure_indexes()
    await tokens.issue(token_hash("lat_secret"), "T1", now + timedelta(minutes=30))
    assert await tokens.valid(token_hash("lat_secret"), "T1", now)
    assert not await tokens.valid(token_hash("lat_secret"), "T2", now)
    assert not await tokens.valid(token_hash("lat_other"), "T1", now)
    assert not await tokens.valid(token_hash("lat_secret"), "T1", now + timedelta(minutes=30))
    stored = await db[TOKENS].find_one({})
    assert "lat_secret" not in str(stored)


async def test_attempts_keep_the_last_few_and_the_latest_expiry(db: Any) -> None:
    log, clock = MongoAttemptLog(db[ATTEMPTS]), ManualClock()
    await log.ensure_indexes()
    start = clock.now()
    await asyncio.gather(
        *(log.add("wrong:T1", start, 5, start + timedelta(minutes=15)) for _ in range(3))
    )
    for i in range(1, 5):
        at = start + timedelta(minutes=i)
        await log.add("wrong:T1", at, 5, at + timedelta(minutes=15))
    times = await log.times("wrong:T1")
    assert times == [start, start + timedelta(minutes=1), *(start + timedelta(minutes=i) for i in range(2, 5))]  # fmt: skip
    doc = await db[ATTEMPTS].find_one({"_id": "wrong:T1"})
    assert doc["expires_at"] == start + timedelta(minutes=19)
    assert await log.times("wrong:T2") == []


async def test_parallel_claims_never_pass_the_limit(db: Any) -> None:
    """20 access-code requests for one report at once, a limit of 3 per window: exactly 3
    pass (the decision is the write's, not a read's before it); the window moves on."""
    log, clock = MongoAttemptLog(db[ATTEMPTS]), ManualClock()
    now, window = clock.now(), timedelta(minutes=15)
    key = f"request:{uuid.uuid4().hex[:8]}"
    passed = await asyncio.gather(
        *(log.claim(key, now, 3, now - window, now + window) for _ in range(20))
    )
    assert sum(passed) == 3 and len(await log.times(key)) == 3
    later = now + window + timedelta(seconds=1)  # the first three are out of the window
    claims = [await log.claim(key, later, 3, later - window, later + window) for _ in range(4)]
    assert claims == [True, True, True, False]
    assert await log.times(key) == [later] * 3


async def test_every_collection_expires_its_documents(db: Any) -> None:
    for store in (
        MongoAccessCodes(db[CODES]),
        MongoAccessTokens(db[TOKENS]),
        MongoAttemptLog(db[ATTEMPTS]),
        CollectionCodeSender(db[INBOX]),
    ):
        await store.ensure_indexes()
    for name in (CODES, TOKENS, ATTEMPTS, INBOX):
        info = await db[name].index_information()
        ttl = [i for i in info.values() if "expireAfterSeconds" in i]
        assert [i["key"] for i in ttl] == [[("expires_at", 1)]], name


async def test_the_collection_sender_keeps_the_code_and_the_contacts_keyed_hash(
    db: Any,
) -> None:
    sender = code_sender("collection", db)
    now = ManualClock().now()
    await sender.send(
        AccessCodeMessage("T1", ContactPoint("phone", PHONE), "c" * 40, "123456", now)
    )
    doc = await db[INBOX].find_one({"tracking_id": "T1"}, {"_id": 0})
    assert doc == {"tracking_id": "T1", "contact_hash": "c" * 40, "code": "123456", "expires_at": now}  # fmt: skip
    assert code_sender("log", db).name == "log"
    with pytest.raises(ValueError):
        code_sender("sms", db)


def replica(db: Any, clock: ManualClock, sealed: dict[str, Contact]) -> tuple[ReporterHandlers, AccessHandlers]:  # fmt: skip
    """One intake replica's reporter handlers over the shared database."""
    reports = MongoReportRepository(db["complaints"])
    attempts = MongoAttemptLog(db[ATTEMPTS])
    guard = GuessGuard(attempts, clock, 5, timedelta(minutes=15))
    tokens = MongoAccessTokens(db[TOKENS])
    ids = itertools.count()

    def open_contact(doc: dict[str, Any]) -> Contact | None:
        return sealed.get(doc["_id"])

    handlers = ReporterHandlers(
        reports, verify_code, open_contact, clock, lambda: f"e{next(ids)}", 2, guard, tokens
    )
    access = AccessHandlers(
        reports=reports,
        open_contact=open_contact,
        hasher=AbuseHasher(b"k" * 32),
        codes=MongoAccessCodes(db[CODES]),
        tokens=tokens,
        attempts=attempts,
        guard=guard,
        sender=CollectionCodeSender(db[INBOX]),
        clock=clock,
        settings=AccessSettings(),
    )
    return handlers, access


async def test_replicas_share_the_wrong_code_count_and_the_codes(db: Any) -> None:
    clock = ManualClock()
    tid, unknown = new_tracking_id(), new_tracking_id()
    await db["complaints"].insert_one(
        {"_id": tid, "privacy": "confidential", "reporter": {"kid": "k"}}
    )
    sealed = {tid: Contact("Siti", PHONE, "")}
    (one, one_access), (two, two_access) = replica(db, clock, sealed), replica(db, clock, sealed)
    for target in (tid, unknown):
        for i in range(5):
            with pytest.raises(PermissionDenied):
                await (one if i % 2 else two).my_report(target, "WXYZ-WXYZ-WXYZ")
            clock.advance(timedelta(seconds=1))
        with pytest.raises(ResourceExhausted) as err:
            await one.my_report(target, "WXYZ-WXYZ-WXYZ")
        assert 0 < err.value.retry_after_seconds <= 15 * 60
    clock.advance(timedelta(minutes=16))
    await one_access.request_code(tid, "0812-3456-7890")
    await one_access.settle()
    sent = await db[INBOX].find_one({"tracking_id": tid})
    assert sent is not None and PHONE not in str(sent)
    issued = await two_access.verify_code(tid, sent["code"])  # another replica verifies
    assert (await one.my_report(tid, issued.token)).report["_id"] == tid
    with pytest.raises(PermissionDenied):
        await one_access.verify_code(tid, sent["code"])  # used
    stored = [await db[name].find().to_list(None) for name in (CODES, TOKENS, ATTEMPTS)]
    assert PHONE not in str(stored) and issued.token not in str(stored)

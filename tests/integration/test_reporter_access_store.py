"""Access by verified contact against the real database process: a code's tries are taken
atomically (parallel guesses cannot exceed them) and only with the contact it was sent to,
a code is consumed once, tokens are checked by hash, report and expiry, wrong-code counts
are shared by every replica (two handler sets over one database), the access-code limits
per tracking id and contact hold under parallel requests (a stranger's cannot shut the
reporter out), and every collection expires its documents by TTL."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import timedelta
from typing import Any

import pytest

from services.common.clock import ManualClock
from services.common.errors import DomainError, PermissionDenied, ResourceExhausted
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
STRANGER = "081299998888"


async def test_a_codes_tries_are_taken_atomically_and_it_is_consumed_once(db: Any) -> None:
    codes, now = MongoAccessCodes(db[CODES]), ManualClock().now()
    await codes.ensure_indexes()
    await codes.put("T1", "h1", "c1", now + timedelta(minutes=10), 5)
    taken = await asyncio.gather(*(codes.take_attempt("T1", "c1", now) for _ in range(20)))
    assert sorted(t for t in taken if t) == ["h1"] * 5
    assert await codes.take_attempt("T1", "c1", now) is None
    await codes.put("T1", "h2", "c1", now + timedelta(minutes=10), 5)  # a new code replaces it
    assert await codes.take_attempt("T1", "c1", now) == "h2"
    assert await codes.take_attempt("T1", "c1", now + timedelta(minutes=10)) is None  # expired
    await codes.touch("T1", now + timedelta(minutes=10))  # the code is left alone
    assert await codes.take_attempt("T1", "c1", now) == "h2"
    decoy = await db[CODES].find_one({"_id": "decoy:T1"})
    assert decoy["tries_left"] == 0 and decoy["expires_at"] is not None  # written, like put
    assert set(decoy) == {"_id", "hash", "contact_hash", "expires_at", "tries_left"}  # as put
    await db[CODES].delete_one({"_id": "decoy:T1"})
    assert await codes.take_attempt("T2", "c1", now) is None
    assert not await codes.consume("T1", "h1")
    consumed = await asyncio.gather(*(codes.consume("T1", "h2") for _ in range(5)))
    assert consumed.count(True) == 1
    assert await db[CODES].count_documents({}) == 0


async def test_another_contact_uses_none_of_a_codes_tries(db: Any) -> None:
    codes, now = MongoAccessCodes(db[CODES]), ManualClock().now()
    await codes.put("T1", "h1", "c1", now + timedelta(minutes=10), 5)
    others = await asyncio.gather(*(codes.take_attempt("T1", "c2", now) for _ in range(20)))
    assert others == [None] * 20
    stored = await db[CODES].find_one({"_id": "T1"})
    assert (stored["contact_hash"], stored["tries_left"]) == ("c1", 5)
    # ...yet each was a write to the code, as a try with its contact is: the same work
    assert (stored["tried"], stored["taken"]) == (20, False)
    assert await codes.take_attempt("T1", "c1", now) == "h1"
    assert await db[CODES].count_documents({"_id": "T1", "tried": 21, "tries_left": 4}) == 1
    await db[CODES].update_one({"_id": "T1"}, {"$unset": {"contact_hash": ""}})
    assert await codes.take_attempt("T1", "c1", now) is None  # stored before it was kept


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


async def test_an_expiry_of_an_earlier_version_is_changed_in_place(db: Any) -> None:
    """The periods are constants: one changed in a later version must not stop intake at
    start (create_index refuses the same key with another expiry)."""
    await db[INBOX].create_index("expires_at", expireAfterSeconds=3600)
    await db[CODES].create_index("expires_at", expireAfterSeconds=60)
    await CollectionCodeSender(db[INBOX]).ensure_indexes()
    await MongoAccessCodes(db[CODES]).ensure_indexes()
    for name, seconds in ((INBOX, CollectionCodeSender.KEEP_SECONDS), (CODES, 0)):
        info = await db[name].index_information()
        ttl = [i for i in info.values() if "expireAfterSeconds" in i]
        assert [(i["key"], i["expireAfterSeconds"]) for i in ttl] == [
            ([("expires_at", 1)], seconds)
        ], name


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
    access_guard = GuessGuard(attempts, clock, 5, timedelta(minutes=15), prefix="wrong-access")
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
        guard=access_guard,
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
    issued = await two_access.verify_code(tid, PHONE, sent["code"])  # another replica
    assert (await one.my_report(tid, issued.token)).report["_id"] == tid
    with pytest.raises(PermissionDenied):
        await one_access.verify_code(tid, PHONE, sent["code"])  # used
    stored = [await db[name].find().to_list(None) for name in (CODES, TOKENS, ATTEMPTS)]
    assert PHONE not in str(stored) and issued.token not in str(stored)


async def outcomes(calls: list[Any]) -> list[str]:
    """Runs the calls at once; what each got: "ok" or the error's class name."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, DomainError):
            raise r
    return [type(r).__name__ if isinstance(r, BaseException) else "ok" for r in results]


async def reported(db: Any) -> tuple[str, dict[str, Contact]]:
    tid = new_tracking_id()
    await db["complaints"].insert_one(
        {"_id": tid, "privacy": "confidential", "reporter": {"kid": "k"}}
    )
    return tid, {tid: Contact("Siti", PHONE, "")}


async def test_parallel_requests_pass_neither_limit_and_a_strangers_leave_the_reporter_theirs(
    db: Any,
) -> None:
    """Over two replicas at once: 20 requests with a stranger's contact, 3 pass (per tracking
    id and contact); the reporter still gets a code; 20 with 20 other contacts, 8 pass (12
    per tracking id). Each limit is decided in the write that counts."""
    clock = ManualClock()
    tid, sealed = await reported(db)
    (_, one), (_, two) = replica(db, clock, sealed), replica(db, clock, sealed)
    stranger = await outcomes(
        [(one if i % 2 else two).request_code(tid, STRANGER) for i in range(20)]
    )
    assert sorted(stranger) == ["ResourceExhausted"] * 17 + ["ok"] * 3
    await one.request_code(tid, "0812 3456 7890")
    await one.settle()
    assert await db[INBOX].count_documents({"tracking_id": tid}) == 1
    many = await outcomes(
        [(one if i % 2 else two).request_code(tid, f"0812999900{i:02d}") for i in range(20)]
    )
    assert sorted(many) == ["ResourceExhausted"] * 12 + ["ok"] * 8


async def test_parallel_tries_with_another_contact_pass_no_limit_and_leave_the_code_alone(
    db: Any,
) -> None:
    """20 tries at once with a stranger's contact, the right code among them, over two
    replicas: 5 are compared (each claimed before the comparison), none uses a try of the
    reporter's code or is accepted; the reporter's code still opens the report."""
    clock = ManualClock()
    tid, sealed = await reported(db)
    (reporter, one), (_, two) = replica(db, clock, sealed), replica(db, clock, sealed)
    await one.request_code(tid, PHONE)
    await one.settle()
    code = (await db[INBOX].find_one({"tracking_id": tid}))["code"]
    tries = await outcomes(
        [(one if i % 2 else two).verify_code(tid, STRANGER, code) for i in range(20)]
    )
    assert sorted(tries) == ["PermissionDenied"] * 5 + ["ResourceExhausted"] * 15
    assert (await db[CODES].find_one({"_id": tid}))["tries_left"] == 5
    issued = await two.verify_code(tid, "+62 812 3456 7890", code)
    assert (await reporter.my_report(tid, issued.token)).report["_id"] == tid

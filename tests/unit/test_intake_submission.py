"""Submission use cases with credentials, limits, follow-up codes and privacy raising,
over in-memory fakes of intake's ports."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from services.common.clock import ManualClock
from services.common.errors import (
    FailedPrecondition,
    PermissionDenied,
    ResourceExhausted,
    ValidationError,
)
from services.common.ids import new_tracking_id
from services.common.settings import Env
from services.intake.channel_auth import ChannelClient
from services.intake.domain import Channel, Classification, Contact, Privacy, SubmitComplaint
from services.intake.followup import FIELD, verify_follow_up_code
from services.intake.handlers import IntakeHandlers, Stored
from services.intake.limits import Hit, RateLimits

CMD = SubmitComplaint(
    Channel.WEB,
    Privacy.PUBLIC,
    Classification.COMPLAINT,
    "Pungli di kantor desa",
    "Diminta uang untuk surat pengantar.",
    "51.08",
    Contact(name="Made", phone="0812 3456 789"),
    idempotency_key="k-1",
)
WEB = ChannelClient("web-portal", frozenset({Channel.WEB}))


class FakeStore:
    """Intake's store port: one report per idempotency scope, and per dedupe key."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.scopes: dict[str, str] = {}
        self.dedupe: dict[str, str] = {}

    async def earlier(self, c: Any) -> Stored | None:
        same_request = c.idempotency_scope in self.scopes
        if same_request:
            tracking_id = self.scopes[c.idempotency_scope]
        else:
            found = [self.dedupe[k] for k in c.dedupe_keys if k in self.dedupe]
            if not found:
                return None
            tracking_id = found[0]
        doc = self.docs[tracking_id]
        return Stored(
            doc["_id"], doc["received_at"], True, doc["fingerprint"], same_request, doc["client"]
        )

    async def add(self, c: Any) -> Stored:
        found = await self.earlier(c)
        if found is not None:
            return found
        self.scopes[c.idempotency_scope] = c.tracking_id
        self.dedupe.update({k: c.tracking_id for k in c.dedupe_keys})
        self.docs[c.tracking_id] = {
            "_id": c.tracking_id,
            "received_at": c.received_at,
            "fingerprint": c.fingerprint,
            "client": c.client_id,
            "privacy": c.privacy.value,
            "reporter": c.reporter,
            FIELD: [c.follow_up_hash],
        }
        return Stored(c.tracking_id, c.received_at, False, c.fingerprint, False, c.client_id)

    async def get(self, tracking_id: str) -> dict[str, Any] | None:
        return self.docs.get(tracking_id)

    async def add_follow_up_code(self, tracking_id: str, code_hash: str) -> None:
        self.docs[tracking_id][FIELD].append(code_hash)

    async def raise_privacy(
        self, tracking_id: str, current: Privacy, wanted: Privacy, at: datetime
    ) -> bool:
        doc = self.docs[tracking_id]
        if doc["privacy"] != current.value:
            return False
        doc["privacy"] = wanted.value
        if wanted is Privacy.ANONYMOUS:
            doc.pop("reporter", None)
        return True


class CountingLimiter:
    def __init__(self, allow: int) -> None:
        self.allow = allow
        self.seen: list[list[Hit]] = []

    async def hit(self, hits: list[Hit]) -> None:
        self.seen.append(hits)
        if len(self.seen) > self.allow:
            raise ResourceExhausted("rate limit", 30)


def handlers(store: FakeStore, limiter: Any = None) -> IntakeHandlers:
    h = IntakeHandlers(store, ManualClock(), new_tracking_id, {"51", "51.08"}.__contains__)
    if limiter is not None:
        h.limiter = limiter
        h.limits = RateLimits.from_env(Env({}))
    return h


async def test_a_client_only_submits_on_its_channels_before_anything_else() -> None:
    store = FakeStore()
    with pytest.raises(PermissionDenied):
        await handlers(store).submit_from(replace(CMD, channel=Channel.SMS, title=""), WEB)
    assert store.docs == {}


async def test_rate_limited_submissions_store_nothing() -> None:
    store, limiter = FakeStore(), CountingLimiter(allow=1)
    h = handlers(store, limiter)
    await h.submit_from(CMD, WEB)
    with pytest.raises(ResourceExhausted):
        await h.submit_from(replace(CMD, idempotency_key="k-2", title="Pungli lagi"), WEB)
    assert len(store.docs) == 1
    names = sorted(hit.limit.name for hit in limiter.seen[0])
    assert names == ["client", "contact"]
    assert all("3456" not in hit.key for hit in limiter.seen[0])


async def test_invalid_requests_are_not_counted() -> None:
    limiter = CountingLimiter(allow=0)
    with pytest.raises(ValidationError):
        await handlers(FakeStore(), limiter).submit_from(replace(CMD, title=""), WEB)
    assert limiter.seen == []


async def test_follow_up_code_is_stored_hashed_and_a_retry_adds_one() -> None:
    store = FakeStore()
    h = handlers(store)
    first = await h.submit_from(CMD, WEB)
    again = await h.submit_from(CMD, WEB)
    doc = store.docs[first.stored.tracking_id]
    assert again.stored.duplicate and len(doc[FIELD]) == 2
    assert first.follow_up_code not in repr(doc)
    assert verify_follow_up_code(doc[FIELD], first.follow_up_code)
    assert verify_follow_up_code(doc[FIELD], again.follow_up_code)


async def test_the_same_text_from_the_same_contact_names_the_report_but_gives_no_code() -> None:
    """A web form's phone number is typed, not proven: anyone could send a public report's
    text with its reporter's number. The answer names the existing report and carries no
    follow-up code, and no code is added to the report."""
    store = FakeStore()
    h = handlers(store, CountingLimiter(allow=100))  # the configured dedupe window
    first = await h.submit_from(CMD, WEB)
    copied = await h.submit_from(replace(CMD, idempotency_key="someone-else"), WEB)
    assert copied.stored.duplicate and not copied.stored.same_request
    assert copied.stored.tracking_id == first.stored.tracking_id
    assert copied.follow_up_code == ""
    assert len(store.docs[first.stored.tracking_id][FIELD]) == 1


async def test_only_the_client_that_sent_a_request_gets_a_code_for_its_retry() -> None:
    """A social post id is public and an institution reference may be guessable: another
    channel client replaying the same scope gets the report named, but no follow-up code."""
    store = FakeStore()
    h = handlers(store)
    other = ChannelClient("another-portal", frozenset({Channel.WEB}))
    first = await h.submit_from(CMD, WEB)
    replayed = await h.submit_from(CMD, other)
    assert replayed.stored.duplicate and replayed.stored.same_request
    assert replayed.stored.tracking_id == first.stored.tracking_id
    assert replayed.follow_up_code == ""
    assert len(store.docs[first.stored.tracking_id][FIELD]) == 1
    again = await h.submit_from(CMD, WEB)  # the client that sent it
    assert again.follow_up_code and len(store.docs[first.stored.tracking_id][FIELD]) == 2


async def test_a_retry_over_the_rate_limit_gets_the_original_answer() -> None:
    store, limiter = FakeStore(), CountingLimiter(allow=1)
    h = handlers(store, limiter)
    first = await h.submit_from(CMD, WEB)
    again = await h.submit_from(CMD, WEB)  # over the limit, but already stored
    assert again.stored.tracking_id == first.stored.tracking_id and again.stored.duplicate
    doc = store.docs[first.stored.tracking_id]
    assert verify_follow_up_code(doc[FIELD], again.follow_up_code)
    with pytest.raises(ValidationError):  # the same key with another report: still refused
        await h.submit_from(replace(CMD, title="Lain"), WEB)
    with pytest.raises(ResourceExhausted):  # a new report over the limit: refused
        await h.submit_from(replace(CMD, idempotency_key="k-9", title="Lain"), WEB)
    assert len(store.docs) == 1


async def test_anonymous_keeps_no_identity_and_privacy_only_rises() -> None:
    store = FakeStore()
    h = handlers(store)
    sub = await h.submit_from(CMD, WEB)
    tid, code = sub.stored.tracking_id, sub.follow_up_code
    with pytest.raises(PermissionDenied):
        await h.raise_privacy(tid, "WRONG-CODE-0000", Privacy.CONFIDENTIAL)
    assert await h.raise_privacy(tid, code, Privacy.ANONYMOUS)
    assert "reporter" not in store.docs[tid]
    with pytest.raises(FailedPrecondition):
        await h.raise_privacy(tid, code, Privacy.CONFIDENTIAL)
    assert not await h.raise_privacy(tid, code, Privacy.ANONYMOUS)
    anon = await h.submit_from(replace(CMD, privacy=Privacy.ANONYMOUS, idempotency_key="a"), WEB)
    assert store.docs[anon.stored.tracking_id]["reporter"] is None


def deduping(store: FakeStore) -> IntakeHandlers:
    h = handlers(store)
    h.limits = RateLimits.from_env(Env({}))  # 10-minute dedupe window
    return h


@pytest.mark.parametrize("privacy", [Privacy.PUBLIC, Privacy.ANONYMOUS])
async def test_a_resend_sharing_any_one_contact_gets_the_first_tracking_id(
    privacy: Privacy,
) -> None:
    store = FakeStore()
    h = deduping(store)
    both = Contact(name="Made", phone="0812 3456 789", email="made@contoh.id")
    first = await h.submit_from(replace(CMD, privacy=privacy, reporter=both), WEB)
    assert not first.stored.duplicate
    resends = [
        Contact(email="Made@Contoh.ID"),  # only the e-mail in common
        Contact(phone="+62 812-3456-789", email="lain@contoh.id"),  # only the phone
    ]
    for n, contact in enumerate(resends):
        cmd = replace(CMD, privacy=privacy, reporter=contact, idempotency_key=f"r-{n}")
        again = await h.submit_from(cmd, WEB)
        assert again.stored.duplicate and again.stored.tracking_id == first.stored.tracking_id
    other_text = replace(CMD, privacy=privacy, reporter=both, body="Lain.", idempotency_key="x")
    assert not (await h.submit_from(other_text, WEB)).stored.duplicate
    assert len(store.docs) == 2
    # four keyed hashes per report (phone and e-mail, two windows), none in plain text
    assert len(store.dedupe) == 8 and set(store.dedupe.values()) == set(store.docs)
    assert not any("8123456789" in k or "made" in k for k in store.dedupe)

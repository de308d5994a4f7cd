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
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.scopes: dict[str, str] = {}

    async def add(self, c: Any) -> Stored:
        if c.idempotency_scope in self.scopes:
            doc = self.docs[self.scopes[c.idempotency_scope]]
            return Stored(doc["_id"], doc["received_at"], True, doc["fingerprint"])
        self.scopes[c.idempotency_scope] = c.tracking_id
        self.docs[c.tracking_id] = {
            "_id": c.tracking_id,
            "received_at": c.received_at,
            "fingerprint": c.fingerprint,
            "privacy": c.privacy.value,
            "reporter": c.reporter,
            FIELD: [c.follow_up_hash],
        }
        return Stored(c.tracking_id, c.received_at, False, c.fingerprint)

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
        await h.submit_from(replace(CMD, idempotency_key="k-2"), WEB)
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

"""Intake use cases (services/intake/handlers.py) over an in-memory ComplaintStore."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from itertools import count

import pytest

from services.common.clock import ManualClock
from services.common.errors import NotFound, ValidationError
from services.common.ids import _check_symbol
from services.intake.domain import Channel, Classification, Complaint, Privacy, SubmitComplaint
from services.intake.handlers import IntakeHandlers, Stored


class FakeStore:
    """Keeps complaints by tracking id; one complaint per idempotency scope."""

    def __init__(self) -> None:
        self.by_id: dict[str, Complaint] = {}
        self.by_scope: dict[str, Complaint] = {}
        self.codes: dict[str, list[str]] = {}

    async def earlier(self, complaint: Complaint) -> Stored | None:
        c = self.by_scope.get(complaint.idempotency_scope)
        return (
            None if c is None else Stored(c.tracking_id, c.received_at, True, c.fingerprint, True)
        )

    async def add(self, complaint: Complaint) -> Stored:
        existing = await self.earlier(complaint)
        if existing is not None:
            return existing
        self.by_scope[complaint.idempotency_scope] = complaint
        self.by_id[complaint.tracking_id] = complaint
        return Stored(complaint.tracking_id, complaint.received_at, False, complaint.fingerprint)

    async def get(self, tracking_id: str) -> dict[str, object] | None:
        c = self.by_id.get(tracking_id)
        return None if c is None else {"_id": c.tracking_id, "title": c.title}

    async def add_follow_up_code(self, tracking_id: str, code_hash: str) -> None:
        self.codes.setdefault(tracking_id, []).append(code_hash)


def sequential_ids() -> Callable[[], str]:
    numbers = count(1)

    def next_id() -> str:
        data = f"{next(numbers):010d}"
        s = data + _check_symbol(data)
        return f"{s[:4]}-{s[4:8]}-{s[8:]}"

    return next_id


CMD = SubmitComplaint(
    channel=Channel.WEB,
    privacy=Privacy.PUBLIC,
    classification=Classification.COMPLAINT,
    title="Lampu jalan mati",
    body="Sudah seminggu gelap.",
    region_code="51.08",
    idempotency_key="req-1",
)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def handlers(store: FakeStore, clock: ManualClock) -> IntakeHandlers:
    return IntakeHandlers(store, clock, sequential_ids(), {"51", "51.08"}.__contains__)


async def test_submit_returns_a_new_tracking_id(
    handlers: IntakeHandlers, store: FakeStore, clock: ManualClock
) -> None:
    clock.set(clock.now().replace(microsecond=123_456))
    stored = await handlers.submit(CMD)
    assert stored.tracking_id == "0000-0000-01Y"
    assert stored.duplicate is False
    # to the millisecond, as MongoDB keeps it: a retry's answer (read back) is the same
    assert stored.received_at == clock.now().replace(microsecond=123_000)
    assert list(store.by_id) == ["0000-0000-01Y"]
    assert store.by_id[stored.tracking_id].idempotency_scope == "web:req-1"


async def test_retry_returns_the_original(
    handlers: IntakeHandlers, store: FakeStore, clock: ManualClock
) -> None:
    first = await handlers.submit(CMD)
    clock.advance(timedelta(minutes=5))
    again = await handlers.submit(replace(CMD, title="  Lampu jalan mati "))
    assert again.duplicate is True
    assert (again.tracking_id, again.received_at) == (first.tracking_id, first.received_at)
    assert list(store.by_id) == [first.tracking_id]


async def test_same_key_with_another_payload_is_refused(
    handlers: IntakeHandlers, store: FakeStore
) -> None:
    await handlers.submit(CMD)
    with pytest.raises(ValidationError) as err:
        await handlers.submit(replace(CMD, body="Sesuatu yang lain."))
    assert [v.field for v in err.value.violations] == ["idempotency_key"]
    assert len(store.by_id) == 1


async def test_same_key_on_another_channel_is_a_new_report(
    handlers: IntakeHandlers, store: FakeStore
) -> None:
    web = await handlers.submit(CMD)
    sms = await handlers.submit(replace(CMD, channel=Channel.MOBILE_APP))
    assert sms.duplicate is False
    assert sms.tracking_id != web.tracking_id
    assert sorted(c.idempotency_scope for c in store.by_id.values()) == [
        "mobile_app:req-1",
        "web:req-1",
    ]


async def test_without_a_key_every_submission_is_new(handlers: IntakeHandlers) -> None:
    a = await handlers.submit(replace(CMD, idempotency_key=""))
    b = await handlers.submit(replace(CMD, idempotency_key=""))
    assert not a.duplicate and not b.duplicate
    assert a.tracking_id != b.tracking_id


async def test_invalid_command_stores_nothing(handlers: IntakeHandlers, store: FakeStore) -> None:
    with pytest.raises(ValidationError) as err:
        await handlers.submit(replace(CMD, title=" ", region_code="99"))
    assert [v.field for v in err.value.violations] == ["title", "region_code"]
    assert store.by_id == {} and store.by_scope == {}


async def test_get_accepts_the_forgiving_form(handlers: IntakeHandlers) -> None:
    stored = await handlers.submit(CMD)
    doc = await handlers.get(stored.tracking_id.lower().replace("-", " "))
    assert doc == {"_id": stored.tracking_id, "title": "Lampu jalan mati"}


@pytest.mark.parametrize("raw", ["", "nonsense", "0000-0000-01X", "0000-0000-01"])
async def test_get_malformed_id(handlers: IntakeHandlers, raw: str) -> None:
    with pytest.raises(ValidationError) as err:
        await handlers.get(raw)
    assert [v.field for v in err.value.violations] == ["tracking_id"]


async def test_get_unknown_id(handlers: IntakeHandlers) -> None:
    with pytest.raises(NotFound, match="0000-0000-01Y"):
        await handlers.get("0000-0000-01Y")

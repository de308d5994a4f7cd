"""IntakeService.RaisePrivacy takes the follow-up code, so it goes through the reporter API's
wrong-code limit per tracking id (GuessGuard): wrong codes and unknown tracking ids count,
over the limit a wrong code is refused with a retry delay while the right one gets through,
malformed requests do not count.
Over in-memory fakes of intake's ports."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.common.clock import ManualClock
from services.common.errors import PermissionDenied, ResourceExhausted, ValidationError
from services.common.ids import new_tracking_id
from services.intake.access_codes import GuessGuard
from services.intake.domain import Privacy
from services.intake.handlers import IntakeHandlers
from tests.unit.test_intake_submission import CMD, WEB, FakeStore
from tests.unit.test_reporter_access import Calls, FakeAttempts

WRONG = "AAAA-BBBB-CCCC"
LIMIT = 3
WINDOW = timedelta(minutes=15)


def guarded() -> tuple[IntakeHandlers, FakeStore, FakeAttempts, ManualClock]:
    store, clock = FakeStore(), ManualClock()
    attempts = FakeAttempts(Calls())
    h = IntakeHandlers(store, clock, new_tracking_id, {"51", "51.08"}.__contains__)
    h.guard = GuessGuard(attempts, clock, LIMIT, WINDOW)
    return h, store, attempts, clock


async def test_wrong_codes_are_counted_and_limited_but_the_right_code_gets_through() -> None:
    h, store, attempts, clock = guarded()
    submitted = await h.submit_from(CMD, WEB)
    tid, code = submitted.stored.tracking_id, submitted.follow_up_code
    for _ in range(LIMIT):
        with pytest.raises(PermissionDenied):
            await h.raise_privacy(tid, WRONG, Privacy.CONFIDENTIAL)
    assert len(attempts.rows[GuessGuard.key(tid)]) == LIMIT
    with pytest.raises(ResourceExhausted) as over:
        await h.raise_privacy(tid, WRONG, Privacy.CONFIDENTIAL)
    assert over.value.retry_after_seconds > 0
    assert str(over.value).startswith("tracking_id: too many wrong codes for this report")
    assert store.docs[tid]["privacy"] == "public"  # refused: nothing changed
    # The reporter is not locked out by someone else's guesses: 60 bits are not guessed.
    assert await h.raise_privacy(tid, code, Privacy.CONFIDENTIAL)
    assert store.docs[tid]["privacy"] == "confidential"
    clock.advance(WINDOW + timedelta(seconds=1))
    with pytest.raises(PermissionDenied):  # the window has passed: counted again
        await h.raise_privacy(tid, WRONG, Privacy.ANONYMOUS)


async def test_an_unknown_tracking_id_is_counted_and_limited_the_same_way() -> None:
    h, _store, attempts, _clock = guarded()
    unknown = new_tracking_id()
    for _ in range(LIMIT):
        with pytest.raises(PermissionDenied) as denied:
            await h.raise_privacy(unknown, WRONG, Privacy.CONFIDENTIAL)
        assert "no report matches" in str(denied.value)
    assert len(attempts.rows[GuessGuard.key(unknown)]) == LIMIT
    with pytest.raises(ResourceExhausted):
        await h.raise_privacy(unknown, WRONG, Privacy.CONFIDENTIAL)


async def test_the_right_code_and_malformed_requests_are_not_counted() -> None:
    h, _store, attempts, _clock = guarded()
    submitted = await h.submit_from(CMD, WEB)
    tid, code = submitted.stored.tracking_id, submitted.follow_up_code
    assert await h.raise_privacy(tid, code, Privacy.CONFIDENTIAL)
    assert not await h.raise_privacy(tid, code, Privacy.CONFIDENTIAL)
    with pytest.raises(ValidationError):
        await h.raise_privacy(tid, "", Privacy.ANONYMOUS)
    with pytest.raises(ValidationError):
        await h.raise_privacy("not-an-id", WRONG, Privacy.ANONYMOUS)
    assert attempts.rows == {}

"""The outbox relay loop while the broker or the database is away: growing pauses, one
traceback per outage, a line every FAILURE_LOG_EVERY failures, one when it works again."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.common import outbox


async def test_an_outage_is_a_few_lines_and_the_pauses_grow_to_five_seconds(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pauses: list[float] = []
    stop = asyncio.Event()

    async def no_wait(_stop: asyncio.Event, seconds: float) -> bool:
        pauses.append(seconds)
        return False

    monkeypatch.setattr(outbox, "sleep_until_or_stop", no_wait)
    monkeypatch.setattr(outbox, "FAILURE_LOG_EVERY", 3)
    rounds = 0
    errors_before = outbox.OUTBOX_RELAY_ERRORS._value.get()  # type: ignore[attr-defined]

    async def relay_once() -> int:
        nonlocal rounds
        rounds += 1
        if rounds <= 7:
            raise ConnectionError("broker away")
        stop.set()  # the first round that works ends the test
        return 0

    with caplog.at_level(logging.INFO, logger=outbox.__name__):
        await outbox.relay_loop(stop, relay_once, asyncio.Event(), 1.0, "relay", lambda: False)
    assert pauses == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    records = [(r.levelno, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert records == [
        (logging.ERROR, "relay failed; retrying", True),
        (logging.WARNING, "relay still failing; retrying", False),
        (logging.WARNING, "relay still failing; retrying", False),
        (logging.INFO, "relay works again", False),
    ]
    # each of the 7 failures counted once (a process-wide counter: counted from its value
    # before this loop ran)
    assert outbox.OUTBOX_RELAY_ERRORS._value.get() - errors_before == 7  # type: ignore[attr-defined]

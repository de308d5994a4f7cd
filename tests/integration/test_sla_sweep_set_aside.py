"""The sweep against the real database when the first due reports cannot be processed: they
are set aside (sweep_error, next_due_at at a growing retry time), the healthy due report
behind them is swept in the same round, and they are not read again until their retry."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.common.clock import ManualClock
from services.sla import sweep as sweep_module
from services.sla.domain.actions import Rules
from services.sla.domain.calendar import WorkingCalendar
from services.sla.domain.policy import parse_policy
from services.sla.handlers import SlaHandlers
from services.sla.sweep import SWEEP_ERROR, Sweeper
from tests.integration.test_sla_store import T0, delivery, routed, swept_events
from tests.unit.test_sla_actions import POLICY

#: first_response warns at 24 s (POLICY: 30 s, warning at 0.8); the bad ones are due first.
HEALTHY_DUE, BAD_DUE, NOW = 24, 1, 25


def set_aside_count() -> float:
    return REGISTRY.get_sample_value("lapor_sla_sweep_set_aside_total") or 0.0


@pytest.fixture
def parts(db: Any) -> tuple[SlaHandlers, Sweeper, ManualClock]:
    policy = parse_policy(POLICY, Path("."))
    clock = ManualClock(T0)
    # batch 3, 6 bad reports: before the fix a full batch of them at the head was read again
    # and again, for ever, and nothing behind it was swept.
    sweeper = Sweeper(db["clocks"], policy, clock, batch=3, write_chunk=2)
    return SlaHandlers(db["clocks"], Rules(policy, WorkingCalendar()), clock), sweeper, clock


async def routed_reports(handlers: SlaHandlers, n: int) -> list[str]:
    tids = [uuid.uuid4().hex[:8] for _ in range(n)]
    await handlers.handle_routed([delivery(routed(t)) for t in tids])
    return tids


async def sweep(sweeper: Sweeper) -> int:
    return await asyncio.wait_for(sweeper.sweep_once(), timeout=30)  # a spinning sweep fails


async def test_unprocessable_reports_are_set_aside_and_the_healthy_one_is_swept(
    parts: Any, db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handlers, sweeper, clock = parts
    bad = await routed_reports(handlers, 6)
    [healthy] = await routed_reports(handlers, 1)
    # Damaged (no received_at: sweep_update raises KeyError) and due before the healthy one.
    await db["clocks"].update_many(
        {"_id": {"$in": bad}},
        {"$unset": {"received_at": ""}, "$set": {"next_due_at": T0 + timedelta(seconds=BAD_DUE)}},
    )
    caplog.set_level(logging.INFO, logger="services.sla.sweep")
    counted = set_aside_count()
    clock.set(T0 + timedelta(seconds=NOW))

    assert await sweep(sweeper) == 1
    assert [e["id"] for e in await swept_events(db, [healthy])] == [
        f"{healthy}:first_response:warning"
    ]
    assert await swept_events(db, bad) == []
    assert set_aside_count() - counted == 6
    retry_at = clock.now() + timedelta(minutes=1)
    async for doc in db["clocks"].find({"_id": {"$in": bad}}):
        assert doc["version"] == 1  # the clocks were not touched
        assert doc["next_due_at"] == retry_at
        error = doc[SWEEP_ERROR]
        assert (error["error"], error["attempts"], error["retry_at"]) == ("KeyError", 1, retry_at)
        assert error["at"] == error["first_at"] == clock.now()
    logged = [r for r in caplog.records if r.getMessage().startswith("sweep could not")]
    assert sorted(r.tracking_id for r in logged) == sorted(bad)  # type: ignore[attr-defined]
    assert {r.error for r in logged} == {"KeyError"}  # type: ignore[attr-defined]
    assert all(r.exc_info is None and "received_at" not in r.getMessage() for r in logged)

    # Not retried before their time: later rounds (the healthy one's deadlines) leave them be.
    for step in (NOW + 1, NOW + 59):
        clock.set(T0 + timedelta(seconds=step))
        await sweep(sweeper)
    assert set_aside_count() - counted == 6
    assert await db["clocks"].count_documents({f"{SWEEP_ERROR}.attempts": 1}) == 6

    # Retried after a minute, then after two: still failing, the delay doubles.
    clock.set(retry_at)
    await sweep(sweeper)
    assert set_aside_count() - counted == 12
    doc = await db["clocks"].find_one({"_id": bad[0]})
    assert doc[SWEEP_ERROR]["attempts"] == 2
    assert doc[SWEEP_ERROR]["first_at"] == T0 + timedelta(seconds=NOW)
    assert doc["next_due_at"] == retry_at + timedelta(minutes=2)

    # Repaired: the next retry sweeps it and clears the mark.
    received_at = (await db["clocks"].find_one({"_id": healthy}))["received_at"]
    await db["clocks"].update_one({"_id": bad[0]}, {"$set": {"received_at": received_at}})
    clock.set(retry_at + timedelta(minutes=2))
    await sweep(sweeper)
    doc = await db["clocks"].find_one({"_id": bad[0]})
    assert SWEEP_ERROR not in doc and doc["version"] == 2
    assert doc["next_due_at"] > clock.now()
    assert await db["clocks"].count_documents({SWEEP_ERROR: {"$exists": True}}) == 5


async def test_a_report_that_would_stay_due_is_set_aside(
    parts: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An update that leaves a report due (a bug) would have it read again at once."""
    handlers, sweeper, clock = parts
    stuck = await routed_reports(handlers, 3)
    [healthy] = await routed_reports(handlers, 1)
    await db["clocks"].update_many(
        {"_id": {"$in": stuck}}, {"$set": {"next_due_at": T0 + timedelta(seconds=BAD_DUE)}}
    )
    real = sweep_module.case_fields

    def case_fields(case: Any, received_at: Any) -> Any:
        fields = real(case, received_at)
        if case.tracking_id in stuck:
            fields["next_due_at"] = T0 + timedelta(seconds=BAD_DUE)
        return fields

    monkeypatch.setattr(sweep_module, "case_fields", case_fields)
    clock.set(T0 + timedelta(seconds=NOW))
    assert await sweep(sweeper) == 1
    assert (await db["clocks"].find_one({"_id": healthy}))["version"] == 2
    async for doc in db["clocks"].find({"_id": {"$in": stuck}}):
        assert doc[SWEEP_ERROR]["error"] == "NoProgress" and doc["version"] == 1


async def test_a_round_that_cannot_set_aside_stops_instead_of_spinning(
    parts: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even when the bad reports stay due (their mark not written), a round that reads the
    same batch again ends; the next round tries again."""
    handlers, sweeper, clock = parts
    bad = await routed_reports(handlers, 3)
    await db["clocks"].update_many({"_id": {"$in": bad}}, {"$unset": {"received_at": ""}})
    reads = 0
    real_find = sweeper.cases.find

    def find(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return real_find(*args, **kwargs)

    async def not_written(failed: Any, now: Any) -> int:
        return 0

    monkeypatch.setattr(sweeper, "_set_aside", not_written)
    monkeypatch.setattr(sweeper.cases, "find", find)
    clock.set(T0 + timedelta(seconds=NOW))
    assert await sweep(sweeper) == 0
    assert reads == 2

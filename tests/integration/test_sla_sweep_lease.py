"""One sla replica sweeps: two sweepers on the same database (two replicas), each with its
own lease object for ``sla-sweep``, against the real database process. Only the holder's
sweep moves reports; it renews the lease through a long sweep (and its keeper through a slow
batch), stops part-way when it has lost it, and hands it over when it stops. Only a round
it swept through marks the sweep's success."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.common.clock import ManualClock
from services.common.lease import LEASES, Lease
from services.sla.domain.actions import Rules
from services.sla.domain.calendar import WorkingCalendar
from services.sla.domain.policy import parse_policy
from services.sla.handlers import SlaHandlers
from services.sla.metrics import SWEEP_LAST_SUCCESS
from services.sla.sweep import SWEEP_LEASE, Sweeper
from tests.integration.test_lease import hands_over_when_cancelled, renewed
from tests.integration.test_sla_store import T0, delivery, routed, swept_events
from tests.support import Calls, polled
from tests.unit.test_sla_actions import POLICY

TTL = timedelta(seconds=10)
PER_REPORT = 9  # 2 warnings, 2 x 3 rungs, 1 escalation when everything is due


class Replicas:
    """Two sla replicas' sweepers: the deadlines' clock and the leases' clock apart, so a
    test moves each on its own."""

    def __init__(
        self, db: Any, gate: Any = None, keep_every: float | None = None, **sizes: int
    ) -> None:
        self.db = db
        self.clock = ManualClock(T0)
        self.lease_clock = ManualClock()
        policy = parse_policy(POLICY, Path("."))
        self.handlers = SlaHandlers(db["clocks"], Rules(policy, WorkingCalendar()), self.clock)
        self.a, self.b = (
            Sweeper(
                db["clocks"],
                policy,
                self.clock,
                gate=gate,
                lease=Lease(db, SWEEP_LEASE, self.lease_clock, TTL, name, keep_every),
                **sizes,  # type: ignore[arg-type]
            )
            for name in ("a", "b")
        )

    async def route(self, n: int) -> list[str]:
        tids = [uuid.uuid4().hex[:8] for _ in range(n)]
        await self.handlers.handle_routed([delivery(routed(t)) for t in tids])
        return tids

    async def still_due(self, tids: list[str]) -> int:
        return await self.db["clocks"].count_documents(
            {"_id": {"$in": tids}, "next_due_at": {"$lte": self.clock.now()}}
        )


@pytest.fixture
def replicas(db: Any) -> Replicas:
    return Replicas(db)


def lease_of(sweeper: Sweeper) -> Lease:
    assert sweeper.lease is not None
    return sweeper.lease


async def test_only_the_holder_sweeps(replicas: Replicas) -> None:
    tids = await replicas.route(30)
    moved = {"a": 0, "b": 0}
    for step in (24, 30, 40, 50, 70, 1000):
        replicas.clock.set(T0 + timedelta(seconds=step))
        a, b = await asyncio.gather(replicas.a.sweep_once(), replicas.b.sweep_once())
        moved["a"] += a
        moved["b"] += b
    holder = "a" if lease_of(replicas.a).holding else "b"
    other = "b" if holder == "a" else "a"
    assert moved[other] == 0 and moved[holder] > 0
    emitted = [e["id"] for e in await swept_events(replicas.db, tids)]
    assert len(emitted) == len(set(emitted)) == 30 * PER_REPORT
    assert await replicas.still_due(tids) == 0


async def test_the_other_sweeps_once_the_holder_stopped_renewing(replicas: Replicas) -> None:
    tids = await replicas.route(10)
    assert await lease_of(replicas.a).held()
    replicas.clock.set(T0 + timedelta(seconds=1000))
    assert await replicas.b.sweep_once() == 0  # a holds the lease
    assert await replicas.still_due(tids) == 10
    replicas.lease_clock.advance(TTL)  # a stopped (killed, paused): its lease ran out
    assert await replicas.b.sweep_once() == 10
    assert await replicas.a.sweep_once() == 0  # a is back, and stands by
    assert await replicas.still_due(tids) == 0


async def test_a_long_sweep_renews_its_lease_between_writes(db: Any) -> None:
    """Batches of 7 written in chunks of 3: each write takes 3 s of the lease's time, so the
    sweep lasts far longer than the TTL; the other replica tries to take over after each
    write and never can."""
    replicas = Replicas(db, batch=7, write_chunk=3)
    tids = await replicas.route(40)
    assert await lease_of(replicas.a).held()
    store = replicas.a._store
    tries: list[bool] = []

    async def slow_store(*args: Any) -> set[Any]:
        won = await store(*args)
        replicas.lease_clock.advance(timedelta(seconds=3))
        tries.append(await lease_of(replicas.b).held())
        return won

    replicas.a._store = slow_store  # type: ignore[method-assign]
    replicas.clock.set(T0 + timedelta(seconds=1000))
    assert await replicas.a.sweep_once() == 40
    assert len(tries) >= 14 and not any(tries)  # 40 reports in chunks of 3: 42 s or more
    assert await replicas.still_due(tids) == 0


async def test_a_sweep_stops_part_way_when_its_lease_was_taken(db: Any) -> None:
    replicas = Replicas(db, batch=7, write_chunk=3)
    tids = await replicas.route(20)
    assert await lease_of(replicas.a).held()
    store = replicas.a._store

    async def paused_after_the_first_write(*args: Any) -> set[Any]:
        won = await store(*args)
        replicas.lease_clock.advance(TTL)  # a paused past its TTL, and b took over
        assert await lease_of(replicas.b).held()
        return won

    replicas.a._store = paused_after_the_first_write  # type: ignore[method-assign]
    replicas.clock.set(T0 + timedelta(seconds=1000))
    assert await replicas.a.sweep_once() == 3  # the first write only
    assert await replicas.still_due(tids) == 17
    assert await replicas.b.sweep_once() == 17
    emitted = [e["id"] for e in await swept_events(db, tids)]
    assert len(emitted) == len(set(emitted)) == 20 * PER_REPORT


async def test_a_stopped_sweeper_hands_its_lease_over_at_once(replicas: Replicas) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(replicas.a.run(stop, interval=0.01))
    await polled(lambda: lease_of(replicas.a).holding)
    assert lease_of(replicas.a).holding
    stop.set()
    await asyncio.wait_for(task, 10)
    assert await replicas.db[LEASES].find_one({"_id": SWEEP_LEASE}) is None
    assert await lease_of(replicas.b).held()  # no TTL to wait out


def last_success() -> float | None:
    return REGISTRY.get_sample_value("lapor_sla_sweep_last_success_timestamp_seconds")


async def rounds_of(sweeper: Sweeper, n: int) -> None:
    """Run `sweeper` until it has checked its lease at the start of `n` rounds."""
    checks = Calls(sweeper, "_leading")
    stop = asyncio.Event()
    task = asyncio.create_task(sweeper.run(stop, interval=0.01))
    try:
        await polled(lambda: checks.count >= n)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert checks.count >= n


async def test_a_sweeper_standing_by_does_not_mark_a_success(replicas: Replicas) -> None:
    await replicas.route(3)
    replicas.clock.set(T0 + timedelta(seconds=1000))
    assert await lease_of(replicas.a).held()
    SWEEP_LAST_SUCCESS.set(0)
    await rounds_of(replicas.b, 5)
    assert last_success() == 0  # the holder's gauge is the one that moves
    assert not lease_of(replicas.b).holding


async def test_a_sweep_cut_short_by_a_lost_lease_does_not_mark_a_success(db: Any) -> None:
    replicas = Replicas(db, batch=7, write_chunk=3)
    tids = await replicas.route(20)
    store = replicas.a._store
    writes = 0

    async def paused_after_the_first_write(*args: Any) -> set[Any]:
        nonlocal writes
        won = await store(*args)
        writes += 1
        if writes == 1:
            replicas.lease_clock.advance(TTL)  # a paused past its TTL, and b took over
            assert await lease_of(replicas.b).held()
        return won

    replicas.a._store = paused_after_the_first_write  # type: ignore[method-assign]
    replicas.clock.set(T0 + timedelta(seconds=1000))
    SWEEP_LAST_SUCCESS.set(0)
    await rounds_of(replicas.a, 4)  # the round cut short, then rounds standing by
    assert writes == 1 and await replicas.still_due(tids) == 17
    assert last_success() == 0


class SlowGate:
    """An escalation gate (services/sla/watermark.py's port) whose refresh waits until `go`
    is set: the broker slow to answer while the sweep plans its batch. It has heard no case
    action (no horizon): every Ombudsman escalation is held."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.go = asyncio.Event()

    def horizon(self) -> datetime | None:
        return None

    @property
    def known_unreachable(self) -> bool:
        return False

    async def refresh(self) -> datetime | None:
        self.entered.set()
        await self.go.wait()
        return None


async def test_the_keeper_keeps_the_sweep_lease_through_a_slow_plan(db: Any) -> None:
    gate = SlowGate()
    replicas = Replicas(db, gate=gate, keep_every=0.01)
    tids = await replicas.route(5)
    replicas.clock.set(T0 + timedelta(seconds=1000))  # all due, the escalations too
    stop = asyncio.Event()
    task = asyncio.create_task(replicas.a.run(stop, interval=0.01))
    try:
        await asyncio.wait_for(gate.entered.wait(), 10)  # a holds the lease and plans
        for _ in range(12):  # 30 s of the lease's time in steps of a quarter of the TTL
            replicas.lease_clock.advance(TTL / 4)
            await renewed(db, SWEEP_LEASE, replicas.lease_clock, "a")
            assert await replicas.b.sweep_once() == 0  # stands by
        gate.go.set()

        async def swept() -> bool:
            return not await replicas.still_due(tids)

        await polled(swept)
    finally:
        gate.go.set()
        stop.set()
        await asyncio.wait_for(task, 10)
    assert await replicas.still_due(tids) == 0  # a swept them (escalations held for later)
    emitted = [e["id"] for e in await swept_events(db, tids)]
    assert len(emitted) == len(set(emitted)) == 5 * (PER_REPORT - 1)


async def test_a_sweep_that_moves_none_of_a_full_batch_does_not_mark_a_success(
    db: Any,
) -> None:
    """A full batch of due reports none of the writes moves (every compare-and-set lost):
    the sweep stops on it, and what is due behind it is not swept."""
    replicas = Replicas(db, batch=3)
    await replicas.route(5)

    async def moves_nothing(*args: Any) -> set[Any]:
        return set()

    replicas.a._store = moves_nothing  # type: ignore[method-assign]
    replicas.clock.set(T0 + timedelta(seconds=1000))
    SWEEP_LAST_SUCCESS.set(0)
    await rounds_of(replicas.a, 4)
    assert last_success() == 0


async def test_a_sweeper_cancelled_at_shutdown_hands_its_lease_over(replicas: Replicas) -> None:
    await hands_over_when_cancelled(
        replicas.db, lease_of(replicas.a), lambda stop: replicas.a.run(stop, interval=0.01)
    )

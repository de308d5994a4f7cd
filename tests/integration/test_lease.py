"""The lease (services/common/lease.py) against the real database process: one holder at a
time, takeover after the TTL, an immediate handover on release, no write from a process
standing by, a database that goes away, the keeper and stepping down."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.common import lease as lease_module
from services.common.clock import ManualClock
from services.common.lease import LEASES, Lease
from tests.support import polled

TTL = timedelta(seconds=10)


def pair(db: Any, name: str = "job") -> tuple[ManualClock, Lease, Lease]:
    """Two processes' leases on one database, sharing one clock (clocks that agree)."""
    clock = ManualClock()
    return clock, Lease(db, name, clock, TTL, "a"), Lease(db, name, clock, TTL, "b")


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value("lapor_lease_held", {"lease": name})


async def renewed(db: Any, name: str, clock: ManualClock, holder: str) -> None:
    """Wait until `holder`'s lease `name` runs for more than half the TTL from the clock's
    time: its keeper renewed it (or had no need to yet)."""
    stored = None
    for _ in range(500):
        stored = await db[LEASES].find_one({"_id": name})
        if stored and stored["holder"] == holder and stored["until"] - clock.now() > TTL / 2:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"lease {name} of {holder} not renewed at {clock.now()}: {stored}")


class CountingClock(ManualClock):
    """A manual clock that counts how often it was read: a keeper reads it on each check."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def now(self) -> datetime:
        self.reads += 1
        return super().now()


async def test_only_one_holds_and_the_other_takes_over_after_the_ttl(db: Any) -> None:
    clock, a, b = pair(db)
    assert await a.held()
    assert not await b.held()
    stored = await db[LEASES].find_one({"_id": "job"})
    assert stored["holder"] == "a" and stored["since"] == clock.now()
    assert stored["until"] == clock.now() + TTL
    clock.advance(TTL - timedelta(milliseconds=1))
    assert not await b.held()  # a has not renewed, but its lease has not run out either
    clock.advance(timedelta(milliseconds=1))
    assert await b.held()
    stored = await db[LEASES].find_one({"_id": "job"})
    assert stored["holder"] == "b" and stored["since"] == clock.now()


async def test_the_holder_renews_past_half_the_ttl_and_keeps_it(db: Any) -> None:
    clock, a, b = pair(db)
    assert await a.held()
    first = await db[LEASES].find_one({"_id": "job"})
    for _ in range(5):  # 30 s in steps of 6: each check past half the TTL renews
        clock.advance(timedelta(seconds=6))
        assert await a.held()
        assert not await b.held()
    stored = await db[LEASES].find_one({"_id": "job"})
    assert stored["holder"] == "a" and stored["since"] == first["since"]
    assert stored["until"] == clock.now() + TTL


async def test_the_holder_checks_without_the_database_while_more_than_half_is_left(
    db: Any,
) -> None:
    clock, a, _ = pair(db)
    assert await a.held()
    await db[LEASES].delete_many({})  # were it read, the lease would be taken again
    clock.advance(TTL / 2 - timedelta(milliseconds=1))
    assert await a.held()
    assert await db[LEASES].count_documents({}) == 0


async def test_a_process_standing_by_makes_no_write_while_the_lease_runs(db: Any) -> None:
    clock, a, b = pair(db)
    assert await a.held()
    before = await db[LEASES].find_one({"_id": "job"})
    status = await db.command("serverStatus")
    for _ in range(20):
        clock.advance(timedelta(milliseconds=400))  # 8 s: never past a's until
        assert not await b.held()
    assert await db[LEASES].find_one({"_id": "job"}) == before  # until unchanged
    after = await db.command("serverStatus")
    # The database counted no update (a failed conditional write counts too) meanwhile.
    assert after["opcounters"]["update"] == status["opcounters"]["update"]


async def test_a_holder_whose_lease_was_taken_knows_it(db: Any) -> None:
    clock, a, b = pair(db)
    assert await a.held()
    clock.advance(TTL + timedelta(seconds=1))  # a paused past its TTL; b took over
    assert await b.held()
    assert not await a.held()
    assert not a.holding
    assert (await db[LEASES].find_one({"_id": "job"}))["holder"] == "b"


async def test_release_hands_over_at_once(db: Any) -> None:
    _, a, b = pair(db)
    assert await a.held() and a.holding
    assert not await b.held()
    await a.release()
    assert not a.holding
    assert await b.held()  # no wait for the TTL
    await a.release()  # not the holder: b's lease stays
    assert (await db[LEASES].find_one({"_id": "job"}))["holder"] == "b"
    assert not await a.held()


async def test_two_processes_racing_for_a_free_lease_get_one_holder(db: Any) -> None:
    clock = ManualClock()
    leases = [Lease(db, "race", clock, TTL, f"p{i}") for i in range(8)]
    results = await asyncio.gather(*(lease.held() for lease in leases))
    assert sum(results) == 1
    holder = (await db[LEASES].find_one({"_id": "race"}))["holder"]
    assert [lease.holder for lease, won in zip(leases, results, strict=True) if won] == [holder]


async def test_the_gauge_shows_the_holder(db: Any) -> None:
    clock = ManualClock()
    lease = Lease(db, "gauged", clock, TTL, "a")
    assert gauge("gauged") == 0
    assert await lease.held()
    assert gauge("gauged") == 1
    await lease.release()
    assert gauge("gauged") == 0


async def test_a_database_error_holds_until_the_lease_runs_out_and_raises_nothing(
    db_to_kill: tuple[Any, Callable[[], None]],
) -> None:
    client, kill = db_to_kill
    clock = ManualClock()
    lease = Lease(client["lapor_test"], "job", clock, TTL, "a")
    assert await lease.held() and lease.error is None
    kill()
    clock.advance(TTL * 0.75)  # a check is due, and fails
    assert await lease.held()
    assert lease.error is not None
    clock.advance(TTL * 0.25)  # our own until has passed
    assert not await lease.held()
    assert lease.error is not None and not lease.holding


async def test_a_restarted_process_with_the_same_name_takes_its_lease_back_at_once(
    db: Any,
) -> None:
    clock, a, b = pair(db)
    assert await a.held()
    clock.advance(timedelta(seconds=1))
    # The process of a is killed (no release) and starts again under the same name
    # (LAPOR_INSTANCE_ID): its new lease object holds at once; another name waits.
    restarted = Lease(db, "job", clock, TTL, "a")
    assert not restarted.holding
    assert await restarted.held()
    assert not await b.held()
    stored = await db[LEASES].find_one({"_id": "job"})
    assert stored["holder"] == "a" and stored["until"] == clock.now() + TTL


@pytest.mark.parametrize(
    "change", [{"$unset": {"until": ""}}, {"$set": {"until": None}}], ids=["removed", "null"]
)
async def test_a_lease_whose_until_was_removed_by_hand_can_be_taken(
    db: Any, change: dict[str, Any]
) -> None:
    """An operator who "frees" a lease by removing its ``until`` instead of deleting the
    document: the lease counts as run out, in the write's filter as in the read before it
    (a filter on ``until: None`` matches both, on the embedded database as on MongoDB)."""
    clock, a, b = pair(db)
    assert await a.held()
    await db[LEASES].update_one({"_id": "job"}, change)
    assert await b.held()
    stored = await db[LEASES].find_one({"_id": "job"})
    assert stored["holder"] == "b" and stored["until"] == clock.now() + TTL


async def test_the_keeper_renews_the_lease_while_the_job_does_not_check_it(db: Any) -> None:
    clock = ManualClock()
    a = Lease(db, "job", clock, TTL, "a", keep_every=0.01)
    b = Lease(db, "job", clock, TTL, "b")
    assert await a.held()
    stop = asyncio.Event()
    keeper = asyncio.create_task(a.keep(stop))
    try:
        for _ in range(12):  # 30 s in steps of a quarter of the TTL; the job is stuck
            clock.advance(TTL / 4)
            await renewed(db, "job", clock, "a")
            assert not await b.held()
    finally:
        stop.set()
        await asyncio.wait_for(keeper, 10)
    assert a.holding


async def test_the_keeper_takes_no_lease_it_does_not_hold(db: Any) -> None:
    clock = CountingClock()
    a = Lease(db, "job", clock, TTL, "a")
    b = Lease(db, "job", clock, TTL, "b", keep_every=0.01)
    assert await b.held()
    clock.advance(TTL)  # b's job paused past the TTL: its keeper no longer holds the lease
    before = await db[LEASES].find_one({"_id": "job"})
    stop = asyncio.Event()
    keeper = asyncio.create_task(b.keep(stop))
    try:
        reads = clock.reads
        await polled(lambda: clock.reads >= reads + 5)  # the keeper checked five times
        assert clock.reads >= reads + 5
    finally:
        stop.set()
        await asyncio.wait_for(keeper, 10)
    assert not b.holding
    assert await db[LEASES].find_one({"_id": "job"}) == before  # not renewed: a may take it
    assert await a.held()


async def test_a_process_that_stepped_down_takes_the_lease_again_only_after_a_ttl(
    db: Any,
) -> None:
    clock, a, b = pair(db)
    assert await a.held()
    await a.step_down()
    assert not a.holding and gauge("job") == 0
    assert await db[LEASES].find_one({"_id": "job"}) is None  # released: b may take it
    clock.advance(TTL - timedelta(milliseconds=1))
    assert not await a.held()  # no database call: the lease is free, and a leaves it so
    assert await db[LEASES].find_one({"_id": "job"}) is None
    clock.advance(timedelta(milliseconds=1))
    assert await a.held()
    assert not await b.held()


async def hands_over_when_cancelled(
    db: Any, lease: Lease, run: Callable[[asyncio.Event], Awaitable[None]]
) -> None:
    """Run worker `run` until it holds `lease`, cancel it (a shutdown that stopped waiting
    for it): the lease's document is gone, so another process takes over at once."""
    task = asyncio.create_task(run(asyncio.Event()))
    try:
        await polled(lambda: lease.holding)
        assert lease.holding
    finally:
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert await db[LEASES].find_one({"_id": lease.name}) is None
    assert not lease.holding


async def test_a_hand_over_that_cannot_finish_gives_up(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release as a worker ends waits on the database at most `RELEASE_TIMEOUT`: here a
    check that never ends holds the lease's lock."""
    monkeypatch.setattr(lease_module, "RELEASE_TIMEOUT", 0.05)
    _, a, _ = pair(db)
    assert await a.held()
    async with a._lock:  # a check stuck on the database
        await asyncio.wait_for(a.hand_over(), 10)
    assert await db[LEASES].find_one({"_id": "job"}) is not None  # runs out in its TTL

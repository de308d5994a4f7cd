"""Rate-limit counters against the real database process: one replica enforces a limit
exactly; replicas share their counts through MongoDB within one sync."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from services.common.clock import ManualClock
from services.common.errors import ResourceExhausted
from services.intake.limits import Hit, Limit
from services.intake.ratelimit_store import MongoRateLimiter

LIMIT = Limit("client", 25, timedelta(minutes=1))


async def attempt(limiter: MongoRateLimiter, key: str = "sms-gateway") -> bool:
    try:
        await limiter.hit([Hit(LIMIT, key)])
        return True
    except ResourceExhausted as exc:
        assert 0 < exc.retry_after_seconds <= 60
        return False


async def test_one_replica_enforces_the_limit_exactly(db: object) -> None:
    clock = ManualClock()
    limiter = MongoRateLimiter(db["rate_limits"], clock, sync_interval=0.01)  # type: ignore[index]
    await limiter.ensure_indexes()
    results = []
    for _ in range(6):  # syncs happen in between
        results += await asyncio.gather(*(attempt(limiter) for _ in range(10)))
        await asyncio.sleep(0.03)
    assert sum(results) == 25
    clock.advance(timedelta(minutes=1))  # the next window starts afresh
    assert await attempt(limiter)
    await limiter.close()
    stored = await db["rate_limits"].find().to_list(None)  # type: ignore[index]
    assert sorted(d["n"] for d in stored) == [1, 60]
    assert await limiter.purge() == 1  # the ended window's counter
    assert [d["n"] for d in await db["rate_limits"].find().to_list(None)] == [1]  # type: ignore[index]


async def test_replicas_see_each_others_counts_after_a_sync(db: object) -> None:
    clock = ManualClock()
    a = MongoRateLimiter(db["rate_limits"], clock, sync_interval=3600)  # type: ignore[index]
    b = MongoRateLimiter(db["rate_limits"], clock, sync_interval=3600)  # type: ignore[index]
    assert sum([await attempt(a, "k") for _ in range(20)]) == 20
    await a.sync()
    await b.sync()
    # b has not counted "k" yet: it learns a's 20 when it first syncs the key
    assert sum([await attempt(b, "k") for _ in range(3)]) == 3
    await b.sync()
    end = LIMIT.window_of(clock.now())[1]
    assert b.count(f"{int(end.timestamp()):012d}:client:k") == 23
    assert sum([await attempt(b, "k") for _ in range(5)]) == 2
    await b.sync()
    # a knew 20 and lets one more through until its next sync of "k" (the overshoot
    # bound: what other replicas let through within one interval); then it knows all
    assert await attempt(a, "k")
    await a.sync()
    assert not await attempt(a, "k")
    assert not await attempt(b, "k")
    await a.close()
    await b.close()


async def test_one_key_over_its_limit_refuses_the_whole_submission(db: object) -> None:
    limiter = MongoRateLimiter(db["rate_limits"], ManualClock())  # type: ignore[index]
    contact = Limit("contact", 2, timedelta(hours=1))
    client = Limit("client", 100, timedelta(minutes=1))
    for _ in range(2):
        await limiter.hit([Hit(contact, "c1"), Hit(client, "web")])
    with pytest.raises(ResourceExhausted, match="per contact"):
        await limiter.hit([Hit(contact, "c1"), Hit(client, "web")])
    await limiter.hit([Hit(contact, "c2"), Hit(client, "web")])
    await limiter.close()

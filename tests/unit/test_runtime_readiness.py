"""What readiness (health "") follows: the dependencies a service declares. A service that
needs MongoDB only serves while the broker is away, and still reports the broker's state
(its own health entry, lapor_dependency_up); one that needs both does not. Workers that
need MongoDB only start without the broker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

import pytest
from grpc_health.v1 import health_pb2
from prometheus_client import REGISTRY

from services.common.runtime import (
    KAFKA,
    MONGODB,
    MONGODB_AND_KAFKA,
    MONGODB_ONLY,
    ServiceParts,
    ServiceRuntime,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class FakeBroker:
    def __init__(self) -> None:
        self.up = False
        self.started = False

    async def start(self) -> None:
        if not self.up:
            raise ConnectionError("no broker answers")
        self.started = True

    async def probe(self) -> None:
        if not (self.up and self.started):
            raise ConnectionError("no broker answers")

    async def stop(self) -> None:
        self.started = False


class FakeDb:
    def __init__(self) -> None:
        self.up = True
        self.collections: dict[str, FakeRecords] = {}

    async def command(self, name: str) -> dict[str, Any]:
        if not self.up:
            raise ConnectionError("no database answers")
        return {"ok": 1}

    def __getitem__(self, name: str) -> FakeRecords:
        return self.collections.setdefault(name, FakeRecords())


class FakeRecords:
    """The backfill records by id (their MongoDB behaviour is tested against the real
    database in tests/integration/test_backfill_records.py)."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    async def find_one(self, query: dict[str, Any]) -> dict[str, Any] | None:
        return self.docs.get(query["_id"])

    async def update_one(self, query: dict[str, Any], update: dict[str, Any], upsert: bool) -> None:
        self.docs.setdefault(query["_id"], {"_id": query["_id"], **update["$setOnInsert"]})


class World:
    def __init__(self, readiness: frozenset[str]) -> None:
        self.broker = FakeBroker()
        self.db = FakeDb()
        self.worker_runs = 0
        self.mongo_worker_runs = 0

        async def worker(stop: asyncio.Event) -> None:
            self.worker_runs += 1
            await stop.wait()

        async def mongo_worker(stop: asyncio.Event) -> None:
            self.mongo_worker_runs += 1
            await stop.wait()

        parts = ServiceParts(
            settings=cast(Any, None),
            db=cast(Any, self.db),
            publisher=cast(Any, self.broker),
            register=lambda server: [],
            workers=[worker],
            mongo_workers=[mongo_worker],
            probe_interval=0.01,
            readiness=readiness,
        )
        self.runtime = ServiceRuntime(parts)
        self.runtime._service_names = ["lapor.v1.TestService"]

    async def status(self, service: str = "") -> int:
        request = health_pb2.HealthCheckRequest(service=service)
        reply = await self.runtime.health.Check(request, None)
        return int(reply.status)

    async def eventually(self, check: Callable[[], Any], what: str, seconds: float = 5) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        while not await check():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not within {seconds} s: {what}")
            await asyncio.sleep(0.01)


def dependency_up(name: str) -> float | None:
    return REGISTRY.get_sample_value("lapor_dependency_up", {"dependency": name})


async def running(world: World) -> asyncio.Task[None]:
    for name in ("", MONGODB, KAFKA):  # as run() sets them before the bring-up
        await world.runtime.health.set(name, NOT_SERVING)
    return asyncio.create_task(world.runtime._bring_up())


async def stopped(world: World, task: asyncio.Task[None]) -> None:
    world.runtime.stop.set()
    await asyncio.wait_for(asyncio.gather(task, *world.runtime._tasks), 10)


async def test_mongodb_only_serves_while_the_broker_is_away_and_reports_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World(MONGODB_ONLY)
    task = await running(world)

    async def serving(service: str = "") -> bool:
        return await world.status(service) == SERVING

    async def not_serving(service: str = "") -> bool:
        return await world.status(service) == NOT_SERVING

    # Started while the broker is away: ready once MongoDB is, the broker reported down.
    await world.eventually(serving, "SERVING without the broker")
    assert await world.status("lapor.v1.TestService") == SERVING
    assert await world.status(MONGODB) == SERVING
    assert await world.status(KAFKA) == NOT_SERVING
    assert dependency_up(KAFKA) == 0 and dependency_up(MONGODB) == 1
    assert world.worker_runs == 0  # the relay and consumers wait for the broker
    # Sweeps and cleanups need MongoDB only: they run while the broker is away.
    await world.eventually(lambda: _true(world.mongo_worker_runs == 1), "MongoDB-only workers")

    world.broker.up = True
    await world.eventually(lambda: serving(KAFKA), "kafka SERVING once the broker answers")
    await world.eventually(lambda: _true(world.worker_runs == 1), "the workers started")
    assert dependency_up(KAFKA) == 1

    # The broker lost later: still serving, the loss reported and logged.
    with caplog.at_level(logging.INFO, logger="services.common.runtime"):
        world.broker.up = False
        await world.eventually(lambda: not_serving(KAFKA), "kafka NOT_SERVING")
        for _ in range(5):  # several probe rounds
            await asyncio.sleep(0.02)
            assert await world.status() == SERVING
        assert dependency_up(KAFKA) == 0
        world.broker.up = True
        await world.eventually(lambda: serving(KAFKA), "kafka back")
    messages = [r.getMessage() for r in caplog.records]
    assert "dependency lost; still serving without it" in messages
    assert "dependency back" in messages

    # MongoDB lost: NOT_SERVING, back when it returns.
    world.db.up = False
    await world.eventually(not_serving, "NOT_SERVING without MongoDB")
    assert await world.status(MONGODB) == NOT_SERVING
    world.db.up = True
    await world.eventually(serving, "SERVING again")
    assert world.worker_runs == 1  # never restarted by an outage
    assert world.mongo_worker_runs == 1
    await stopped(world, task)


async def test_mongodb_and_kafka_waits_for_the_broker_and_follows_it() -> None:
    world = World(MONGODB_AND_KAFKA)
    task = await running(world)

    async def serving(service: str = "") -> bool:
        return await world.status(service) == SERVING

    async def not_serving(service: str = "") -> bool:
        return await world.status(service) == NOT_SERVING

    await asyncio.sleep(0.3)
    assert await world.status() == NOT_SERVING  # no broker yet
    assert world.worker_runs == 0
    assert world.mongo_worker_runs == 1  # MongoDB-only workers do not wait for it
    world.broker.up = True
    await world.eventually(serving, "SERVING once the broker answers")
    assert world.worker_runs == 1 and await world.status(KAFKA) == SERVING
    world.broker.up = False
    await world.eventually(not_serving, "NOT_SERVING without the broker")
    assert await world.status(KAFKA) == NOT_SERVING
    world.broker.up = True
    await world.eventually(serving, "SERVING again")
    await stopped(world, task)


async def test_shutdown_leaves_not_serving() -> None:
    world = World(MONGODB_ONLY)
    world.broker.up = True
    task = await running(world)
    await world.eventually(lambda: _true(world.worker_runs == 1), "the workers started")
    world.runtime.stop.set()
    await world.runtime._set_serving(False)
    await asyncio.wait_for(asyncio.gather(task, *world.runtime._tasks), 10)
    assert await world.status() == NOT_SERVING


@pytest.mark.parametrize(
    "readiness", [frozenset(), frozenset({KAFKA}), frozenset({MONGODB, "redis"})]
)
def test_readiness_names_mongodb_and_at_most_kafka(readiness: frozenset[str]) -> None:
    with pytest.raises(ValueError, match="readiness must be"):
        World(readiness)


async def _true(value: bool) -> bool:
    return value


async def test_backfills_run_once_in_the_background_and_are_retried() -> None:
    """An upgrade's backfill (a scan of a large collection) neither holds readiness nor runs
    under startup's time limit; one that fails is run again until it succeeds, and one that
    succeeded is not run again."""
    world = World(MONGODB_ONLY)
    release = asyncio.Event()
    calls: list[str] = []

    async def slow() -> int:
        calls.append("slow")
        await release.wait()
        return 0

    async def flaky() -> int:
        calls.append("flaky")
        if calls.count("flaky") == 1:
            raise ConnectionError("the database went away")
        return 0

    world.runtime.parts.backfills = [slow, flaky]
    task = await running(world)

    async def serving() -> bool:
        return await world.status() == SERVING

    await world.eventually(serving, "SERVING while a backfill runs")
    assert calls == ["slow"]
    release.set()
    await world.eventually(lambda: _true(calls.count("flaky") == 2), "the failed one again", 10)
    await asyncio.sleep(0.05)
    assert calls == ["slow", "flaky", "flaky"]
    await stopped(world, task)


async def test_a_failing_backfill_does_not_hold_back_the_next() -> None:
    world = World(MONGODB_ONLY)
    broken = True
    done: list[str] = []

    async def first_backfill() -> int:
        if broken:
            raise ValueError("a record it cannot read")
        done.append("first")
        return 0

    async def second_backfill() -> int:
        done.append("second")
        return 0

    world.runtime.parts.backfills = [first_backfill, second_backfill]
    task = await running(world)

    def pending(name: str) -> float | None:
        return REGISTRY.get_sample_value("lapor_backfill_pending", {"backfill": name})

    await world.eventually(lambda: _true(done == ["second"]), "the second ran")
    assert (pending("first_backfill"), pending("second_backfill")) == (1, 0)
    broken = False
    await world.eventually(lambda: _true(done == ["second", "first"]), "the first again", 10)
    assert pending("first_backfill") == 0
    await stopped(world, task)

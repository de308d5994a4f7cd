"""The life of one service process: listen, connect with retries, serve, report health,
and shut down cleanly on SIGTERM/SIGINT.

The gRPC server and the metrics endpoint start at once and report NOT_SERVING; the
dependencies (MongoDB, Kafka) are connected in the background with retries; workers that
need MongoDB only (sweeps, cleanups, gauges, rule reloads) start once it is, the others
(consumers, outbox relay) once both are; a watchdog keeps probing both.

Health (grpc.health.v1) has these entries:

* ``""`` and each served gRPC service name: the readiness the orchestrator routes by.
  SERVING once the dependencies the service declares in ``ServiceParts.readiness`` are
  connected (and, when Kafka is among them, the workers run) and while they answer the
  watchdog; NOT_SERVING otherwise. A service whose API writes events only through the
  transactional outbox needs MongoDB alone: while Kafka is away its events wait in MongoDB
  and the relay publishes them when the broker is back, so the API keeps serving.
* ``"mongodb"`` and ``"kafka"``: each dependency's last probe, whether readiness needs it
  or not (also ``lapor_dependency_up{dependency}``), so a broker outage stays visible.
* ``"liveness"``: SERVING while the process runs, whatever the dependencies do.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection  # type: ignore[import-untyped]
from pymongo.asynchronous.database import AsyncDatabase

from services.common.clock import sleep_until_or_stop
from services.common.kafka import KafkaPublisher
from services.common.lease import RELEASE_TIMEOUT
from services.common.logging import configure_logging
from services.common.metrics import (
    BACKFILL_PENDING,
    DEPENDENCY_UP,
    SERVING,
    start_metrics_server,
)
from services.common.mongo import Doc, ping
from services.common.settings import CommonSettings, SettingsError

log = logging.getLogger(__name__)

Worker = Callable[[asyncio.Event], Awaitable[None]]
Startup = Callable[[], Awaitable[None]]
#: An upgrade's data backfill: rewrites what older versions stored, returns how many
#: documents it changed (0: nothing was left to do).
Backfill = Callable[[], Awaitable[int]]
#: Where a service records the backfills that are done (a run that found nothing to change).
BACKFILLS = "backfills"
Registrar = Callable[[grpc.aio.Server], list[str]]

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
LIVENESS = "liveness"
MONGODB = "mongodb"
KAFKA = "kafka"
DEPENDENCIES = (MONGODB, KAFKA)
# What readiness may require: MongoDB always (the startup steps run on it), Kafka or not.
MONGODB_AND_KAFKA = frozenset({MONGODB, KAFKA})
MONGODB_ONLY = frozenset({MONGODB})
PROBE_TIMEOUT = 3.0
PUBLISHER_STOP_TIMEOUT = 5.0  # a producer with unsent batches and no broker waits for long


@dataclass
class ServiceParts:
    """What a service's bootstrap hands to the runtime."""

    settings: CommonSettings
    db: AsyncDatabase[Doc]
    publisher: KafkaPublisher
    register: Registrar  # adds servicers, returns service names
    startup: list[Startup] = field(default_factory=list)  # e.g. ensure indexes (retried)
    workers: list[Worker] = field(default_factory=list)  # consumers, the outbox relay
    # Workers that need MongoDB only (sweeps, cleanups, gauges, reloads): they start once
    # MongoDB is connected and run through a broker outage, also one at startup.
    mongo_workers: list[Worker] = field(default_factory=list)
    # Data backfills of an upgrade (rewrite what older versions stored): run once in the
    # background after startup, each retried until it succeeds, never holding readiness
    # and without startup's time limit (a scan of a national-size collection may take
    # minutes). Only steps the service serves correctly without.
    backfills: list[Backfill] = field(default_factory=list)
    close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    probe_interval: float = 1.0
    # The dependencies readiness (health "") requires: MONGODB_AND_KAFKA, or MONGODB_ONLY
    # for a service whose gRPC API needs only MongoDB (its events go through the outbox).
    # The other dependency is still connected, probed and reported.
    readiness: frozenset[str] = MONGODB_AND_KAFKA


class ServiceRuntime:
    def __init__(self, parts: ServiceParts) -> None:
        if parts.readiness not in (MONGODB_AND_KAFKA, MONGODB_ONLY):
            raise ValueError(
                f"readiness must be {sorted(MONGODB_AND_KAFKA)} or {sorted(MONGODB_ONLY)}, "
                f"not {sorted(parts.readiness)}"
            )
        self.parts = parts
        self.stop = asyncio.Event()
        self.health = health.aio.HealthServicer()
        self._service_names: list[str] = []
        self._ready = False  # the dependencies readiness needs were connected once
        self._up: dict[str, bool] = {}  # each dependency's last known state
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        s = self.parts.settings
        metrics_port = start_metrics_server(s.metrics_port)
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ]
        )
        self._service_names = self.parts.register(server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            [*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        port = server.add_insecure_port(f"{s.grpc_host}:{s.grpc_port}")
        await self._set_serving(False)
        for dependency in DEPENDENCIES:
            await self.health.set(dependency, health_pb2.HealthCheckResponse.NOT_SERVING)
        # Liveness ("is the process itself alive?") must not follow the dependencies, or an
        # orchestrator would restart healthy processes during a database outage.
        await self.health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        await server.start()
        log.info("listening", extra={"grpc_port": port, "metrics_port": metrics_port})
        self._tasks.append(asyncio.create_task(self._bring_up()))
        await self.stop.wait()
        log.info("shutting down")
        await self._set_serving(False)
        await server.stop(grace=5)
        await asyncio.wait(self._tasks, timeout=10)
        cancelled = [task for task in self._tasks if not task.done()]
        for task in cancelled:
            task.cancel()
        if cancelled:  # let them hand their leases over (bounded) before MongoDB closes
            await asyncio.wait(cancelled, timeout=RELEASE_TIMEOUT + 1)
        try:
            await asyncio.wait_for(self.parts.publisher.stop(), PUBLISHER_STOP_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - unsent events are still in the outbox
            log.warning("could not stop the Kafka producer cleanly", extra={"error": repr(exc)})
        for close in self.parts.close:
            await close()
        log.info("stopped")

    async def _bring_up(self) -> None:
        await self._retry(MONGODB, self._startup_mongo)
        if self.stop.is_set():
            return
        for worker in self.parts.mongo_workers:
            self._tasks.append(asyncio.create_task(self._guard(worker)))
        if self.parts.backfills:
            self._tasks.append(asyncio.create_task(self._backfill()))
        watching = KAFKA not in self.parts.readiness
        if watching:
            # Serve now: the broker is connected in the background, and the workers (the
            # relay publishes through the producer) start once it is.
            self._ready = True
            self._tasks.append(asyncio.create_task(self._watch()))
        await self._retry(KAFKA, self.parts.publisher.start)
        if self.stop.is_set():
            return
        for worker in self.parts.workers:
            self._tasks.append(asyncio.create_task(self._guard(worker)))
        self._ready = True
        if not watching:
            await self._watch()

    async def _startup_mongo(self) -> None:
        await ping(self.parts.db)
        for step in self.parts.startup:
            await step()

    async def _retry(self, dependency: str, step: Callable[[], Awaitable[None]]) -> None:
        delay = 0.2
        while not self.stop.is_set():
            try:
                await asyncio.wait_for(step(), timeout=15)
                await self._dependency(dependency, True)
                return
            except Exception as exc:  # noqa: BLE001 - any failure means: not yet
                await self._dependency(dependency, False)
                log.warning(
                    "waiting for dependency",
                    extra={"dependency": dependency, "error": repr(exc)[:200]},
                )
                if await sleep_until_or_stop(self.stop, delay):
                    return
                delay = min(delay * 2, 3.0)

    async def _backfill(self) -> None:
        """Run each backfill until it succeeds: one round tries every pending one in order,
        so one that keeps failing does not hold the others back; then a pause (doubling up to
        a minute) before the next round. ``lapor_backfill_pending`` shows what is left.

        A backfill whose run found nothing to change is recorded as done in the service's
        database (collection ``backfills``) and skipped by every later start, so a scan of a
        large collection is paid only until the data is rewritten. One that changed something
        runs again at the next start: during a rolling upgrade an older pod may still write
        the old form. Delete its record to run it again."""
        done = self.parts.db[BACKFILLS]
        pending = list(self.parts.backfills)
        for step in pending:
            BACKFILL_PENDING.labels(backfill=_name(step)).set(1)
        delay = 1.0
        while pending and not self.stop.is_set():
            for step in list(pending):
                try:
                    recorded = await done.find_one({"_id": _name(step)}) is not None
                    if not recorded and await step() == 0:
                        await done.update_one(
                            {"_id": _name(step)},
                            {"$setOnInsert": {"done_at": datetime.now(UTC)}},
                            upsert=True,
                        )
                except Exception as exc:  # noqa: BLE001 - retried next round
                    log.warning(
                        "backfill failed; retrying",
                        extra={"backfill": _name(step), "error": repr(exc)[:200]},
                    )
                    continue
                pending.remove(step)
                BACKFILL_PENDING.labels(backfill=_name(step)).set(0)
            if pending and await sleep_until_or_stop(self.stop, delay):
                return
            delay = min(delay * 2, 60.0)

    async def _guard(self, worker: Worker) -> None:
        """Restart a worker that crashed; a worker returns only when stop is set."""
        while not self.stop.is_set():
            try:
                await worker(self.stop)
            except Exception:
                log.exception(
                    "worker crashed; restarting",
                    extra={"worker": getattr(worker, "__qualname__", "?")},
                )
                if await sleep_until_or_stop(self.stop, 1.0):
                    return

    async def _watch(self) -> None:
        """Probe both dependencies, whatever readiness needs (they are reported either way),
        and set readiness from those it needs."""
        while not self.stop.is_set():
            up = await asyncio.gather(
                self._probe(MONGODB, lambda: ping(self.parts.db)),
                self._probe(KAFKA, self.parts.publisher.probe),
            )
            if self.stop.is_set():
                return  # shutting down: NOT_SERVING stays
            state = dict(zip(DEPENDENCIES, up, strict=True))
            await self._set_serving(self._ready and all(state[d] for d in self.parts.readiness))
            if await sleep_until_or_stop(self.stop, self.parts.probe_interval):
                return

    async def _probe(self, dependency: str, probe: Callable[[], Awaitable[None]]) -> bool:
        try:
            await asyncio.wait_for(probe(), timeout=PROBE_TIMEOUT)
        except Exception as exc:  # noqa: BLE001
            await self._dependency(dependency, False, exc)
            return False
        await self._dependency(dependency, True)
        return True

    async def _dependency(
        self, dependency: str, up: bool, error: BaseException | None = None
    ) -> None:
        """Record a dependency's state: the gauge, its health entry, and a log line when it
        changes after having been up (bring-up logs "waiting for dependency" itself)."""
        DEPENDENCY_UP.labels(dependency=dependency).set(1 if up else 0)
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if up
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health.set(dependency, status)
        before = self._up.get(dependency)
        self._up[dependency] = up
        if before is None or before == up:
            return
        needed = dependency in self.parts.readiness
        if up:
            log.info("dependency back", extra={"dependency": dependency})
        else:
            log.warning(
                "dependency lost" if needed else "dependency lost; still serving without it",
                extra={
                    "dependency": dependency,
                    "readiness": needed,
                    "error": repr(error)[:200] if error is not None else "",
                },
            )

    async def _set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        SERVING.set(1 if serving else 0)
        await self.health.set("", status)
        for name in self._service_names:
            await self.health.set(name, status)


def run(service: str, parts_factory: Callable[[], ServiceParts]) -> None:
    """Entry point for `python -m services.<name>`: a bad setting stops the service at
    start with one line naming it (exit status 2)."""
    configure_logging(service, os.environ.get("LAPOR_LOG_LEVEL", "INFO"))

    async def main() -> None:
        try:
            parts = parts_factory()
        except SettingsError as exc:
            print(f"{service}: configuration error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        await ServiceRuntime(parts).run()

    asyncio.run(main())
    # Shutting down already: a repeated SIGTERM must not cut the interpreter's exit short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _name(step: Callable[..., object]) -> str:
    """A backfill's name for logs and metrics: its function's name."""
    return getattr(step, "__name__", "?")


def logged_backfill(name: str, step: Callable[[], Awaitable[int]], done: str) -> Backfill:
    """`step` as a backfill called `name` (its record and metric label: keep it stable) that
    logs `done` with the count when it changed something."""

    async def backfill() -> int:
        changed = await step()
        if changed:
            log.info(done, extra={"backfill": name, "changed": changed})
        return changed

    backfill.__name__ = backfill.__qualname__ = name
    return backfill

"""Composition root of the SLA service."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from lapor.v1 import events_pb2

from services.common import topics
from services.common.clock import SystemClock
from services.common.deadletter import DeadLetters
from services.common.kafka import EventConsumer, KafkaPublisher
from services.common.mongo import create_client
from services.common.outbox import OutboxRelay
from services.common.runtime import ServiceParts
from services.common.settings import CommonSettings, Env, SettingsError
from services.sla.domain.calendar import WorkingCalendar
from services.sla.domain.policy import Policy, PolicyError, default_policy_path, load_policy
from services.sla.handlers import SlaHandlers


@dataclass(frozen=True)
class SlaSettings:
    common: CommonSettings
    policy: Policy
    sweep_interval: float

    @classmethod
    def from_env(cls, env: Env | None = None) -> SlaSettings:
        env = env or Env()
        path = Path(env.text("LAPOR_SLA_POLICY_FILE", str(default_policy_path())))
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            raise SettingsError(f"LAPOR_SLA_POLICY_FILE: {exc}") from None
        return cls(
            common=CommonSettings.from_env("sla", env),
            policy=policy,
            sweep_interval=env.number("LAPOR_SLA_SWEEP_INTERVAL_SECONDS", 0.5, low=0.01, high=3600),
        )


def bootstrap(settings: SlaSettings | None = None) -> ServiceParts:
    settings = settings or SlaSettings.from_env()
    s = settings.common
    client = create_client(s.mongodb_uri, "lapor-sla")
    db = client[s.mongodb_database]
    cases = db["clocks"]
    publisher = KafkaPublisher(s.kafka, "lapor-sla")
    relay = OutboxRelay([cases], publisher)
    relay.replay_on_start = s.outbox_replay
    handlers = SlaHandlers(
        cases,
        settings.policy,
        WorkingCalendar.from_policy(settings.policy),
        SystemClock(),
        relay.wake,
    )
    dead = DeadLetters(db["dead_letters"])
    consumer = EventConsumer(
        s.kafka,
        topics.COMPLAINTS_ROUTED,
        "lapor-sla",
        events_pb2.ComplaintRouted,
        handlers.handle_routed,
        dead.park,
    )

    def register(server: grpc.aio.Server) -> list[str]:
        return []

    async def sweeps(stop: object) -> None:
        await handlers.run_sweeps(stop, settings.sweep_interval)  # type: ignore[arg-type]

    async def close() -> None:
        await client.close()

    return ServiceParts(
        settings=s,
        db=db,
        publisher=publisher,
        register=register,
        startup=[handlers.ensure_indexes, dead.ensure_indexes],
        workers=[relay.run, consumer.run, sweeps],
        close=[close],
    )

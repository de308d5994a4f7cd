"""Composition root of the SLA service."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
from lapor.v1 import events_pb2, sla_pb2, sla_pb2_grpc

from services.common import topics
from services.common.auth import TokenVerifier
from services.common.clock import SystemClock
from services.common.deadletter import DeadLetters
from services.common.kafka import EventConsumer, KafkaPublisher
from services.common.lease import service_lease
from services.common.mongo import create_client
from services.common.outbox import RELAY_LEASE
from services.common.regions import default_regions
from services.common.runtime import MONGODB_ONLY, ServiceParts, logged_backfill
from services.common.settings import CommonSettings, Env, SettingsError
from services.routing.domain.directory import Directory
from services.sla.cards import ReportCards
from services.sla.domain.actions import Rules
from services.sla.domain.calendar import WorkingCalendar
from services.sla.domain.policy import Policy, PolicyError, default_policy_path, load_policy
from services.sla.grpc_api import SlaService
from services.sla.handlers import SlaHandlers, drop_unneeded_content
from services.sla.lag import watch_lag
from services.sla.officers import Officers
from services.sla.relay import KEEP_DAYS, SlaRelay
from services.sla.sweep import SWEEP_LEASE, Sweeper
from services.sla.watermark import ActionsWatermark, KafkaOffsetsProbe

GROUP = "lapor-sla"


@dataclass(frozen=True)
class SlaSettings:
    common: CommonSettings
    policy: Policy
    sweep_interval: float
    verifier: TokenVerifier
    gauge_interval: float
    lag_interval: float
    escalation_settle: float
    watermark_interval: float
    outbox_keep_days: int

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
            verifier=TokenVerifier.from_env(env),
            gauge_interval=env.number("LAPOR_SLA_GAUGE_INTERVAL_SECONDS", 15, low=1, high=86400),
            lag_interval=env.number("LAPOR_SLA_LAG_INTERVAL_SECONDS", 15, low=1, high=3600),
            escalation_settle=env.number(
                "LAPOR_SLA_ESCALATION_SETTLE_SECONDS", 30, low=0, high=3600
            ),
            watermark_interval=env.number(
                "LAPOR_SLA_WATERMARK_INTERVAL_SECONDS", 5, low=0.1, high=300
            ),
            outbox_keep_days=env.integer("LAPOR_SLA_OUTBOX_KEEP_DAYS", KEEP_DAYS, low=1, high=3650),
        )


def bootstrap(settings: SlaSettings | None = None) -> ServiceParts:
    settings = settings or SlaSettings.from_env()
    s = settings.common
    client = create_client(s.mongodb_uri, GROUP)
    db = client[s.mongodb_database]
    cases = db["clocks"]
    publisher = KafkaPublisher(s.kafka, GROUP)
    relay = SlaRelay(
        cases,
        publisher,
        batch_size=200,
        poll_interval=s.outbox_poll_seconds,
        keep_days=settings.outbox_keep_days,
        lease=service_lease(db, RELAY_LEASE, s),
    )
    relay.replay_on_start = s.outbox_replay
    clock = SystemClock()
    rules = Rules(settings.policy, WorkingCalendar.from_policy(settings.policy))
    handlers = SlaHandlers(cases, rules, clock, relay.wake_documents)
    directory = Directory.seed(default_regions())

    def institution_name(institution_id: str) -> str:
        found = directory.get(institution_id)
        return found.name if found else ""

    # The Ombudsman escalation waits until sla has heard every action up to its deadline.
    watermark = ActionsWatermark(
        KafkaOffsetsProbe(s.kafka, f"{GROUP}.{topics.CASE_ACTIONS}", topics.CASE_ACTIONS),
        clock,
        settle=timedelta(seconds=settings.escalation_settle),
        interval=settings.watermark_interval,
    )
    sweeper = Sweeper(
        cases,
        settings.policy,
        clock,
        relay.wake_batches,
        institution_name=institution_name,
        gate=watermark,
        hold_retry=timedelta(seconds=max(settings.watermark_interval, 1.0)),
        # One replica sweeps, the others stand by (its own lease: the relay's holder may be
        # another replica).
        lease=service_lease(db, SWEEP_LEASE, s, clock),
    )
    officers = Officers(cases, rules, directory, clock, relay.wake_documents)
    cards = ReportCards(cases, clock)
    dead = DeadLetters(db["dead_letters"], s.dead_letter_retention_days)

    consumers: list[EventConsumer[Any]] = [
        EventConsumer(
            s.kafka,
            topics.COMPLAINTS_ROUTED,
            GROUP,
            events_pb2.ComplaintRouted,
            handlers.handle_routed,
            dead.park,
        ),
        EventConsumer(
            s.kafka,
            topics.COMPLAINTS_RECEIVED,
            GROUP,
            events_pb2.ComplaintReceived,
            handlers.handle_received,
            dead.park,
        ),
        EventConsumer(
            s.kafka,
            topics.CASE_ACTIONS,
            GROUP,
            events_pb2.CaseAction,
            handlers.handle_actions,
            dead.park,
        ),
    ]

    def register(server: grpc.aio.Server) -> list[str]:
        sla_pb2_grpc.add_SlaServiceServicer_to_server(
            SlaService(officers, cards, settings.verifier), server
        )
        return [sla_pb2.DESCRIPTOR.services_by_name["SlaService"].full_name]

    async def sweeps(stop: asyncio.Event) -> None:
        await sweeper.run(stop, settings.sweep_interval)

    async def gauges(stop: asyncio.Event) -> None:
        await cards.run(stop, settings.gauge_interval)

    async def lag(stop: asyncio.Event) -> None:
        await watch_lag(
            s.kafka, GROUP, tuple(c.topic for c in consumers), stop, settings.lag_interval
        )

    unneeded_content = logged_backfill(
        "unneeded_content",
        lambda: drop_unneeded_content(cases),
        "report content dropped from handed-over or closed reports",
    )

    async def close() -> None:
        await client.close()

    return ServiceParts(
        settings=s,
        db=db,
        publisher=publisher,
        register=register,
        startup=[handlers.ensure_indexes, relay.ensure_indexes, dead.ensure_indexes],
        # The sweep waits for the broker: its breaches and escalations are decided on the
        # clocks the consumers keep, and a report resolved while sla could not hear it must
        # not be escalated on a stale clock. The report-card gauges read MongoDB only.
        workers=[relay.run, *(c.run for c in consumers), sweeps, lag, watermark.watch],
        mongo_workers=[gauges],
        backfills=[unneeded_content],
        close=[close],
        # SlaService reads and writes MongoDB only (extensions' events go out through the
        # outbox): a broker outage keeps it serving.
        readiness=MONGODB_ONLY,
    )

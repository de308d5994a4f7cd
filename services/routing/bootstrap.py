"""Composition root of the routing service."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import grpc
from lapor.v1 import events_pb2

from services.common import topics
from services.common.auth import TokenVerifier
from services.common.clock import SystemClock, sleep_until_or_stop
from services.common.deadletter import DeadLetters
from services.common.kafka import EventConsumer, KafkaPublisher
from services.common.lease import service_lease
from services.common.mongo import create_client
from services.common.outbox import RELAY_LEASE, OutboxRelay, queue_for
from services.common.regions import default_regions
from services.common.runtime import MONGODB_ONLY, ServiceParts, logged_backfill
from services.common.settings import CommonSettings, Env, SettingsError
from services.routing.actions import CaseActions
from services.routing.case_events import CaseEventHandlers
from services.routing.case_store import CaseStore
from services.routing.domain.classifier import TopicClassifier
from services.routing.domain.directory import Directory
from services.routing.domain.rules import DEFAULT_RULES_FILE, RulesError
from services.routing.grpc_api import Api
from services.routing.grpc_api import register as register_api
from services.routing.handlers import RoutingHandlers
from services.routing.institutions import InstitutionRegistry
from services.routing.queries import CaseQueries
from services.routing.retention import TRIM_LEASE, ClosedCaseTrim, closed_trim_days
from services.routing.rules_source import RulesSource

DIRECTORY_REFRESH_SECONDS = 10.0


def bootstrap(settings: CommonSettings | None = None, env: Env | None = None) -> ServiceParts:
    env = env or Env()
    s = settings or CommonSettings.from_env("routing", env)
    verifier = TokenVerifier.from_env(env)
    rules_path = Path(env.text("LAPOR_ROUTING_RULES_FILE", str(DEFAULT_RULES_FILE)))
    poll = env.number("LAPOR_ROUTING_RULES_POLL_SECONDS", 1.0, low=0.05, high=3600)
    trim_days = closed_trim_days(env)
    regions = default_regions()
    client = create_client(s.mongodb_uri, "lapor-routing")
    db = client[s.mongodb_database]
    registry = InstitutionRegistry(db["institutions"], Directory.seed(regions))
    try:
        rules = RulesSource(rules_path, registry, poll)
    except RulesError as exc:
        raise SettingsError(f"LAPOR_ROUTING_RULES_FILE: {exc}") from None
    store = CaseStore(db["cases"])
    publisher = KafkaPublisher(s.kafka, "lapor-routing")
    relay = OutboxRelay(
        [store.cases],
        publisher,
        poll_interval=s.outbox_poll_seconds,
        queues=[queue_for(store.cases)],
        lease=service_lease(db, RELAY_LEASE, s),
    )
    relay.replay_on_start = s.outbox_replay
    clock = SystemClock()
    handlers = RoutingHandlers(
        store, registry, rules, TopicClassifier.default(), regions, clock, relay.wake
    )
    actions = CaseActions(store, registry, clock, relay.wake, knows=registry.knows)
    case_events = CaseEventHandlers(actions, store)
    handlers.after_stored = case_events.apply_early_privacy
    api = Api(verifier, actions, CaseQueries(store, registry), registry, rules)
    dead = DeadLetters(db["dead_letters"], s.dead_letter_retention_days)
    trim = ClosedCaseTrim(
        store.cases,
        clock,
        timedelta(days=trim_days),
        lease=service_lease(db, TRIM_LEASE, s, clock),
    )
    date_closures = logged_backfill(
        "date_undated_case_closures",
        trim.date_undated_closures,
        "cases closed before closed_at existed are trimmed from their last change",
    )

    def consumer(topic: str, message: type, handle: object) -> EventConsumer:  # type: ignore[type-arg]
        return EventConsumer(s.kafka, topic, "lapor-routing", message, handle, dead.park)  # type: ignore[arg-type]

    consumers = [
        consumer(
            topics.COMPLAINTS_RECEIVED, events_pb2.ComplaintReceived, handlers.handle_received
        ),
        consumer(topics.SLA_EVENTS, events_pb2.SlaEvent, case_events.handle_sla),
        consumer(topics.REPORTER_ACTIONS, events_pb2.ReporterAction, case_events.handle_reporter),
    ]

    async def refresh_directory(stop: asyncio.Event) -> None:
        while not await sleep_until_or_stop(stop, DIRECTORY_REFRESH_SECONDS):
            await registry.load()

    def register(server: grpc.aio.Server) -> list[str]:
        return register_api(api, server)

    async def close() -> None:
        await client.close()

    return ServiceParts(
        settings=s,
        db=db,
        publisher=publisher,
        register=register,
        startup=[handlers.ensure_indexes, dead.ensure_indexes, registry.load, rules.recheck],
        workers=[relay.run, *(c.run for c in consumers)],
        # Rule reloads, directory refreshes and the hourly trim of closed cases go on
        # through a broker outage.
        mongo_workers=[rules.watch, refresh_directory, trim.run],
        backfills=[date_closures],
        close=[close],
        # The officers' and admins' API reads and writes MongoDB only (case actions go out
        # through the outbox): a broker outage keeps it serving.
        readiness=MONGODB_ONLY,
    )

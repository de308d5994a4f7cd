"""Composition root of the notify service."""

from __future__ import annotations

from typing import Any

import grpc
from lapor.v1 import events_pb2

from services.common import topics
from services.common.clock import SystemClock
from services.common.deadletter import DeadLetters
from services.common.kafka import EventConsumer, KafkaPublisher
from services.common.mongo import create_client
from services.common.outbox import OutboxRelay, queue_for
from services.common.runtime import MONGODB_AND_KAFKA, ServiceParts
from services.common.settings import CommonSettings, Env
from services.notify.handlers import NotifyHandlers
from services.notify.providers import (
    PROVIDERS,
    CollectionProvider,
    LogProvider,
    NotificationProvider,
)

GROUP = "lapor-notify"


def bootstrap(settings: CommonSettings | None = None, env: Env | None = None) -> ServiceParts:
    env = env or Env()
    s = settings or CommonSettings.from_env("notify", env)
    provider_name = env.choice("LAPOR_NOTIFY_PROVIDER", PROVIDERS, "collection")
    client = create_client(s.mongodb_uri, "lapor-notify")
    db = client[s.mongodb_database]
    notifications = db["notifications"]
    provider: NotificationProvider = (
        CollectionProvider(db["inbox"]) if provider_name == "collection" else LogProvider()
    )
    publisher = KafkaPublisher(s.kafka, "lapor-notify")
    # New notifications' events wait in the queue; the in-document outbox still carries
    # those of notifications the previous version left pending (handlers' module docstring).
    relay = OutboxRelay([notifications], publisher, queues=[queue_for(notifications)])
    relay.replay_on_start = s.outbox_replay
    handlers = NotifyHandlers(notifications, provider, SystemClock(), relay.wake)
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
            s.kafka, topics.SLA_EVENTS, GROUP, events_pb2.SlaEvent, handlers.handle_sla, dead.park
        ),
        EventConsumer(
            s.kafka,
            topics.ESCALATIONS,
            GROUP,
            events_pb2.OmbudsmanEscalation,
            handlers.handle_escalation,
            dead.park,
        ),
        EventConsumer(
            s.kafka,
            topics.CASE_ACTIONS,
            GROUP,
            events_pb2.CaseAction,
            handlers.handle_case_actions,
            dead.park,
        ),
    ]

    def register(server: grpc.aio.Server) -> list[str]:
        return []

    async def close() -> None:
        await client.close()

    return ServiceParts(
        settings=s,
        db=db,
        publisher=publisher,
        register=register,
        startup=[handlers.ensure_indexes, dead.ensure_indexes],
        workers=[relay.run, *(c.run for c in consumers)],
        close=[close],
        # No API to keep serving: notify's only work is consuming and publishing, so its
        # readiness says whether it can do that work.
        readiness=MONGODB_AND_KAFKA,
    )

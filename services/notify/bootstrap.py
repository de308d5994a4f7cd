"""Composition root of the notify service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
from lapor.v1 import events_pb2

from services.common import topics
from services.common.clock import SystemClock
from services.common.deadletter import DeadLetters
from services.common.kafka import EventConsumer, KafkaPublisher
from services.common.lease import service_lease
from services.common.mongo import create_client
from services.common.outbox import RELAY_LEASE, OutboxRelay, queue_for
from services.common.runtime import MONGODB_AND_KAFKA, ServiceParts, logged_backfill
from services.common.settings import CommonSettings, Env, SettingsError
from services.notify.handlers import NotifyHandlers
from services.notify.providers import (
    PROVIDERS,
    CollectionProvider,
    LogProvider,
    NotificationProvider,
)

GROUP = "lapor-notify"
RECORD_RETENTION = "LAPOR_NOTIFY_RECORD_RETENTION_DAYS"
INBOX_RETENTION = "LAPOR_NOTIFY_INBOX_RETENTION_DAYS"
#: The shortest record retention: longer than the escalations topic keeps its events.
MIN_RECORD_DAYS = 31


def _days(days: int) -> timedelta | None:
    return timedelta(days=days) if days else None  # 0: kept for good


@dataclass(frozen=True)
class NotifySettings:
    provider: str
    #: How long a sent notification's record is kept, and the age of the oldest event still
    #: sent (services/notify/handlers.py); None: kept for good.
    record_retention: timedelta | None
    #: How long a message stays in the ``collection`` provider's inbox; None: kept for good.
    inbox_retention: timedelta | None

    @classmethod
    def from_env(cls, env: Env | None = None) -> NotifySettings:
        env = env or Env()
        records = env.integer(RECORD_RETENTION, 90, low=-(2**31), high=2**31)
        if records and not MIN_RECORD_DAYS <= records <= 3650:
            raise SettingsError(
                f"{RECORD_RETENTION}={records} is outside {MIN_RECORD_DAYS}..3650 "
                "(0 keeps the records)"
            )
        return cls(
            provider=env.choice("LAPOR_NOTIFY_PROVIDER", PROVIDERS, "collection"),
            record_retention=_days(records),
            inbox_retention=_days(env.integer(INBOX_RETENTION, 60, low=0, high=3650)),
        )


def bootstrap(settings: CommonSettings | None = None, env: Env | None = None) -> ServiceParts:
    env = env or Env()
    s = settings or CommonSettings.from_env("notify", env)
    n = NotifySettings.from_env(env)
    client = create_client(s.mongodb_uri, "lapor-notify")
    db = client[s.mongodb_database]
    notifications = db["notifications"]
    inbox = CollectionProvider(db["inbox"], n.inbox_retention)
    provider: NotificationProvider = inbox if n.provider == "collection" else LogProvider()
    publisher = KafkaPublisher(s.kafka, "lapor-notify")
    # New notifications' events wait in the queue; the in-document outbox still carries
    # those of notifications the previous version left pending (handlers' module docstring).
    relay = OutboxRelay(
        [notifications],
        publisher,
        poll_interval=s.outbox_poll_seconds,
        queues=[queue_for(notifications)],
        lease=service_lease(db, RELAY_LEASE, s),
    )
    relay.replay_on_start = s.outbox_replay
    handlers = NotifyHandlers(
        notifications, provider, SystemClock(), relay.wake, retention=n.record_retention
    )
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

    drop_message_texts = logged_backfill(
        "drop_message_texts",
        handlers.drop_message_texts,
        "notification records now hold no message text",
    )

    async def close() -> None:
        await client.close()

    return ServiceParts(
        settings=s,
        db=db,
        publisher=publisher,
        register=register,
        startup=[
            handlers.ensure_indexes,
            dead.ensure_indexes,
            *([inbox.ensure_indexes] if n.provider == "collection" else []),
        ],
        workers=[relay.run, *(c.run for c in consumers)],
        # The records of older versions keep the message text until this has run.
        backfills=[drop_message_texts],
        close=[close],
        # No API to keep serving: notify's only work is consuming and publishing, so its
        # readiness says whether it can do that work.
        readiness=MONGODB_AND_KAFKA,
    )

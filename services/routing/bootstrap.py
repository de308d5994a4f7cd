"""Composition root of the routing service."""

from __future__ import annotations

import grpc
from lapor.v1 import events_pb2

from services.common import topics
from services.common.clock import SystemClock
from services.common.deadletter import DeadLetters
from services.common.kafka import EventConsumer, KafkaPublisher
from services.common.mongo import create_client
from services.common.outbox import OutboxRelay
from services.common.regions import default_regions
from services.common.runtime import ServiceParts
from services.common.settings import CommonSettings
from services.routing.domain.directory import Directory
from services.routing.handlers import RoutingHandlers


def bootstrap(settings: CommonSettings | None = None) -> ServiceParts:
    s = settings or CommonSettings.from_env("routing")
    client = create_client(s.mongodb_uri, "lapor-routing")
    db = client[s.mongodb_database]
    cases = db["cases"]
    publisher = KafkaPublisher(s.kafka, "lapor-routing")
    relay = OutboxRelay([cases], publisher)
    relay.replay_on_start = s.outbox_replay
    regions = default_regions()
    handlers = RoutingHandlers(cases, Directory.seed(regions), regions, SystemClock(), relay.wake)
    dead = DeadLetters(db["dead_letters"])
    consumer = EventConsumer(
        s.kafka,
        topics.COMPLAINTS_RECEIVED,
        "lapor-routing",
        events_pb2.ComplaintReceived,
        handlers.handle_received,
        dead.park,
    )

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
        workers=[relay.run, consumer.run],
        close=[close],
    )

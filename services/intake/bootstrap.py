"""Composition root of the intake service: settings, clients, wiring."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from lapor.v1 import events_pb2, intake_pb2, intake_pb2_grpc

from services.common import topics
from services.common.auth import TokenVerifier
from services.common.clock import SystemClock
from services.common.deadletter import DeadLetters
from services.common.ids import new_tracking_id
from services.common.kafka import EventConsumer, KafkaPublisher
from services.common.lease import service_lease
from services.common.mongo import create_client
from services.common.outbox import RELAY_LEASE, OutboxRelay, queue_for
from services.common.regions import default_regions
from services.common.runtime import MONGODB_ONLY, ServiceParts, logged_backfill
from services.common.settings import CommonSettings, Env, Secret
from services.intake import projection
from services.intake.channel_wiring import ChannelSettings, wire_channels
from services.intake.evidence_store import BUCKET, drop_unkept_file_names, neutral_file_names
from services.intake.grpc_api import IntakeServicer
from services.intake.handlers import IntakeHandlers
from services.intake.identity import IdentityCipher
from services.intake.officer_evidence_api import wire_officer_evidence
from services.intake.reporter_wiring import wire_reporter
from services.intake.store import MongoComplaintStore
from services.routing.domain.directory import Directory

log = logging.getLogger(__name__)

GROUP = "lapor-intake-tracking"
RELAY_BATCH = 100  # events per relay round: bounds how long one round holds the database
# How long shutdown waits for access codes still being sent (the webhook's own timeout is
# 5 s by default); within terminationGracePeriodSeconds together with the rest of shutdown.
ACCESS_CODE_SETTLE_SECONDS = 5.0


@dataclass(frozen=True)
class IntakeSettings:
    common: CommonSettings
    identity_keys: Secret
    identity_active_key: str
    channels: ChannelSettings
    verifier: TokenVerifier  # officers' tokens, for EvidenceService (as routing's)

    @classmethod
    def from_env(cls, env: Env | None = None) -> IntakeSettings:
        env = env or Env()
        keys = env.secret("LAPOR_IDENTITY_KEYS")
        first = keys.reveal().split(",")[0].partition(":")[0].strip()
        return cls(
            common=CommonSettings.from_env("intake", env),
            identity_keys=keys,
            identity_active_key=env.text("LAPOR_IDENTITY_ACTIVE_KEY", first),
            channels=ChannelSettings.from_env(env),
            verifier=TokenVerifier.from_env(env),
        )


async def settle_access_codes(
    settle: Callable[[float], Awaitable[int]], wait_seconds: float = ACCESS_CODE_SETTLE_SECONDS
) -> int:
    """At shutdown: wait (at most `wait_seconds`) for the access codes still being sent,
    whose reporters were told a code was sent. Logs how many were left unsent, the number
    only (never a code, a contact or a tracking id). Returns that number."""
    pending = await settle(wait_seconds)
    if pending:
        log.warning(
            "access codes still being sent at shutdown were abandoned",
            extra={"pending": pending, "waited_seconds": wait_seconds},
        )
    return pending


def bootstrap(settings: IntakeSettings | None = None) -> ServiceParts:
    settings = settings or IntakeSettings.from_env()
    s = settings.common
    cipher = IdentityCipher.from_config(settings.identity_keys, settings.identity_active_key)
    client = create_client(s.mongodb_uri, "lapor-intake")
    db = client[s.mongodb_database]
    complaints = db["complaints"]
    publisher = KafkaPublisher(s.kafka, "lapor-intake")
    relay = OutboxRelay(
        [complaints],
        publisher,
        batch_size=RELAY_BATCH,
        poll_interval=s.outbox_poll_seconds,
        queues=[queue_for(complaints)],
        lease=service_lease(db, RELAY_LEASE, s),
    )
    relay.replay_on_start = s.outbox_replay
    store = MongoComplaintStore(complaints, cipher, on_stored=relay.wake)
    regions = default_regions()
    channel_parts = wire_channels(settings.channels, db, store, SystemClock())
    handlers = IntakeHandlers(
        store=store,
        clock=SystemClock(),
        new_tracking_id=new_tracking_id,
        known_region=regions.__contains__,
        limiter=channel_parts.limiter,
        limits=channel_parts.limits,
        hasher=channel_parts.hasher,
    )
    tracking = projection.TrackingProjection(complaints)
    dead = DeadLetters(db["dead_letters"], s.dead_letter_retention_days)
    reporter = wire_reporter(
        db=db,
        complaints=complaints,
        cipher=cipher,
        clock=SystemClock(),
        on_stored=relay.wake,
        kafka=s.kafka,
        group=GROUP,
        dead_letter=dead.park,
        hasher=channel_parts.hasher,
    )
    handlers.guard = reporter.guard  # RaisePrivacy counts wrong follow-up codes too
    # Officers read the evidence; who sees which report follows the shipped directory
    # (like sla's): institutions added at run time are known to routing only.
    officer_evidence = wire_officer_evidence(
        db, complaints, settings.verifier, Directory.seed(regions), SystemClock()
    )

    def consumer(topic: str, message_type: type, build: object) -> EventConsumer:  # type: ignore[type-arg]
        async def handle(deliveries: list) -> None:  # type: ignore[type-arg]
            await tracking.apply(topic, deliveries, build)

        return EventConsumer(s.kafka, topic, GROUP, message_type, handle, dead.park)

    consumers = [
        consumer(topics.COMPLAINTS_ROUTED, events_pb2.ComplaintRouted, projection.routed_update),
        consumer(topics.SLA_EVENTS, events_pb2.SlaEvent, projection.sla_update),
        consumer(
            topics.NOTIFICATIONS, events_pb2.NotificationRecorded, projection.notification_update
        ),
        consumer(topics.ESCALATIONS, events_pb2.OmbudsmanEscalation, projection.escalation_update),
        reporter.consumer,
    ]

    def register(server: grpc.aio.Server) -> list[str]:
        intake_pb2_grpc.add_IntakeServiceServicer_to_server(
            IntakeServicer(handlers, channel_parts.clients), server
        )
        names = [intake_pb2.DESCRIPTOR.services_by_name["IntakeService"].full_name]
        return names + reporter.register(server) + officer_evidence.register(server)

    hash_plain_references = logged_backfill(
        "hash_plain_references",
        lambda: store.hash_plain_references(channel_parts.hasher.reference_key),
        "institution references now kept as keyed hashes",
    )
    neutral_evidence_names = logged_backfill(
        "neutral_evidence_names",
        lambda: neutral_file_names(db[f"{BUCKET}.files"]),
        "evidence files now stored under neutral names",
    )
    unkept_evidence_names = logged_backfill(
        "unkept_evidence_names",
        lambda: drop_unkept_file_names(complaints),
        "file names dropped from reports that keep no identity",
    )

    async def close() -> None:
        # Before the clients close: the collection sender writes to MongoDB.
        await settle_access_codes(reporter.settle_codes)
        await store.close()
        await channel_parts.limiter.close()
        await client.close()

    return ServiceParts(
        settings=s,
        db=db,
        publisher=publisher,
        register=register,
        startup=[
            store.ensure_indexes,
            dead.ensure_indexes,
            *channel_parts.startup,
            *reporter.startup,
            *officer_evidence.startup,
        ],
        workers=[relay.run, *(c.run for c in consumers)],
        # The dedupe-key cleanup and the evidence sweep need MongoDB only.
        mongo_workers=[*channel_parts.workers, *reporter.workers],
        # Rewrites of what older versions stored; intake serves correctly meanwhile (a retry
        # also finds a plain reference, earlier(); the others only date or rename).
        backfills=[
            hash_plain_references,
            neutral_evidence_names,
            unkept_evidence_names,
            *channel_parts.backfills,
        ],
        close=[close],
        # Submissions, the reporter's calls and evidence need MongoDB only: their events
        # wait in the outbox while Kafka is away, so a broker outage keeps intake serving.
        readiness=MONGODB_ONLY,
    )

"""Wiring of the reporter's side into intake (called from bootstrap): settings, the
ReporterService servicer, the CaseAction consumer and their indexes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from lapor.v1 import events_pb2, reporter_pb2, reporter_pb2_grpc
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from services.common.clock import Clock
from services.common.ids import new_event_id
from services.common.kafka import Delivery, EventConsumer
from services.common.mongo import Doc
from services.common.settings import Env, KafkaSettings
from services.common.status import MAX_REOPENS
from services.common.topics import CASE_ACTIONS
from services.intake.abuse import AbuseHasher
from services.intake.access_codes import AccessHandlers, AccessSettings, GuessGuard
from services.intake.access_store import (
    ATTEMPTS,
    CODES,
    TOKENS,
    MongoAccessCodes,
    MongoAccessTokens,
    MongoAttemptLog,
    code_sender,
)
from services.intake.case_view import CaseActionProjection
from services.intake.domain import Contact
from services.intake.evidence import EvidenceHandlers, EvidenceLimits, MiB
from services.intake.evidence_store import GridFsEvidenceStore
from services.intake.evidence_sweep import OrphanSweep, SweepSettings
from services.intake.followup import FIELD, hash_follow_up_code, verify_follow_up_code
from services.intake.identity import IdentityCipher, SealedIdentity
from services.intake.reporter import ReporterHandlers
from services.intake.reporter_api import ReporterServicer
from services.intake.reporter_store import MongoReportRepository

# Verified against when the tracking id is unknown, so that answer takes as long as a
# wrong code.
_DUMMY = hash_follow_up_code("0000-0000-0000")


@dataclass(frozen=True)
class ReporterSettings:
    max_reopens: int
    evidence: EvidenceLimits
    evidence_sweep: SweepSettings = SweepSettings()
    access: AccessSettings = AccessSettings()

    @classmethod
    def from_env(cls, env: Env | None = None) -> ReporterSettings:
        env = env or Env()
        sweep = SweepSettings.from_env(env)
        # An upload may not outlast half the grace after which the sweep gives its file up.
        longest = min(
            env.number("LAPOR_EVIDENCE_UPLOAD_MAX_SECONDS", 1800.0, low=1.0, high=604800.0),
            sweep.grace.total_seconds() / 2,
        )
        return cls(
            max_reopens=MAX_REOPENS,  # routing's limit: not a setting of its own
            evidence=EvidenceLimits(
                max_file_bytes=env.integer(
                    "LAPOR_EVIDENCE_MAX_FILE_BYTES", 10 * MiB, low=1024, high=1024 * MiB
                ),
                max_video_bytes=env.integer(
                    "LAPOR_EVIDENCE_MAX_VIDEO_BYTES", 25 * MiB, low=1024, high=1024 * MiB
                ),
                max_report_bytes=env.integer(
                    "LAPOR_EVIDENCE_MAX_REPORT_BYTES", 50 * MiB, low=1024, high=10 * 1024 * MiB
                ),
                max_concurrent_uploads=env.integer(
                    "LAPOR_EVIDENCE_MAX_CONCURRENT_UPLOADS", 8, low=1, high=1000
                ),
                # Each file's listing takes up to ~1 KB of the complaint document (16 MB).
                max_files=env.integer("LAPOR_EVIDENCE_MAX_FILES", 20, low=1, high=1000),
                idle_seconds=env.number(
                    "LAPOR_EVIDENCE_UPLOAD_IDLE_SECONDS", 60.0, low=0.1, high=3600.0
                ),
                max_upload_seconds=longest,
            ),
            evidence_sweep=sweep,
            access=AccessSettings.from_env(env),
        )


def verify_code(report: Doc | None, code: str) -> bool:
    stored = report.get(FIELD) if report is not None else None
    if not stored:
        verify_follow_up_code(_DUMMY, code)
        return False
    return verify_follow_up_code(stored, code)


def contact_opener(cipher: IdentityCipher) -> Callable[[Doc], Contact | None]:
    def open_contact(doc: Doc) -> Contact | None:
        sealed = doc.get("reporter")
        if not sealed:
            return None
        return cipher.open(SealedIdentity(sealed["kid"], sealed["nonce"], sealed["ct"]), doc["_id"])

    return open_contact


@dataclass
class ReporterParts:
    register: Callable[[grpc.aio.Server], list[str]]
    consumer: EventConsumer[events_pb2.CaseAction]
    startup: list[Callable[[], Awaitable[None]]]
    workers: list[Callable[[asyncio.Event], Awaitable[None]]]
    guard: GuessGuard  # the wrong-code limit, shared with IntakeService.RaisePrivacy
    # Waits (at most the given seconds) for access codes being sent; returns how many
    # are still being sent. Called at shutdown.
    settle_codes: Callable[[float], Awaitable[int]]


def wire_reporter(
    *,
    db: AsyncDatabase[Doc],
    complaints: AsyncCollection[Doc],
    cipher: IdentityCipher,
    clock: Clock,
    on_stored: Callable[[], None],
    kafka: KafkaSettings,
    group: str,
    dead_letter: Callable[[str, bytes | None, str], Awaitable[None]],
    hasher: AbuseHasher,  # the channel side's: one key for every contact hash
    settings: ReporterSettings | None = None,
) -> ReporterParts:
    settings = settings or ReporterSettings.from_env()
    access_settings = settings.access
    attempts = MongoAttemptLog(db[ATTEMPTS])
    guard = GuessGuard(
        attempts, clock, access_settings.max_wrong_codes, access_settings.wrong_codes_window
    )
    # Access-code tries, counted per tracking id and contact (GuessGuard.claim) with the
    # same limit and window: a stranger's contact never fills the reporter's count.
    access_guard = GuessGuard(
        attempts,
        clock,
        access_settings.max_wrong_codes,
        access_settings.wrong_codes_window,
        prefix="wrong-access",
    )
    codes = MongoAccessCodes(db[CODES])
    tokens = MongoAccessTokens(db[TOKENS])
    sender = code_sender(
        access_settings.sender,
        db,
        webhook=access_settings.webhook,
        code_ttl=access_settings.code_ttl,
    )
    reports = MongoReportRepository(complaints, on_stored=on_stored)
    evidence_store = GridFsEvidenceStore(db, complaints, clock)
    handlers = ReporterHandlers(
        reports=reports,
        verify=verify_code,
        open_contact=contact_opener(cipher),
        clock=clock,
        new_event_id=new_event_id,
        max_reopens=settings.max_reopens,
        guard=guard,
        tokens=tokens,
    )
    access = AccessHandlers(
        reports=reports,
        open_contact=contact_opener(cipher),
        hasher=hasher,
        codes=codes,
        tokens=tokens,
        attempts=attempts,
        guard=access_guard,
        sender=sender,
        clock=clock,
        settings=access_settings,
    )
    evidence = EvidenceHandlers(handlers, evidence_store, clock, settings.evidence)
    projection = CaseActionProjection(complaints)

    async def handle(deliveries: list[Delivery[events_pb2.CaseAction]]) -> None:
        await projection.apply(deliveries)

    def register(server: grpc.aio.Server) -> list[str]:
        reporter_pb2_grpc.add_ReporterServiceServicer_to_server(
            ReporterServicer(handlers, evidence, access), server
        )
        return [reporter_pb2.DESCRIPTOR.services_by_name["ReporterService"].full_name]

    return ReporterParts(
        register=register,
        consumer=EventConsumer(
            kafka, CASE_ACTIONS, group, events_pb2.CaseAction, handle, dead_letter
        ),
        startup=[
            reports.ensure_indexes,
            evidence_store.ensure_indexes,
            attempts.ensure_indexes,
            codes.ensure_indexes,
            tokens.ensure_indexes,
            sender.ensure_indexes,
        ],
        workers=[OrphanSweep(evidence_store, clock, settings.evidence_sweep).run],
        guard=guard,
        settle_codes=access.settle,
    )

"""lapor.v1.EvidenceService: officers read the reporter's evidence (docs/officers-api.md,
"Evidence from the reporter"). Translates protobuf to use-case calls and back, and wires the
service into intake (called from bootstrap).

Every file leaves here under its neutral name (``officer_evidence_names.py``), built from the
evidence id and the sniffed type whatever name the catalog carries: the reporter's file name
is never in an officer's answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from lapor.v1 import evidence_pb2, evidence_pb2_grpc, reporter_pb2
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from services.common.auth import TokenVerifier
from services.common.clock import Clock
from services.common.grpc_errors import rpc
from services.common.mongo import Doc
from services.common.pbtime import timestamp
from services.common.scope import InstitutionTree
from services.intake.officer_evidence import EvidenceItem, OfficerEvidence
from services.intake.officer_evidence_names import officer_file_name
from services.intake.officer_evidence_store import (
    DOWNLOADS,
    MongoDownloadLog,
    MongoEvidenceCatalog,
)


def evidence_view(item: EvidenceItem) -> reporter_pb2.Evidence:
    """The file as officers see it: ``item.file_name`` is not used (see the module's doc)."""
    return reporter_pb2.Evidence(
        evidence_id=item.evidence_id,
        file_name=officer_file_name(item.evidence_id, item.content_type),
        content_type=item.content_type,
        size_bytes=item.size_bytes,
        sha256=item.sha256,
        uploaded_at=timestamp(item.uploaded_at),
    )


class EvidenceServicer(evidence_pb2_grpc.EvidenceServiceServicer):
    def __init__(self, verifier: TokenVerifier, evidence: OfficerEvidence) -> None:
        self._verifier = verifier
        self._evidence = evidence

    @rpc("ListEvidence")
    async def ListEvidence(
        self, request: evidence_pb2.ListEvidenceRequest, context: grpc.aio.ServicerContext
    ) -> evidence_pb2.ListEvidenceResponse:
        who = self._verifier.from_metadata(context.invocation_metadata())
        report = await self._evidence.list(who, request.tracking_id)
        return evidence_pb2.ListEvidenceResponse(
            tracking_id=report.tracking_id,
            evidence=[evidence_view(i) for i in report.items],
            evidence_bytes=report.total_bytes,
        )

    @rpc("DownloadEvidence")
    async def DownloadEvidence(  # type: ignore[override]
        self, request: evidence_pb2.DownloadEvidenceRequest, context: grpc.aio.ServicerContext
    ) -> None:
        # Written with context.write (not yielded) so @rpc maps errors, also those after
        # the first message, to their status codes.
        who = self._verifier.from_metadata(context.invocation_metadata())
        item, content = await self._evidence.download(who, request.tracking_id, request.evidence_id)
        await context.write(evidence_pb2.EvidenceDownloadChunk(evidence=evidence_view(item)))
        async for piece in content:
            await context.write(evidence_pb2.EvidenceDownloadChunk(data=piece))


@dataclass(frozen=True)
class OfficerEvidenceParts:
    register: Callable[[grpc.aio.Server], list[str]]
    startup: list[Callable[[], Awaitable[None]]]


def wire_officer_evidence(
    db: AsyncDatabase[Doc],
    complaints: AsyncCollection[Doc],
    verifier: TokenVerifier,
    tree: InstitutionTree,
    clock: Clock,
) -> OfficerEvidenceParts:
    downloads = MongoDownloadLog(db[DOWNLOADS])
    evidence = OfficerEvidence(MongoEvidenceCatalog(db, complaints), downloads, tree, clock)

    def register(server: grpc.aio.Server) -> list[str]:
        evidence_pb2_grpc.add_EvidenceServiceServicer_to_server(
            EvidenceServicer(verifier, evidence), server
        )
        return [evidence_pb2.DESCRIPTOR.services_by_name["EvidenceService"].full_name]

    return OfficerEvidenceParts(register, [downloads.ensure_indexes])

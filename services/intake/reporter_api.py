"""lapor.v1.ReporterService: translates protobuf to use-case calls and back, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from lapor.v1 import common_pb2, reporter_pb2, reporter_pb2_grpc

from services.common.errors import FailedPrecondition, ValidationError, Violation
from services.common.grpc_errors import rpc
from services.common.pbtime import timestamp
from services.common.status import CaseState, colour_of
from services.intake.access_codes import AccessHandlers
from services.intake.case_view import STATUS_OF_STATE
from services.intake.codec import (
    CLASSIFICATION_PB,
    CLASSIFICATIONS,
    COLOUR_PB,
    PRIVACY_PB,
    STATUS_PB,
)
from services.intake.domain import Classification, Privacy, Status
from services.intake.evidence import EvidenceHandlers, EvidenceHeader
from services.intake.listing import build_query
from services.intake.officer_evidence_names import officer_file_name
from services.intake.reporter import Doc, ReporterActionRecord, ReporterHandlers, credential
from services.intake.reporter_rules import visible_history


def _status(doc: Doc) -> int:
    state = doc.get("state")
    if state in set(CaseState) and doc.get("status") != Status.ESCALATED.value:
        return STATUS_PB[STATUS_OF_STATE[CaseState(state)]]
    return STATUS_PB.get(Status(doc.get("status", "received")), 0)


def _colour(doc: Doc) -> int:
    """From the case state when there is one: the stored colour can be overwritten by a
    ComplaintRouted event processed after a CaseAction (different topics, no order)."""
    state = doc.get("state")
    colour = doc.get("colour", "red")
    if state in set(CaseState):
        colour = colour_of(state, bool(doc.get("responded"))).value
    return COLOUR_PB.get(colour, common_pb2.STATUS_COLOUR_RED)


def _history(doc: Doc, *, public: bool) -> list[dict[str, Any]]:
    return [{**h, "at": timestamp(h["at"])} for h in visible_history(doc, public=public)]


def public_view(
    doc: Doc, *, with_content: bool = False, public: bool = True
) -> reporter_pb2.PublicView:
    privacy = Privacy(doc["privacy"])
    view = reporter_pb2.PublicView(
        tracking_id=doc["_id"],
        privacy=PRIVACY_PB[privacy],
        classification=CLASSIFICATION_PB[Classification(doc["classification"])],
        region_code=doc["region_code"],
        status=_status(doc),  # type: ignore[arg-type]
        state=doc.get("state") or "",
        status_colour=_colour(doc),  # type: ignore[arg-type]
        received_at=timestamp(doc["received_at"]),
        reopen_count=int(doc.get("reopen_count") or 0),
        escalated=bool(doc.get("escalated")),
    )
    if with_content or privacy is Privacy.PUBLIC:
        view.title = doc["title"]
        view.body = doc["body"]
        view.category = doc.get("category") or ""
    if doc.get("institution"):
        view.institution.id = doc["institution"]["id"]
        view.institution.name = doc["institution"]["name"]
    for h in _history(doc, public=public):
        view.history.add(**h)
    return view


def summary(doc: Doc) -> reporter_pb2.PublicReportSummary:
    item = reporter_pb2.PublicReportSummary(
        tracking_id=doc["_id"],
        title=doc["title"],
        body=doc["body"],
        region_code=doc["region_code"],
        classification=CLASSIFICATION_PB[Classification(doc["classification"])],
        category=doc.get("category") or doc.get("topic") or "",
        status=_status(doc),  # type: ignore[arg-type]
        state=doc.get("state") or "",
        status_colour=_colour(doc),  # type: ignore[arg-type]
        received_at=timestamp(doc["received_at"]),
    )
    if doc.get("institution"):
        item.institution.id = doc["institution"]["id"]
        item.institution.name = doc["institution"]["name"]
    return item


def accepted(r: ReporterActionRecord) -> reporter_pb2.ReporterActionAccepted:
    return reporter_pb2.ReporterActionAccepted(
        tracking_id=r.tracking_id, action=r.action, event_id=r.event_id, at=timestamp(r.at)
    )


async def _data(stream: AsyncIterator[reporter_pb2.EvidenceChunk]) -> AsyncIterator[bytes]:
    async for chunk in stream:
        if chunk.WhichOneof("part") != "data":
            raise ValidationError(
                [Violation("header", "only the first message carries the header")]
            )
        yield chunk.data


class ReporterServicer(reporter_pb2_grpc.ReporterServiceServicer):
    def __init__(
        self,
        handlers: ReporterHandlers,
        evidence: EvidenceHandlers,
        access: AccessHandlers | None = None,
    ) -> None:
        self._h = handlers
        self._evidence = evidence
        self._access = access

    @rpc("GetPublicView")
    async def GetPublicView(
        self, request: reporter_pb2.GetPublicViewRequest, context: grpc.aio.ServicerContext
    ) -> reporter_pb2.PublicView:
        return public_view(await self._h.public_view(request.tracking_id))

    @rpc("GetMyReport")
    async def GetMyReport(
        self, request: reporter_pb2.GetMyReportRequest, context: grpc.aio.ServicerContext
    ) -> reporter_pb2.MyReport:
        data = await self._h.my_report(
            request.tracking_id, credential(request.follow_up_code, request.access_token)
        )
        doc = data.report
        reply = reporter_pb2.MyReport(
            view=public_view(doc, with_content=True, public=False),
            contact=reporter_pb2.MaskedContact(
                name=data.contact.name,
                phone=data.contact.phone,
                email=data.contact.email,
                handle=data.contact.handle,
            ),
            allowed_actions=data.allowed,
            evidence_bytes=int(doc.get("evidence_bytes") or 0),
        )
        reply.view.ClearField("history")  # the full history is in `history`
        for h in _history(doc, public=False):
            reply.history.add(**h)
        for d in doc.get("deadlines", []):
            reply.deadlines.add(clock=d["clock"], due_at=timestamp(d["due_at"]), state=d["state"])
        for e in doc.get("evidence", []):
            reply.evidence.add(
                evidence_id=e["id"],
                file_name=e.get("name") or officer_file_name(e["id"], e["type"]),  # erased: neutral
                content_type=e["type"],
                size_bytes=e["size"],
                sha256=e["sha256"],
                uploaded_at=timestamp(e["at"]),
            )
        for a in doc.get("my_actions", []):
            reply.my_actions.add(
                action=a["action"], text=a["text"], rating=a["rating"], at=timestamp(a["at"])
            )
        return reply

    @rpc("AddInformation")
    async def AddInformation(
        self, request: reporter_pb2.AddInformationRequest, context: grpc.aio.ServicerContext
    ) -> reporter_pb2.ReporterActionAccepted:
        return accepted(
            await self._h.add_information(
                request.tracking_id,
                credential(request.follow_up_code, request.access_token),
                request.text,
            )
        )

    @rpc("ConfirmResolution")
    async def ConfirmResolution(
        self, request: reporter_pb2.ConfirmResolutionRequest, context: grpc.aio.ServicerContext
    ) -> reporter_pb2.ReporterActionAccepted:
        return accepted(
            await self._h.confirm_resolution(
                request.tracking_id,
                credential(request.follow_up_code, request.access_token),
                request.rating,
                request.comment,
            )
        )

    @rpc("RejectResolution")
    async def RejectResolution(
        self, request: reporter_pb2.RejectResolutionRequest, context: grpc.aio.ServicerContext
    ) -> reporter_pb2.ReporterActionAccepted:
        return accepted(
            await self._h.reject_resolution(
                request.tracking_id,
                credential(request.follow_up_code, request.access_token),
                request.reason,
            )
        )

    @rpc("ListPublicReports")
    async def ListPublicReports(
        self, request: reporter_pb2.ListPublicReportsRequest, context: grpc.aio.ServicerContext
    ) -> reporter_pb2.ListPublicReportsResponse:
        query = build_query(
            request.region_code,
            CLASSIFICATIONS.get(request.classification),
            request.category,
            request.state,
            request.page_size,
            request.page_token,
        )
        page = await self._h.list_public(query)
        return reporter_pb2.ListPublicReportsResponse(
            reports=[summary(d) for d in page.reports], next_page_token=page.next_page_token
        )

    @rpc("UploadEvidence")
    async def UploadEvidence(
        self,
        request_iterator: AsyncIterator[reporter_pb2.EvidenceChunk],
        context: grpc.aio.ServicerContext,
    ) -> reporter_pb2.EvidenceReceipt:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "header":
            raise ValidationError([Violation("header", "the first message must carry the header")])
        h = first.header
        code = credential(h.follow_up_code, h.access_token)
        header = EvidenceHeader(h.tracking_id, code, h.file_name, h.content_type)
        stored = await self._evidence.upload(header, _data(request_iterator))
        return reporter_pb2.EvidenceReceipt(
            evidence=reporter_pb2.Evidence(
                evidence_id=stored.evidence_id,
                file_name=stored.file_name,
                content_type=stored.content_type,
                size_bytes=stored.size_bytes,
                sha256=stored.sha256,
                uploaded_at=timestamp(stored.uploaded_at),
            ),
            report_evidence_bytes=stored.report_bytes,
        )

    @rpc("RequestAccessCode")
    async def RequestAccessCode(
        self, request: reporter_pb2.RequestAccessCodeRequest, context: grpc.aio.ServicerContext
    ) -> reporter_pb2.RequestAccessCodeResponse:
        done = await self._access_handlers().request_code(request.tracking_id, request.contact)
        return reporter_pb2.RequestAccessCodeResponse(
            message=done.message,
            code_valid_seconds=done.valid_seconds,
            code_length=done.code_length,
        )

    @rpc("VerifyAccessCode")
    async def VerifyAccessCode(
        self, request: reporter_pb2.VerifyAccessCodeRequest, context: grpc.aio.ServicerContext
    ) -> reporter_pb2.VerifyAccessCodeResponse:
        issued = await self._access_handlers().verify_code(
            request.tracking_id, request.contact, request.access_code
        )
        return reporter_pb2.VerifyAccessCodeResponse(
            access_token=issued.token, expires_at=timestamp(issued.expires_at)
        )

    def _access_handlers(self) -> AccessHandlers:
        if self._access is None:
            raise FailedPrecondition("access by verified contact is not configured on this server")
        return self._access

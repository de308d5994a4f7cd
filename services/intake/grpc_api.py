"""lapor.v1.IntakeService: translates protobuf to commands and back, nothing else."""

from __future__ import annotations

from typing import Any

import grpc
from lapor.v1 import common_pb2, intake_pb2, intake_pb2_grpc

from services.common.grpc_errors import rpc
from services.common.pbtime import timestamp
from services.intake.channel_auth import ChannelClients
from services.intake.codec import (
    CHANNEL_PB,
    CHANNELS,
    CLASSIFICATION_PB,
    CLASSIFICATIONS,
    COLOUR_PB,
    PRIVACIES,
    PRIVACY_PB,
    STATUS_PB,
)
from services.intake.domain import (
    Channel,
    Classification,
    Contact,
    InstitutionOrigin,
    Privacy,
    SmsOrigin,
    SocialOrigin,
    Status,
    SubmitComplaint,
)
from services.intake.handlers import IntakeHandlers
from services.intake.metrics import SUBMITTED
from services.intake.reporter_rules import visible_history


def to_command(req: intake_pb2.SubmitComplaintRequest) -> SubmitComplaint:
    return SubmitComplaint(
        channel=CHANNELS.get(req.channel),
        privacy=PRIVACIES.get(req.privacy),
        classification=CLASSIFICATIONS.get(req.classification),
        title=req.title,
        body=req.body,
        region_code=req.region_code,
        reporter=Contact(req.reporter.name, req.reporter.phone, req.reporter.email),
        idempotency_key=req.idempotency_key,
        sms=SmsOrigin(req.sms.sender, req.sms.text) if req.HasField("sms") else None,
        social=(
            SocialOrigin(
                req.social_media.platform, req.social_media.handle, req.social_media.post_id
            )
            if req.HasField("social_media")
            else None
        ),
        institution=(
            InstitutionOrigin(
                req.institution_reference.source_system, req.institution_reference.reference
            )
            if req.HasField("institution_reference")
            else None
        ),
        category=req.category,
        named_institution_id=req.named_institution_id,
    )


def api_key(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == API_KEY_HEADER:
            return value if isinstance(value, str) else value.decode(errors="replace")
    return None


API_KEY_HEADER = "x-api-key"


def to_view(doc: dict[str, Any]) -> intake_pb2.Complaint:
    privacy = Privacy(doc["privacy"])
    view = intake_pb2.Complaint(
        tracking_id=doc["_id"],
        channel=CHANNEL_PB[Channel(doc["channel"])],
        privacy=PRIVACY_PB[privacy],
        classification=CLASSIFICATION_PB[Classification(doc["classification"])],
        region_code=doc["region_code"],
        status=STATUS_PB[Status(doc["status"])],
        status_colour=COLOUR_PB.get(doc.get("colour", "red"), common_pb2.STATUS_COLOUR_RED),
        received_at=timestamp(doc["received_at"]),
        overdue=bool(doc.get("overdue")),
        escalated=bool(doc.get("escalated")),
    )
    if privacy is Privacy.PUBLIC:
        view.title = doc["title"]
        view.body = doc["body"]
    if doc.get("institution"):
        view.institution.id = doc["institution"]["id"]
        view.institution.name = doc["institution"]["name"]
    for d in doc.get("deadlines", []):
        view.deadlines.add(clock=d["clock"], due_at=timestamp(d["due_at"]), state=d["state"])
    for h in visible_history(doc, public=True):  # as ReporterService.GetPublicView shows it
        view.history.add(
            at=timestamp(h["at"]), action=h["action"], actor=h["actor"], detail=h["detail"]
        )
    for n in doc.get("notifications", []):
        view.notifications.add(template=n["template"], channel=n["channel"], at=timestamp(n["at"]))
    return view


class IntakeServicer(intake_pb2_grpc.IntakeServiceServicer):
    def __init__(self, handlers: IntakeHandlers, clients: ChannelClients) -> None:
        self._handlers = handlers
        self._clients = clients

    @rpc("SubmitComplaint")
    async def SubmitComplaint(
        self, request: intake_pb2.SubmitComplaintRequest, context: grpc.aio.ServicerContext
    ) -> intake_pb2.SubmitComplaintResponse:
        client = self._clients.authenticate(api_key(context))
        cmd = to_command(request)
        submitted = await self._handlers.submit_from(cmd, client)
        stored = submitted.stored
        SUBMITTED.labels(
            channel=str(cmd.channel),
            privacy=str(cmd.privacy),
            duplicate=str(stored.duplicate).lower(),
        ).inc()
        return intake_pb2.SubmitComplaintResponse(
            tracking_id=stored.tracking_id,
            received_at=timestamp(stored.received_at),
            duplicate=stored.duplicate,
            follow_up_code=submitted.follow_up_code,
            acknowledgement=submitted.acknowledgement,
        )

    @rpc("GetComplaint")
    async def GetComplaint(
        self, request: intake_pb2.GetComplaintRequest, context: grpc.aio.ServicerContext
    ) -> intake_pb2.Complaint:
        return to_view(await self._handlers.get(request.tracking_id))

    @rpc("RaisePrivacy")
    async def RaisePrivacy(
        self, request: intake_pb2.RaisePrivacyRequest, context: grpc.aio.ServicerContext
    ) -> intake_pb2.RaisePrivacyResponse:
        wanted = PRIVACIES.get(request.privacy)
        changed = await self._handlers.raise_privacy(
            request.tracking_id, request.follow_up_code, wanted
        )
        return intake_pb2.RaisePrivacyResponse(
            tracking_id=request.tracking_id, privacy=request.privacy, changed=changed
        )

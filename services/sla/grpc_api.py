"""lapor.v1.SlaService: translates protobuf to use cases and back, nothing else."""

from __future__ import annotations

import grpc
from lapor.v1 import common_pb2, sla_pb2, sla_pb2_grpc

from services.common.auth import TokenVerifier
from services.common.grpc_errors import rpc
from services.common.mongo import Doc
from services.sla.cards import ReportCards
from services.sla.codec import deadlines_pb
from services.sla.domain.cards import ReportCard
from services.sla.domain.clocks import CaseClocks
from services.sla.domain.status import colour
from services.sla.officers import ExtendDeadline, Officers

COLOUR_PB = {
    "red": common_pb2.STATUS_COLOUR_RED,
    "yellow": common_pb2.STATUS_COLOUR_YELLOW,
    "green": common_pb2.STATUS_COLOUR_GREEN,
}


def status_pb(case: CaseClocks, doc: Doc) -> sla_pb2.ReportStatus:
    return sla_pb2.ReportStatus(
        tracking_id=case.tracking_id,
        institution=common_pb2.Institution(
            id=case.institution_id, name=doc.get("institution_name", "")
        ),
        case_state=case.case_state,
        colour=COLOUR_PB[colour(case)],
        overdue=case.overdue,
        escalated=case.escalated,
        deadlines=deadlines_pb(case),
        handling_class=case.handling_class,
        paused=case.info_pending,
    )


def card_pb(card: ReportCard) -> sla_pb2.ReportCard:
    return sla_pb2.ReportCard(
        institution_id=card.institution_id,
        period=card.period,
        received=card.received,
        verified_within_deadline=card.verified_within_deadline,
        first_responses_within_deadline=card.first_responses_within_deadline,
        resolved_within_deadline=card.resolved_within_deadline,
        overdue_now=card.overdue_now,
        escalated=card.escalated,
        average_satisfaction=card.average_satisfaction,
        ratings=card.ratings,
        red_mark=card.red_mark,
        first_responses_overdue=card.first_responses_overdue,
    )


class SlaService(sla_pb2_grpc.SlaServiceServicer):
    def __init__(self, officers: Officers, cards: ReportCards, verifier: TokenVerifier) -> None:
        self._officers = officers
        self._cards = cards
        self._verifier = verifier

    @rpc("ExtendDeadline")
    async def ExtendDeadline(  # noqa: N802 - gRPC method name
        self, request: sla_pb2.ExtendDeadlineRequest, context: grpc.aio.ServicerContext
    ) -> sla_pb2.ReportStatus:
        who = self._verifier.from_metadata(context.invocation_metadata())
        cmd = ExtendDeadline(
            request.tracking_id,
            request.clock,
            request.extension.ToTimedelta(),
            request.reason,
        )
        case, doc = await self._officers.extend(who, cmd)
        return status_pb(case, doc)

    @rpc("GetReportStatus")
    async def GetReportStatus(  # noqa: N802
        self, request: sla_pb2.GetReportStatusRequest, context: grpc.aio.ServicerContext
    ) -> sla_pb2.ReportStatus:
        who = self._verifier.from_metadata(context.invocation_metadata())
        case, doc = await self._officers.status(who, request.tracking_id)
        return status_pb(case, doc)

    @rpc("GetReportCard")
    async def GetReportCard(  # noqa: N802
        self, request: sla_pb2.GetReportCardRequest, context: grpc.aio.ServicerContext
    ) -> sla_pb2.ReportCard:
        self._verifier.from_metadata(context.invocation_metadata())
        return card_pb(await self._cards.card(request.institution_id, request.period))

    @rpc("ListReportCards")
    async def ListReportCards(  # noqa: N802
        self, request: sla_pb2.ListReportCardsRequest, context: grpc.aio.ServicerContext
    ) -> sla_pb2.ListReportCardsResponse:
        self._verifier.from_metadata(context.invocation_metadata())
        cards = await self._cards.all_cards(request.period)
        return sla_pb2.ListReportCardsResponse(cards=[card_pb(c) for c in cards])

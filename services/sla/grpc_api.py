"""lapor.v1.SlaService: translates protobuf to use cases and back, nothing else."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import grpc
from google.protobuf import duration_pb2
from lapor.v1 import common_pb2, sla_pb2, sla_pb2_grpc

from services.common.auth import TokenVerifier
from services.common.errors import ValidationError, Violation
from services.common.grpc_errors import rpc
from services.common.mongo import Doc
from services.sla.cards import ReportCards
from services.sla.codec import deadlines_pb
from services.sla.domain.cards import ReportCard
from services.sla.domain.clocks import CaseClocks
from services.sla.domain.policy import HANDLING_CLASSES, Policy
from services.sla.domain.status import colour
from services.sla.officers import ExtendDeadline, Officers, validate

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


#: google.protobuf.Duration's valid range (duration.proto): about +-10,000 years, and nanos
#: of the same sign as the seconds.
DURATION_SECONDS_MAX = 315_576_000_000
DURATION_NANOS_MAX = 999_999_999
_NANOS_PER_SECOND = 1_000_000_000
_NANOS_PER_MICROSECOND = 1_000
#: The order in which ExtendDeadline's rules name the fields (as the use case does).
_EXTEND_FIELDS = {"tracking_id": 0, "clock": 1, "extension": 2, "reason": 3}


def longest_extension(policy: Policy) -> timedelta:
    """The longest extension any report may get: the policy's cap (a fraction of the
    resolution deadline's original duration) on the longest resolution deadline."""
    longest = max(policy.resolution_clock(c).duration for c in HANDLING_CLASSES)
    return longest * policy.extension_max_fraction


def extension_of(
    duration: duration_pb2.Duration, longest: timedelta
) -> tuple[timedelta, list[Violation]]:
    """The requested extension as a timedelta, or the rules it breaks (then a zero
    timedelta). Checked on the message's integers before converting: a Duration outside
    its range does not fit a timedelta (OverflowError), and one with nanos of the other
    sign would be silently rounded."""
    seconds, nanos = duration.seconds, duration.nanos
    if not -DURATION_SECONDS_MAX <= seconds <= DURATION_SECONDS_MAX:
        rule = f"seconds must be within +-{DURATION_SECONDS_MAX} (google.protobuf.Duration)"
    elif not -DURATION_NANOS_MAX <= nanos <= DURATION_NANOS_MAX:
        rule = f"nanos must be within +-{DURATION_NANOS_MAX} (google.protobuf.Duration)"
    elif (seconds > 0 and nanos < 0) or (seconds < 0 and nanos > 0):
        rule = "seconds and nanos must have the same sign (google.protobuf.Duration)"
    else:
        total = seconds * _NANOS_PER_SECOND + nanos
        cap = longest // timedelta(microseconds=1) * _NANOS_PER_MICROSECOND
        if total <= 0:
            rule = "must be a positive duration"
        elif total < _NANOS_PER_MICROSECOND:
            rule = "must be at least 1 microsecond"
        elif total > cap:
            rule = (
                f"must be at most {longest} (the policy's cap on the longest resolution deadline)"
            )
        else:
            return duration.ToTimedelta(), []
    return timedelta(0), [Violation("extension", rule)]


class SlaService(sla_pb2_grpc.SlaServiceServicer):
    def __init__(self, officers: Officers, cards: ReportCards, verifier: TokenVerifier) -> None:
        self._officers = officers
        self._cards = cards
        self._verifier = verifier
        self._longest_extension = longest_extension(officers.rules.policy)

    @rpc("ExtendDeadline")
    async def ExtendDeadline(  # noqa: N802 - gRPC method name
        self, request: sla_pb2.ExtendDeadlineRequest, context: grpc.aio.ServicerContext
    ) -> sla_pb2.ReportStatus:
        who = self._verifier.from_metadata(context.invocation_metadata())
        extension, problems = extension_of(request.extension, self._longest_extension)
        cmd = ExtendDeadline(request.tracking_id, request.clock, extension, request.reason)
        if problems:  # name the other fields' broken rules too, as the use case would
            try:
                validate(replace(cmd, extension=self._longest_extension))
            except ValidationError as exc:
                problems += exc.violations
            problems.sort(key=lambda v: _EXTEND_FIELDS.get(v.field, len(_EXTEND_FIELDS)))
            raise ValidationError(problems)
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

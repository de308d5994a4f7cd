"""What a report's clocks say about it: colour, overdue, and its report-card facts. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from services.common.status import FINAL_STATES, colour_of
from services.sla.domain.clocks import (
    BREACHED,
    FIRST_RESPONSE,
    MET,
    RESOLUTION,
    VERIFICATION,
    CaseClocks,
)


@dataclass(frozen=True)
class CardFacts:
    """One report's contribution to its institution's report card."""

    top_institution: str
    period: str  # "YYYY-MM" of receipt, in the report's time zone
    open: bool
    colour: str
    handling_class: str
    verified_on_time: bool | None  # None: not (yet) decided
    first_response_on_time: bool | None
    resolved_on_time: bool | None
    overdue: bool
    first_response_overdue: bool
    escalated: bool


def colour(case: CaseClocks) -> str:
    return colour_of(case.case_state, case.responded).value


def top_institution(institution_id: str) -> str:
    """The top-level institution of a holder: ``pemda-51.08/disdukcapil`` -> ``pemda-51.08``."""
    return institution_id.split("/", 1)[0]


def _on_time(case: CaseClocks, name: str) -> bool | None:
    clock = case.clock(name)
    if clock is None:
        return None
    if clock.state == MET:
        return True
    if clock.state == BREACHED:
        return False
    return None


def card_facts(case: CaseClocks, received_at: datetime) -> CardFacts:
    first = case.clock(FIRST_RESPONSE)
    return CardFacts(
        top_institution=top_institution(case.institution_id),
        period=received_at.astimezone(ZoneInfo(case.timezone)).strftime("%Y-%m"),
        open=case.case_state not in FINAL_STATES,
        colour=colour(case),
        handling_class=case.handling_class,
        verified_on_time=_on_time(case, VERIFICATION),
        first_response_on_time=_on_time(case, FIRST_RESPONSE),
        resolved_on_time=_on_time(case, RESOLUTION),
        overdue=case.overdue,
        first_response_overdue=first is not None and first.overdue,
        escalated=case.escalated,
    )

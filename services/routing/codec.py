"""Events routing publishes, built from stored state for the outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lapor.v1 import common_pb2, events_pb2

from services.common.ids import new_event_id
from services.common.outbox import OutboxMessage
from services.common.topics import CASE_ACTIONS, COMPLAINTS_ROUTED
from services.routing.domain.case import INSTITUTION, VERIFICATION_QUEUE, Outcome
from services.routing.domain.directory import Directory
from services.routing.domain.rules import Decision

QUEUE_NAME = "Antrean verifikasi nasional"


def institution_of(institution_id: str, directory: Directory) -> common_pb2.Institution:
    if institution_id == VERIFICATION_QUEUE:
        return common_pb2.Institution(id=VERIFICATION_QUEUE, name=QUEUE_NAME)
    known = directory.get(institution_id)
    return common_pb2.Institution(id=institution_id, name=known.name if known else "")


def holder_fields(institution_id: str, directory: Directory) -> dict[str, Any]:
    """A case's holder as a CaseAction carries it: the institution and the ids above it."""
    return {
        "institution": institution_of(institution_id, directory),
        "holder_ancestors": directory.ancestors(institution_id),
    }


def routed_event(
    received: events_pb2.ComplaintReceived,
    decision: Decision,
    timezone: str,
    now: datetime,
    directory: Directory,
) -> OutboxMessage:
    institution = decision.institution
    event = events_pb2.ComplaintRouted(
        meta=common_pb2.EventMeta(
            event_id=new_event_id(), tracking_id=received.meta.tracking_id, producer="routing"
        ),
        institution=common_pb2.Institution(
            id=decision.institution_id,
            name=institution.name if institution else QUEUE_NAME,
        ),
        rule=decision.rule,
        topic=decision.topic or "",
        confidence=decision.confidence,
        classification=received.classification,
        region_code=received.region_code,
        timezone=timezone,
        holder_ancestors=directory.ancestors(decision.institution_id),
        received_at=received.meta.occurred_at,
    )
    event.meta.occurred_at.FromDatetime(now)
    return OutboxMessage(
        event.meta.event_id, COMPLAINTS_ROUTED, received.meta.tracking_id, event.SerializeToString()
    )


def case_action_event(
    tracking_id: str, outcome: Outcome, directory: Directory, now: datetime
) -> OutboxMessage:
    command, after = outcome.command, outcome.after
    event = events_pb2.CaseAction(
        meta=common_pb2.EventMeta(
            event_id=new_event_id(), tracking_id=tracking_id, producer="routing"
        ),
        action=command.action,
        actor_role=command.role.value,
        actor_id=command.actor_id,
        from_state=outcome.before.state.value,
        to_state=after.state.value,
        **holder_fields(after.institution_id, directory),
        handling_class=after.handling_class,
        public_note=command.text if command.role in INSTITUTION else "",
        reason=command.reason,
        reopen_count=after.reopen_count,
        rating=command.rating,
    )
    event.meta.occurred_at.FromDatetime(now)
    return OutboxMessage(event.meta.event_id, CASE_ACTIONS, tracking_id, event.SerializeToString())

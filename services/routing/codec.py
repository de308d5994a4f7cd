"""Events routing publishes, built from stored state for the outbox.

What routing concludes from an event it consumed (a ComplaintReceived routed, a reporter's
action or an auto-close applied to the case) gets an event id derived from that event's id
and from what routing concluded, so concluding the same again publishes the same id: after
routing's database is restored and its consumer groups rewound (deploy/README.md), the
events it derives again are dropped by every consumer (notify, sla, intake's tracking view),
while a different conclusion (rules or directory changed meanwhile) is a new event they
apply. An officer's action through the API is not replayed and keeps a random id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lapor.v1 import common_pb2, events_pb2

from services.common.ids import derived_event_id, new_event_id
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


def routed_event_id(received_event_id: str, institution_id: str) -> str:
    """The same complaint routed to the same institution (or the verification queue) is
    the same event; routed elsewhere, a different one."""
    return f"{received_event_id}:routed:{institution_id}"


def case_action_event_id(cause_event_id: str, outcome: Outcome) -> str:
    """The id of the CaseAction that applying the event `cause_event_id` produced: derived
    from that event and from what the CaseAction says about the case (its transition, holder,
    class, texts, reopen count and rating; not the directory's names and ancestors, nor the
    time), so applying it again with the same result repeats the id."""
    command, before, after = outcome.command, outcome.before, outcome.after
    return derived_event_id(
        cause_event_id,
        command.action,
        (
            command.role.value,
            command.actor_id,
            before.state.value,
            after.state.value,
            after.institution_id,
            after.handling_class,
            _public_note(outcome),
            command.reason,
            str(after.reopen_count),
            str(command.rating),
        ),
    )


def _public_note(outcome: Outcome) -> str:
    command = outcome.command
    return command.text if command.role in INSTITUTION else ""


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
            event_id=routed_event_id(received.meta.event_id, decision.institution_id),
            tracking_id=received.meta.tracking_id,
            producer="routing",
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
    tracking_id: str,
    outcome: Outcome,
    directory: Directory,
    now: datetime,
    cause_event_id: str = "",
) -> OutboxMessage:
    """The CaseAction of `outcome`; `cause_event_id`: the consumed event it applied (its id
    is then derived, see `case_action_event_id`), empty for an officer's action (random)."""
    command, after = outcome.command, outcome.after
    event_id = case_action_event_id(cause_event_id, outcome) if cause_event_id else new_event_id()
    event = events_pb2.CaseAction(
        meta=common_pb2.EventMeta(event_id=event_id, tracking_id=tracking_id, producer="routing"),
        action=command.action,
        actor_role=command.role.value,
        actor_id=command.actor_id,
        from_state=outcome.before.state.value,
        to_state=after.state.value,
        **holder_fields(after.institution_id, directory),
        handling_class=after.handling_class,
        public_note=_public_note(outcome),
        reason=command.reason,
        reopen_count=after.reopen_count,
        rating=command.rating,
    )
    event.meta.occurred_at.FromDatetime(now)
    return OutboxMessage(event.meta.event_id, CASE_ACTIONS, tracking_id, event.SerializeToString())

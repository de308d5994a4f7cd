"""Translation between SLA's domain, its MongoDB documents and lapor.v1 messages."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta

from lapor.v1 import common_pb2, events_pb2

from services.common.mongo import Doc
from services.common.outbox import OutboxMessage
from services.common.pbtime import timestamp
from services.common.topics import ESCALATIONS, SLA_EVENTS
from services.sla.domain.clocks import CaseClocks, Clock, Transition
from services.sla.domain.status import card_facts

OMBUDSMAN_REASON = "unresolved 60 days after receipt (Ombudsman RI takes over)"
#: The report's title and body (ComplaintReceived), kept only for the Ombudsman's event:
#: removed when the report is escalated or closed or archived (services/sla/handlers.py).
CONTENT = "content"


def clock_doc(c: Clock) -> Doc:
    return {
        "name": c.name,
        "started_at": c.started_at,
        "due_at": c.due_at,
        "warn_at": c.warn_at,
        "state": c.state,
        "policy_key": c.policy_key,
        "pauses": [[s, e] for s, e in c.pauses],
        "extensions": c.extensions,
        "extended_by": c.extended_by.total_seconds(),
        "cycle": c.cycle,
        "rungs": c.rungs,
        "next_rung_at": c.next_rung_at,
        "stopped_at": c.stopped_at,
        **({"grace": c.grace.total_seconds()} if c.grace else {}),
    }


def clock_from_doc(c: Doc) -> Clock:
    return Clock(
        c["name"],
        c["started_at"],
        c["due_at"],
        c.get("warn_at"),
        c["state"],
        c.get("policy_key", ""),
        tuple((s, e) for s, e in c.get("pauses", [])),
        c.get("extensions", 0),
        timedelta(seconds=c.get("extended_by", 0)),
        c.get("cycle", 0),
        c.get("rungs", 0),
        c.get("next_rung_at"),
        c.get("stopped_at"),
        timedelta(seconds=c.get("grace", 0)),
    )


def case_from_doc(doc: Doc) -> CaseClocks:
    return CaseClocks(
        tracking_id=doc["_id"],
        institution_id=doc["institution_id"],
        timezone=doc["timezone"],
        clocks=tuple(clock_from_doc(c) for c in doc["clocks"]),
        case_state=doc.get("case_state", "assigned"),
        responded=doc.get("responded", False),
        handling_class=doc.get("handling_class", "complaint"),
        info_pending=doc.get("info_pending", False),
        escalated=doc.get("escalated", False),
    )


def case_fields(case: CaseClocks, received_at: datetime) -> Doc:
    """Every field of the document that follows from the clocks (for `$set`)."""
    return {
        "institution_id": case.institution_id,
        "clocks": [clock_doc(c) for c in case.clocks],
        "next_due_at": case.next_due_at,
        "case_state": case.case_state,
        "responded": case.responded,
        "handling_class": case.handling_class,
        "info_pending": case.info_pending,
        "escalated": case.escalated,
        "card": asdict(card_facts(case, received_at)),
    }


def deadlines_pb(case: CaseClocks) -> list[common_pb2.Deadline]:
    return [
        common_pb2.Deadline(clock=c.label, due_at=timestamp(c.due_at), state=c.state)
        for c in case.clocks
    ]


def meta(event_id: str, tracking_id: str, now: datetime) -> common_pb2.EventMeta:
    return common_pb2.EventMeta(
        event_id=event_id, tracking_id=tracking_id, occurred_at=timestamp(now), producer="sla"
    )


def deadlines_set_event(
    case: CaseClocks, cause_event_id: str, now: datetime, version: int
) -> OutboxMessage:
    """`version`: the report document's ``version`` after the write that stores `case`
    (SlaEvent.clocks_version: consumers drop an event older than one they applied)."""
    event_id = f"{case.tracking_id}:deadlines:{cause_event_id}"
    event = events_pb2.SlaEvent(
        meta=meta(event_id, case.tracking_id, now),
        institution_id=case.institution_id,
        clocks_version=version,
        deadlines_set=events_pb2.DeadlinesSet(deadlines=deadlines_pb(case)),
    )
    return OutboxMessage(event_id, SLA_EVENTS, case.tracking_id, event.SerializeToString())


def timeline_entry(at: datetime, action: str, actor: str, detail: str) -> Doc:
    return {"at": at, "action": action, "actor": actor, "detail": detail}


def transition_entry(t: Transition) -> Doc:
    detail = f"{t.clock} due {t.due_at.isoformat()}"
    if t.escalation_level:
        detail += f" -> {t.escalation_level}"
    return timeline_entry(t.due_at, f"deadline_{t.kind}", "sla", detail)


def escalation_event(case: CaseClocks, event_id: str, doc: Doc, now: datetime) -> OutboxMessage:
    holder_id, holder_name = case.institution_id, doc.get("institution_name", "")
    top_id = holder_id.split("/", 1)[0]
    is_unit = top_id != holder_id
    content = doc.get(CONTENT, {})
    escalation = events_pb2.OmbudsmanEscalation(
        meta=meta(event_id, case.tracking_id, now),
        institution=common_pb2.Institution(
            id=top_id, name=str(doc.get("top_institution_name", "" if is_unit else holder_name))
        ),
        unit=common_pb2.Institution(id=holder_id, name=holder_name) if is_unit else None,
        region_code=doc.get("region_code", ""),
        classification=common_pb2.Classification.Value(
            doc.get("classification", "CLASSIFICATION_UNSPECIFIED")
        ),
        topic=doc.get("topic", ""),
        title=content.get("title", ""),
        body=content.get("body", ""),
        deadlines=deadlines_pb(case),
        reason=OMBUDSMAN_REASON,
        received_at=timestamp(doc["received_at"]),
    )
    entries = list(doc.get("timeline", []))
    entries += [
        timeline_entry(c.due_at, "deadline", "sla", f"{c.label} due ({c.state})")
        for c in case.clocks
    ]
    for entry in sorted(entries, key=lambda e: e["at"]):
        escalation.timeline.add(
            at=timestamp(entry["at"]),
            action=entry["action"],
            actor=entry["actor"],
            detail=entry["detail"],
        )
    return OutboxMessage(event_id, ESCALATIONS, case.tracking_id, escalation.SerializeToString())


def transition_event(
    case: CaseClocks, t: Transition, doc: Doc, now: datetime, version: int
) -> OutboxMessage:
    """The event of one transition; `version` as in `deadlines_set_event` (the transitions
    of one sweep write share it)."""
    event_id = t.event_id(case.tracking_id)
    if t.kind == "escalation":
        return escalation_event(case, event_id, doc, now)
    event = events_pb2.SlaEvent(
        meta=meta(event_id, case.tracking_id, now),
        institution_id=case.institution_id,
        clocks_version=version,
    )
    if t.kind == "warning":
        event.warning.clock = t.clock
        event.warning.due_at.CopyFrom(timestamp(t.due_at))
    elif t.kind == "auto_close_due":
        event.auto_close_due.due_at.CopyFrom(timestamp(t.due_at))
    else:
        event.breached.clock = t.clock
        event.breached.due_at.CopyFrom(timestamp(t.due_at))
        event.breached.escalation_level = t.escalation_level
    return OutboxMessage(event_id, SLA_EVENTS, case.tracking_id, event.SerializeToString())

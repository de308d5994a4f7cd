"""Translation between SLA's domain, its MongoDB documents and lapor.v1 messages."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from lapor.v1 import common_pb2, events_pb2

from services.common.mongo import Doc
from services.common.outbox import OutboxMessage
from services.common.topics import ESCALATIONS, SLA_EVENTS
from services.sla.domain.clocks import CaseClocks, Clock, Transition


def ts(when: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(when)
    return out


def clock_doc(c: Clock) -> Doc:
    return {
        "name": c.name,
        "started_at": c.started_at,
        "due_at": c.due_at,
        "warn_at": c.warn_at,
        "state": c.state,
    }


def case_from_doc(doc: Doc) -> CaseClocks:
    return CaseClocks(
        tracking_id=doc["_id"],
        institution_id=doc["institution_id"],
        timezone=doc["timezone"],
        clocks=tuple(
            Clock(c["name"], c["started_at"], c["due_at"], c.get("warn_at"), c["state"])
            for c in doc["clocks"]
        ),
    )


def deadlines_pb(case: CaseClocks) -> list[common_pb2.Deadline]:
    return [
        common_pb2.Deadline(clock=c.name, due_at=ts(c.due_at), state=c.state) for c in case.clocks
    ]


def meta(event_id: str, tracking_id: str, now: datetime) -> common_pb2.EventMeta:
    return common_pb2.EventMeta(
        event_id=event_id, tracking_id=tracking_id, occurred_at=ts(now), producer="sla"
    )


def deadlines_set_event(case: CaseClocks, cause_event_id: str, now: datetime) -> OutboxMessage:
    event_id = f"{case.tracking_id}:deadlines:{cause_event_id}"
    event = events_pb2.SlaEvent(
        meta=meta(event_id, case.tracking_id, now),
        institution_id=case.institution_id,
        deadlines_set=events_pb2.DeadlinesSet(deadlines=deadlines_pb(case)),
    )
    return OutboxMessage(event_id, SLA_EVENTS, case.tracking_id, event.SerializeToString())


def transition_event(case: CaseClocks, t: Transition, doc: Doc, now: datetime) -> OutboxMessage:
    event_id = t.event_id(case.tracking_id)
    if t.kind == "escalation":
        escalation = events_pb2.OmbudsmanEscalation(
            meta=meta(event_id, case.tracking_id, now),
            institution=common_pb2.Institution(
                id=case.institution_id, name=doc.get("institution_name", "")
            ),
            region_code=doc.get("region_code", ""),
            classification=common_pb2.Classification.Value(
                doc.get("classification", "CLASSIFICATION_UNSPECIFIED")
            ),
            topic=doc.get("topic", ""),
            deadlines=deadlines_pb(case),
            reason="unresolved 60 days after receipt (Ombudsman RI takes over)",
            received_at=ts(doc["received_at"]),
        )
        for entry in doc.get("timeline", []):
            escalation.timeline.add(
                at=ts(entry["at"]),
                action=entry["action"],
                actor=entry["actor"],
                detail=entry["detail"],
            )
        return OutboxMessage(
            event_id, ESCALATIONS, case.tracking_id, escalation.SerializeToString()
        )
    event = events_pb2.SlaEvent(
        meta=meta(event_id, case.tracking_id, now), institution_id=case.institution_id
    )
    if t.kind == "warning":
        event.warning.clock = t.clock
        event.warning.due_at.CopyFrom(ts(t.due_at))
    else:
        event.breached.clock = t.clock
        event.breached.due_at.CopyFrom(ts(t.due_at))
        event.breached.escalation_level = t.escalation_level
    return OutboxMessage(event_id, SLA_EVENTS, case.tracking_id, event.SerializeToString())

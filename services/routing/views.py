"""Case documents as the officers' API shows them. Routing never holds a reporter's identity,
so no view can show one."""

from __future__ import annotations

from datetime import datetime

from lapor.v1 import common_pb2, officer_pb2

from services.common.mongo import Doc
from services.routing.case_store import status_of
from services.routing.codec import institution_of
from services.routing.domain.access import Actor
from services.routing.domain.case import allowed_actions
from services.routing.domain.directory import Directory, Institution

COLOURS = {
    "red": common_pb2.STATUS_COLOUR_RED,
    "yellow": common_pb2.STATUS_COLOUR_YELLOW,
    "green": common_pb2.STATUS_COLOUR_GREEN,
}
COLOUR_NAMES: dict[int, str] = {int(v): k for k, v in COLOURS.items()}


def _stamp(target: object, when: datetime | None) -> None:
    if when is not None:
        target.FromDatetime(when)  # type: ignore[attr-defined]


def report_view(
    doc: Doc, actor: Actor, directory: Directory, similar: list[str]
) -> officer_pb2.Report:
    """`similar`: the linked reports `actor` may see (`Api.similar`)."""
    status = status_of(doc)
    report = officer_pb2.Report(
        tracking_id=doc["_id"],
        state=status.state.value,
        colour=COLOURS[status.colour.value],
        overdue=bool(doc.get("overdue")),
        institution=institution_of(status.institution_id, directory),
        title=doc.get("title", ""),
        body=doc.get("body", ""),
        region_code=doc.get("region_code", ""),
        classification=common_pb2.Classification.Value(doc["classification"]),
        privacy=common_pb2.Privacy.Value(doc["privacy"]),
        topic=doc.get("topic") or "",
        handling_class=status.handling_class,
        responded=status.responded,
        reopen_count=status.reopen_count,
        version=int(doc.get("version", 0)),
        similar_reports=similar,
        allowed_actions=allowed_actions(status, actor.role),
    )
    _stamp(report.received_at, doc.get("received_at"))
    _stamp(report.next_due_at, doc.get("next_due_at"))
    for d in doc.get("deadlines", []):
        deadline = report.deadlines.add(clock=d["clock"], state=d["state"])
        _stamp(deadline.due_at, d["due_at"])
    for h in doc.get("history", []):
        entry = report.history.add(
            action=h.get("action", ""),
            actor_role=h.get("actor", ""),
            actor_id=h.get("actor_id", ""),
            from_state=h.get("from_state", ""),
            to_state=h.get("to_state", ""),
            institution_id=h.get("institution_id", ""),
            text=h.get("text", ""),
            reason=h.get("reason", ""),
            evidence=h.get("evidence", []),
        )
        _stamp(entry.at, h.get("at"))
    decision = doc.get("decision") or {}
    if actor.is_national_admin:
        report.routing.CopyFrom(
            officer_pb2.RoutingExplanation(
                rule=decision.get("rule", ""),
                rules_version=decision.get("rules_version", ""),
                topic=decision.get("topic") or "",
                confidence=decision.get("confidence", 0.0),
                scores=[
                    officer_pb2.TopicScore(topic=t, probability=p)
                    for t, p in decision.get("scores", [])
                ],
                matched_terms=decision.get("matched_terms", []),
                hint=decision.get("hint", ""),
            )
        )
    return report


def institution_view(inst: Institution) -> officer_pb2.InstitutionRecord:
    return officer_pb2.InstitutionRecord(
        id=inst.id,
        name=inst.name,
        kind=inst.kind,
        parent_id=inst.parent_id or "",
        region_code=inst.region_code or "",
        topics=list(inst.topics),
    )

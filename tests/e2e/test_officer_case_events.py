"""The reporter's actions (from intake) and the sla service's auto-close drive the case too,
once per event."""

from __future__ import annotations

import uuid

from google.protobuf.message import Message
from lapor.v1 import common_pb2, events_pb2
from lapor.v1 import officer_pb2 as pb

from services.common.topics import CASE_ACTIONS, REPORTER_ACTIONS, SLA_EVENTS
from services.stack.supervisor import Stack
from tests.e2e.officer_support import Officers, admin, auth, submit
from tests.kafka_offsets import Position, produce, wait_handled
from tests.support import eventually, read_topic

OWNER = "pemda-51.08/disdukcapil"
#: routing's consumer groups (services/routing/bootstrap.py: group "lapor-routing", per topic)
ROUTING_REPORTER_ACTIONS = f"lapor-routing.{REPORTER_ACTIONS}"
ROUTING_SLA_EVENTS = f"lapor-routing.{SLA_EVENTS}"
HISTORY_OF_A_RESOLVED_REPORT = ["routed", "accepted", "resolved"]  # resolved_report()
KTP = {"title": "Akta kelahiran", "body": "Akta kelahiran anak saya blm jadi di disdukcapil."}


def publish(
    stack: Stack, topic: str, tracking_id: str, event: Message, times: int = 1
) -> list[Position]:
    """Publish `event` `times` times (a redelivery) under its tracking id; where each copy
    landed."""
    return produce(stack.bootstrap_servers, topic, tracking_id, [event.SerializeToString()] * times)


def meta(tracking_id: str) -> common_pb2.EventMeta:
    return common_pb2.EventMeta(event_id=uuid.uuid4().hex, tracking_id=tracking_id, producer="t")


def resolved_report(stack: Stack, api: Officers) -> str:
    tracking_id = submit(stack, region_code="51.08", **KTP)
    assert api.routed(tracking_id).institution.id == OWNER
    unit = auth(OWNER)
    api.officer.Accept(pb.CaseActionRequest(tracking_id=tracking_id), metadata=unit, timeout=5)
    api.officer.Resolve(
        pb.ResolveRequest(tracking_id=tracking_id, text="Akta sudah dapat diambil."),
        metadata=unit,
        timeout=5,
    )
    return tracking_id


def wait_for(api: Officers, tracking_id: str, state: str) -> pb.Report:
    def reached() -> pb.Report | None:
        report = api.get(tracking_id, admin())
        return report if report.state == state else None

    return eventually(reached, what=f"state {state}")


def test_reporter_rejection_reopens_once_per_event(stack: Stack) -> None:
    """A rejection delivered again, right away and after the case was resolved once more,
    reopens the case once: a second application would reopen it again (or, while it is in
    progress, be refused: a history entry and a refusal for intake)."""
    with Officers(stack) as api:
        tracking_id = resolved_report(stack, api)
        rejected = events_pb2.ReporterAction(
            meta=meta(tracking_id), action="rejected", text="Belum, kantor bilang belum ada."
        )
        copies = publish(stack, REPORTER_ACTIONS, tracking_id, rejected, times=2)  # redelivered
        wait_for(api, tracking_id, "in_progress")
        api.officer.Resolve(
            pb.ResolveRequest(tracking_id=tracking_id, text="Akta sudah jadi, silakan ambil."),
            metadata=auth(OWNER),
            timeout=5,
        )
        wait_for(api, tracking_id, "resolved")
        copies += publish(stack, REPORTER_ACTIONS, tracking_id, rejected)  # and once more
        # routing commits past a copy only after handling it
        wait_handled(stack.bootstrap_servers, ROUTING_REPORTER_ACTIONS, REPORTER_ACTIONS, copies)
        report = api.get(tracking_id, admin())
    assert report.state == "resolved" and report.reopen_count == 1
    actions = [h.action for h in report.history]
    assert actions == [*HISTORY_OF_A_RESOLVED_REPORT, "rejected", "resolved"]
    (rejection,) = [h for h in report.history if h.action == "rejected"]
    assert rejection.actor_role == "reporter"
    assert rejection.reason == "Belum, kantor bilang belum ada."
    refusals = [
        action
        for key, value in read_topic(stack.bootstrap_servers, CASE_ACTIONS)
        if key == tracking_id.encode() and value is not None
        for action in [events_pb2.CaseAction.FromString(value)]
        if action.refused_event_id == rejected.meta.event_id
    ]
    assert refusals == []


def test_auto_close_due_closes_a_resolved_case(stack: Stack) -> None:
    """An auto-close due delivered twice closes the case once; the second copy finds it
    closed and leaves no trace (no second entry, nothing refused)."""
    with Officers(stack) as api:
        tracking_id = resolved_report(stack, api)
        due = events_pb2.SlaEvent(
            meta=meta(tracking_id),
            institution_id=OWNER,
            auto_close_due=events_pb2.AutoCloseDue(),
        )
        copies = publish(stack, SLA_EVENTS, tracking_id, due, times=2)
        wait_for(api, tracking_id, "closed")
        # routing commits past a copy only after handling it
        wait_handled(stack.bootstrap_servers, ROUTING_SLA_EVENTS, SLA_EVENTS, copies)
        report = api.get(tracking_id, admin())
    assert report.state == "closed"
    assert report.colour == common_pb2.STATUS_COLOUR_GREEN
    assert [h.action for h in report.history] == [*HISTORY_OF_A_RESOLVED_REPORT, "auto_closed"]

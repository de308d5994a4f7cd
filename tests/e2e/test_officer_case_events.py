"""The reporter's actions (from intake) and the sla service's auto-close drive the case too,
once per event."""

from __future__ import annotations

import uuid

from confluent_kafka import Producer
from google.protobuf.message import Message
from lapor.v1 import common_pb2, events_pb2
from lapor.v1 import officer_pb2 as pb

from services.common.topics import REPORTER_ACTIONS, SLA_EVENTS
from services.stack.supervisor import Stack
from tests.e2e.officer_support import Officers, admin, auth, submit
from tests.support import eventually

OWNER = "pemda-51.08/disdukcapil"
KTP = {"title": "Akta kelahiran", "body": "Akta kelahiran anak saya blm jadi di disdukcapil."}


def publish(stack: Stack, topic: str, tracking_id: str, event: Message, times: int = 1) -> None:
    producer = Producer({"bootstrap.servers": stack.bootstrap_servers})
    for _ in range(times):
        producer.produce(topic, event.SerializeToString(), key=tracking_id.encode())
    producer.flush(10)


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
    with Officers(stack) as api:
        tracking_id = resolved_report(stack, api)
        rejected = events_pb2.ReporterAction(
            meta=meta(tracking_id), action="rejected", text="Belum, kantor bilang belum ada."
        )
        publish(stack, REPORTER_ACTIONS, tracking_id, rejected, times=2)  # redelivered
        report = wait_for(api, tracking_id, "in_progress")
        assert report.reopen_count == 1
        assert [h.action for h in report.history].count("rejected") == 1
        assert report.history[-1].actor_role == "reporter"
        assert report.history[-1].reason == "Belum, kantor bilang belum ada."


def test_auto_close_due_closes_a_resolved_case(stack: Stack) -> None:
    with Officers(stack) as api:
        tracking_id = resolved_report(stack, api)
        due = events_pb2.SlaEvent(
            meta=meta(tracking_id),
            institution_id=OWNER,
            auto_close_due=events_pb2.AutoCloseDue(),
        )
        publish(stack, SLA_EVENTS, tracking_id, due, times=2)
        report = wait_for(api, tracking_id, "closed")
        assert report.colour == common_pb2.STATUS_COLOUR_GREEN
        assert [h.action for h in report.history][-1] == "auto_closed"
        assert [h.action for h in report.history].count("auto_closed") == 1

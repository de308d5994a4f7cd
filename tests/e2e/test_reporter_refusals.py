"""A reporter action that intake accepted but routing refuses (the case is no longer in the
state intake's view showed, or routing's own rules refuse it) must not leave the reporter
blocked: routing publishes a ``reporter_action_refused`` CaseAction from its outbox, intake's
view unblocks the reporter and tells them why. Everything here is real: officers act through
routing's API, the reporter through intake's, the events travel through the broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from confluent_kafka import Producer
from lapor.v1 import common_pb2, events_pb2, intake_pb2, reporter_pb2, reporter_pb2_grpc
from lapor.v1 import officer_pb2 as pb
from pymongo import MongoClient

from services.common.topics import CASE_ACTIONS, REPORTER_ACTIONS
from services.stack.supervisor import Stack
from tests.e2e.officer_support import Officers, admin, auth
from tests.support import eventually, intake_stub, read_topic, submit_request

OWNER = "pemda-51.08/disdukcapil"
KTP = {"title": "Akta kelahiran", "body": "Akta kelahiran anak saya blm jadi di disdukcapil."}


@pytest.fixture(scope="module")
def reporter(stack: Stack) -> Iterator[reporter_pb2_grpc.ReporterServiceStub]:
    channel = grpc.insecure_channel(stack.services["intake"].grpc_address)
    with channel:
        yield reporter_pb2_grpc.ReporterServiceStub(channel)


def submit_with_code(stack: Stack) -> tuple[str, str]:
    channel, stub = intake_stub(stack.services["intake"].grpc_address)
    with channel:
        reply = stub.SubmitComplaint(submit_request(region_code="51.08", **KTP), timeout=10)
    return str(reply.tracking_id), str(reply.follow_up_code)


def mine(reporter: Any, tid: str, code: str) -> reporter_pb2.MyReport:
    return reporter.GetMyReport(  # type: ignore[no-any-return]
        reporter_pb2.GetMyReportRequest(tracking_id=tid, follow_up_code=code), timeout=5
    )


def earlier_rejection(stack: Stack, tid: str) -> None:
    """A rejection of the same report that reaches routing first: as if sent a moment
    earlier from the reporter's other device (intake lets one through at a time, so the
    test puts it on the topic itself, with routing stopped, ahead of the confirmation)."""
    event = events_pb2.ReporterAction(
        meta=common_pb2.EventMeta(
            event_id=uuid.uuid4().hex, tracking_id=tid, producer="test-other-device"
        ),
        action="rejected",
        text="Akta belum saya terima.",
    )
    # murmur2: the partitioner of aiokafka (and Java clients), so the event lands on the
    # report's partition, ahead of intake's confirmation.
    producer = Producer(
        {"bootstrap.servers": stack.bootstrap_servers, "partitioner": "murmur2_random"}
    )
    producer.produce(REPORTER_ACTIONS, event.SerializeToString(), key=tid.encode())
    assert producer.flush(10) == 0


def test_an_action_routing_refuses_unblocks_the_reporter_and_says_why(
    stack: Stack,
    reporter: Any,
    mongo: MongoClient,  # type: ignore[type-arg]
) -> None:
    tid, code = submit_with_code(stack)
    unit = auth(OWNER)
    with Officers(stack) as api:
        assert api.routed(tid).institution.id == OWNER
        api.officer.Accept(pb.CaseActionRequest(tracking_id=tid), metadata=unit, timeout=5)
        api.officer.Resolve(
            pb.ResolveRequest(tracking_id=tid, text="Akta sudah dikirim lewat pos."),
            metadata=unit,
            timeout=5,
        )
    eventually(
        lambda: mine(reporter, tid, code).view.state == "resolved",
        what="the resolution in intake's view",
    )
    # Routing stopped: the other device's rejection, then the confirmation, queue on the
    # topic in that order; routing applies the first and must refuse the second.
    stack.stop_service("routing")
    try:
        earlier_rejection(stack, tid)
        confirm = reporter_pb2.ConfirmResolutionRequest(
            tracking_id=tid, follow_up_code=code, rating=4, comment="Terima kasih"
        )
        accepted = reporter.ConfirmResolution(confirm, timeout=5)
        assert accepted.action == "confirmed"
        assert "confirm_resolution" not in mine(reporter, tid, code).allowed_actions  # pending
    finally:
        stack.start_service("routing")
        stack.wait_serving(("routing",), timeout=120)

    def refused() -> reporter_pb2.MyReport | None:
        report = mine(reporter, tid, code)
        entries = [h for h in report.history if h.action == "reporter_action_refused"]
        return report if entries else None

    report = eventually(refused, what="routing's refusal in the reporter's history")
    [entry] = [h for h in report.history if h.action == "reporter_action_refused"]
    assert "could not be applied" in entry.detail
    assert "in_progress" in entry.detail
    public = reporter.GetPublicView(reporter_pb2.GetPublicViewRequest(tracking_id=tid), timeout=5)
    assert "reporter_action_refused" not in [h.action for h in public.history]
    channel, tracking = intake_stub(stack.services["intake"].grpc_address)
    with channel:  # the public tracking call shows the same public history
        tracked = tracking.GetComplaint(intake_pb2.GetComplaintRequest(tracking_id=tid), timeout=5)  # type: ignore[attr-defined]
    assert [(h.action, h.detail) for h in tracked.history] == [
        (h.action, h.detail) for h in public.history
    ]
    events = [
        events_pb2.CaseAction.FromString(v or b"")
        for k, v in read_topic(stack.bootstrap_servers, CASE_ACTIONS)
        if k == tid.encode()
    ]
    refusals = [e for e in events if e.action == "reporter_action_refused"]
    assert [(e.meta.event_id, e.refused_event_id, e.refused_action) for e in refusals] == [
        (f"{accepted.event_id}:refused", accepted.event_id, "confirmed")
    ]
    assert refusals[0].from_state == refusals[0].to_state == "in_progress"
    # sla saw the refusal and counted no rating: only an applied confirm carries one.
    clocks = mongo["lapor_sla"]["clocks"]
    eventually(
        lambda: clocks.find_one({"_id": tid, "_applied": f"{accepted.event_id}:refused"}),
        what="sla to apply the refusal",
    )
    assert "rating" not in clocks.find_one({"_id": tid})

    # Not stuck: once the institution resolves the reopened report again, the reporter
    # confirms, and routing closes it.
    with Officers(stack) as api:
        assert api.get(tid, admin()).state == "in_progress"
        history = [h.action for h in api.get(tid, admin()).history]
        assert history.count("reporter_action_refused") == 1
        api.officer.Resolve(
            pb.ResolveRequest(tracking_id=tid, text="Akta dikirim ulang, nomor resi 123."),
            metadata=unit,
            timeout=5,
        )
    eventually(
        lambda: "confirm_resolution" in mine(reporter, tid, code).allowed_actions,
        what="the reporter free to confirm the new resolution",
    )
    confirm.rating = 5
    assert reporter.ConfirmResolution(confirm, timeout=5).action == "confirmed"
    eventually(
        lambda: mine(reporter, tid, code).view.state == "closed",
        what="the confirmation applied by routing",
    )
    eventually(
        lambda: (clocks.find_one({"_id": tid}) or {}).get("rating") == 5,
        what="sla to count the applied confirm's rating",
    )

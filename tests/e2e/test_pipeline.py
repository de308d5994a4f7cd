"""A complaint travels intake → routing → sla → notify and back into its tracking view."""

from __future__ import annotations

import grpc
from lapor.v1 import common_pb2, events_pb2, intake_pb2
from pymongo import MongoClient

from services.common.topics import COMPLAINTS_RECEIVED, COMPLAINTS_ROUTED
from services.stack.supervisor import Stack
from tests.support import eventually, intake_stub, marker, read_topic, submit_request


def track(stub: object, tracking_id: str) -> intake_pb2.Complaint:
    return stub.GetComplaint(intake_pb2.GetComplaintRequest(tracking_id=tracking_id), timeout=5)  # type: ignore[attr-defined]


def complete(stub: object, tracking_id: str) -> intake_pb2.Complaint | None:
    c = track(stub, tracking_id)
    return c if c.institution.id and len(c.deadlines) == 3 and c.notifications else None


def test_submitted_complaint_is_routed_given_deadlines_and_notified(stack: Stack) -> None:
    channel, stub = intake_stub(stack.services["intake"].grpc_address)
    with channel:
        reply = stub.SubmitComplaint(submit_request(region_code="51.08"), timeout=5)
        assert reply.tracking_id and not reply.duplicate
        c = eventually(
            lambda: complete(stub, reply.tracking_id), what="routed, deadlines, notification"
        )
    # a pothole in Buleleng: the regency's public works unit (services/routing/data/rules.toml)
    assert c.institution.id == "pemda-51.08/dpupr"
    assert c.institution.name.endswith("Kabupaten Buleleng")
    assert c.status == common_pb2.COMPLAINT_STATUS_ROUTED
    assert c.status_colour == common_pb2.STATUS_COLOUR_RED
    clocks = {d.clock: d for d in c.deadlines}
    assert set(clocks) == {"first_response", "resolution", "ombudsman"}
    received = c.received_at.ToDatetime()
    assert 2 <= (clocks["first_response"].due_at.ToDatetime() - received).days <= 3
    assert 59 <= (clocks["ombudsman"].due_at.ToDatetime() - received).days <= 60
    actions = [h.action for h in c.history]  # the public history: public actions only
    assert actions[:2] == ["received", "routed"]
    assert not {"deadlines_set", "notified"} & set(actions)
    assert [n.template for n in c.notifications] == ["complaint_forwarded"]


def test_events_are_keyed_by_tracking_id_and_carry_no_identity(stack: Stack) -> None:
    name, phone, email = f"Siti {marker()}", "081298765432", f"{marker()}@contoh.id"
    channel, stub = intake_stub(stack.services["intake"].grpc_address)
    with channel:
        reply = stub.SubmitComplaint(
            submit_request(
                privacy=common_pb2.PRIVACY_CONFIDENTIAL,
                reporter=intake_pb2.ReporterContact(name=name, phone=phone, email=email),
            ),
            timeout=5,
        )
        eventually(lambda: complete(stub, reply.tracking_id), what="pipeline")
    received = [
        v
        for k, v in read_topic(stack.bootstrap_servers, COMPLAINTS_RECEIVED)
        if k == reply.tracking_id.encode()
    ]
    routed = [
        v
        for k, v in read_topic(stack.bootstrap_servers, COMPLAINTS_ROUTED)
        if k == reply.tracking_id.encode()
    ]
    assert len(received) == 1 and len(routed) == 1
    event = events_pb2.ComplaintReceived.FromString(received[0] or b"")
    assert event.meta.tracking_id == reply.tracking_id and event.reporter_reachable
    for raw in received + routed:
        assert raw is not None
        for secret in (name, phone, email):
            assert secret.encode() not in raw


def test_idempotent_retry_returns_the_original(stack: Stack, mongo: MongoClient) -> None:  # type: ignore[type-arg]
    request = submit_request(title=f"Sampah menumpuk {marker()}")
    channel, stub = intake_stub(stack.services["intake"].grpc_address)
    with channel:
        first = stub.SubmitComplaint(request, timeout=5)
        second = stub.SubmitComplaint(request, timeout=5)
        assert second.tracking_id == first.tracking_id and second.duplicate
        changed = submit_request(idempotency_key=request.idempotency_key, title="lain")
        try:
            stub.SubmitComplaint(changed, timeout=5)
            raise AssertionError("a reused key with another payload must be refused")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "idempotency_key" in (exc.details() or "")
    assert mongo["lapor_intake"]["complaints"].count_documents({"title": request.title}) == 1


def test_unknown_and_malformed_tracking_ids(stack: Stack) -> None:
    channel, stub = intake_stub(stack.services["intake"].grpc_address)
    with channel:
        for raw, code, text in [
            ("0000-0000-000", grpc.StatusCode.NOT_FOUND, "tracking_id"),
            ("abc", grpc.StatusCode.INVALID_ARGUMENT, "tracking_id"),
        ]:
            try:
                track(stub, raw)
                raise AssertionError(f"{raw} must fail")
            except grpc.RpcError as exc:
                assert exc.code() == code
                assert text in (exc.details() or "")

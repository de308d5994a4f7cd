"""The reporter's side over gRPC against the running services: public view, own report by
follow-up code, answering and confirming or rejecting the follow-up as the case moves, the
public listing. Case states are driven by publishing lapor.v1.CaseAction events to the
real broker, as routing does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from confluent_kafka import Producer
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from lapor.v1 import common_pb2, events_pb2, intake_pb2, reporter_pb2, reporter_pb2_grpc
from lapor.v1 import officer_pb2 as pb

from services.common.ids import new_tracking_id
from services.common.status import MAX_REOPENS
from services.common.topics import CASE_ACTIONS, REPORTER_ACTIONS
from services.stack.supervisor import Stack
from tests.e2e.officer_support import Officers, admin, auth
from tests.support import eventually, intake_stub, marker, read_topic, submit_request

Stub = reporter_pb2_grpc.ReporterServiceStub


@pytest.fixture(scope="module")
def stubs(stack: Stack) -> Iterator[tuple[Any, Stub]]:
    address = stack.services["intake"].grpc_address
    channel, intake = intake_stub(address)
    reporter_channel = grpc.insecure_channel(address)
    with channel, reporter_channel:
        yield intake, Stub(reporter_channel)


def submit(intake: Any, **overrides: object) -> tuple[str, str]:
    reply = intake.SubmitComplaint(submit_request(**overrides), timeout=10)
    assert reply.follow_up_code
    return reply.tracking_id, reply.follow_up_code


def drive(stack: Stack, tracking_id: str, action: str, from_state: str, to_state: str, **kw: Any) -> None:  # fmt: skip
    """Publish a CaseAction as routing would."""
    event = events_pb2.CaseAction(
        meta=common_pb2.EventMeta(
            event_id=uuid.uuid4().hex, tracking_id=tracking_id, producer="routing"
        ),
        action=action,
        actor_role=kw.pop("actor_role", "officer"),
        actor_id=kw.pop("actor_id", "officer-0042"),
        from_state=from_state,
        to_state=to_state,
        **kw,
    )
    producer = Producer({"bootstrap.servers": stack.bootstrap_servers})
    producer.produce(CASE_ACTIONS, event.SerializeToString(), key=tracking_id.encode())
    assert producer.flush(10) == 0


def drive_and_wait(stack: Stack, reporter: Stub, tid: str, *steps: tuple[str, str, str]) -> None:
    seen = len(public(reporter, tid).history)
    for i, (action, from_state, to_state) in enumerate(steps, start=1):
        drive(stack, tid, action, from_state, to_state)
        eventually(lambda: reached(reporter, tid, seen + i, to_state), what=f"{tid} {to_state}")  # noqa: B023


def reached(reporter: Stub, tid: str, entries: int, state: str) -> bool:
    view = public(reporter, tid)
    return len(view.history) >= entries and view.state == state


def public(reporter: Stub, tid: str) -> reporter_pb2.PublicView:
    return reporter.GetPublicView(reporter_pb2.GetPublicViewRequest(tracking_id=tid), timeout=5)


def mine(reporter: Stub, tid: str, code: str) -> reporter_pb2.MyReport:
    return reporter.GetMyReport(
        reporter_pb2.GetMyReportRequest(tracking_id=tid, follow_up_code=code), timeout=5
    )


def error_of(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


def violations(err: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    out = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.update({v.field: v.description for v in bad.field_violations})
    return out


def test_public_view_of_public_and_confidential_reports(stack: Stack, stubs: Any) -> None:
    intake, reporter = stubs
    name, phone = f"Wayan {marker()}", "081298761234"
    contact = intake_pb2.ReporterContact(name=name, phone=phone)
    open_tid, _ = submit(intake, title=f"Lampu jalan mati {marker()}", reporter=contact)
    secret_title = f"Pungli di kantor desa {marker()}"
    closed_tid, closed_code = submit(
        intake, privacy=common_pb2.PRIVACY_CONFIDENTIAL, title=secret_title, reporter=contact
    )
    note = f"Petugas sudah meninjau lokasi {marker()}"
    for tid in (open_tid, closed_tid):
        drive(stack, tid, "accepted", "assigned", "in_progress", public_note=note)
        eventually(lambda t=tid: public(reporter, t).state == "in_progress", what="in progress")  # type: ignore[misc]
    shown, hidden = public(reporter, open_tid), public(reporter, closed_tid)
    assert shown.title.startswith("Lampu jalan mati") and shown.body
    assert hidden.title == "" and hidden.body == ""
    for view in (shown, hidden):
        assert view.status == common_pb2.COMPLAINT_STATUS_IN_PROGRESS
        assert view.status_colour == common_pb2.STATUS_COLOUR_YELLOW
        accepted = [h for h in view.history if h.action == "accepted"]
        assert len(accepted) == 1 and accepted[0].actor == "officer"
        raw = view.SerializeToString()
        for secret in (name, phone, "officer-0042", "notified"):
            assert secret.encode() not in raw
    assert [h.detail for h in shown.history if h.action == "accepted"] == [note]
    assert [h.detail for h in hidden.history if h.action == "accepted"] == [""]
    own = mine(reporter, closed_tid, closed_code)
    assert own.view.title == secret_title
    assert [h.detail for h in own.history if h.action == "accepted"] == [note]
    err = error_of(lambda: public(reporter, "0000-0000-000"))
    assert err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


def test_my_report_needs_the_right_code(stubs: Any) -> None:
    intake, reporter = stubs
    title = f"Pungli KTP {marker()}"
    contact = intake_pb2.ReporterContact(phone="081234567890", email="siti.rahma@contoh.id")
    tid, code = submit(
        intake, privacy=common_pb2.PRIVACY_CONFIDENTIAL, title=title, reporter=contact
    )
    report = mine(reporter, tid, code)
    assert report.view.title == title and report.view.body
    assert report.contact.phone == "+62812****7890"
    assert report.contact.email == "s***@contoh.id"
    assert report.history[0].action == "received"
    assert mine(reporter, tid, code.lower().replace("-", " ")).view.tracking_id == tid
    wrong = error_of(lambda: mine(reporter, tid, "AAAA-BBBB-CCCC"))
    assert wrong.code() == grpc.StatusCode.PERMISSION_DENIED
    # A well-formed tracking id (its check symbol right) that no report has: the same answer
    # as a wrong code, so the answer does not tell which tracking ids exist.
    unknown_tid = new_tracking_id()
    unknown = error_of(lambda: mine(reporter, unknown_tid, code))
    assert unknown.code() == grpc.StatusCode.PERMISSION_DENIED
    assert unknown.details() == wrong.details()
    bad = error_of(lambda: mine(reporter, "ABC", ""))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(bad)) == {"tracking_id", "follow_up_code"}


def test_reporter_actions_follow_the_case_state(stack: Stack, stubs: Any) -> None:
    intake, reporter = stubs
    tid, code = submit(intake, privacy=common_pb2.PRIVACY_ANONYMOUS)
    add = reporter_pb2.AddInformationRequest(
        tracking_id=tid, follow_up_code=code, text=f"Lokasi tepat di depan pasar {marker()}"
    )
    early = error_of(lambda: reporter.AddInformation(add, timeout=5))
    assert early.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "add_information" in early.details() and "awaiting_reporter" in early.details()
    drive_and_wait(
        stack,
        reporter,
        tid,
        ("accepted", "assigned", "in_progress"),
        ("info_requested", "in_progress", "awaiting_reporter"),
    )
    assert "add_information" in mine(reporter, tid, code).allowed_actions
    done = reporter.AddInformation(add, timeout=5)
    assert done.action == "info_provided" and done.event_id
    twice = error_of(lambda: reporter.AddInformation(add, timeout=5))
    assert twice.code() == grpc.StatusCode.FAILED_PRECONDITION
    published = eventually(
        lambda: [
            events_pb2.ReporterAction.FromString(v or b"")
            for k, v in read_topic(stack.bootstrap_servers, REPORTER_ACTIONS)
            if k == tid.encode()
        ],
        what="ReporterAction on the topic",
    )
    assert [(e.meta.event_id, e.action, e.text) for e in published] == [
        (done.event_id, "info_provided", add.text)
    ]
    confirm = reporter_pb2.ConfirmResolutionRequest(tracking_id=tid, follow_up_code=code, rating=5)
    assert error_of(lambda: reporter.ConfirmResolution(confirm, timeout=5)).code() == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    drive_and_wait(
        stack,
        reporter,
        tid,
        ("info_provided", "awaiting_reporter", "in_progress"),
        ("resolved", "in_progress", "resolved"),
    )
    bad = reporter_pb2.ConfirmResolutionRequest(tracking_id=tid, follow_up_code=code, rating=6)
    assert violations(error_of(lambda: reporter.ConfirmResolution(bad, timeout=5))) == {
        "rating": "must be 1 to 5, got 6"
    }
    assert reporter.ConfirmResolution(confirm, timeout=5).action == "confirmed"
    report = mine(reporter, tid, code)
    assert [a.action for a in report.my_actions] == ["info_provided", "confirmed"]
    assert report.view.status_colour == common_pb2.STATUS_COLOUR_GREEN


def test_rejection_reopens_a_bounded_number_of_times(stack: Stack, stubs: Any) -> None:
    """Real officers resolve, the reporter rejects: routing reopens the report each time,
    up to the shared limit; intake refuses the next rejection itself."""
    intake, reporter = stubs
    owner = "pemda-51.08/disdukcapil"
    tid, code = submit(
        intake,
        region_code="51.08",
        title="Akta kelahiran",
        body="Akta kelahiran anak saya blm jadi di disdukcapil.",
    )
    unit = auth(owner)
    reject = reporter_pb2.RejectResolutionRequest(
        tracking_id=tid, follow_up_code=code, reason="Jalan belum diperbaiki"
    )
    with Officers(stack) as api:
        assert api.routed(tid).institution.id == owner
        api.officer.Accept(pb.CaseActionRequest(tracking_id=tid), metadata=unit, timeout=5)
        for count in range(MAX_REOPENS + 1):
            api.officer.Resolve(
                pb.ResolveRequest(tracking_id=tid, text=f"Sudah selesai ({count + 1})."),
                metadata=unit,
                timeout=5,
            )
            eventually(
                lambda: public(reporter, tid).state == "resolved",
                what="the resolution in intake's view",
            )
            if count == MAX_REOPENS:
                break
            assert reporter.RejectResolution(reject, timeout=5).action == "rejected"
            eventually(
                lambda c=count: (
                    public(reporter, tid).reopen_count == c + 1  # type: ignore[misc]
                    and api.get(tid, admin()).state == "in_progress"
                ),
                what="the report reopened by routing",
            )
    third = error_of(lambda: reporter.RejectResolution(reject, timeout=5))
    assert third.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"reopened {MAX_REOPENS} times" in third.details()
    assert mine(reporter, tid, code).allowed_actions == ["confirm_resolution", "upload_evidence"]
    assert public(reporter, tid).reopen_count == MAX_REOPENS


def test_public_listing_filters_and_pages(stack: Stack, stubs: Any) -> None:
    intake, reporter = stubs
    tag = marker()
    here = [submit(intake, region_code="91.19", title=f"Air bersih {tag} {i}")[0] for i in range(5)]
    there = submit(intake, region_code="91.20", title=f"Air bersih {tag} x")[0]
    aspiration = submit(
        intake,
        region_code="91.19",
        classification=common_pb2.CLASSIFICATION_ASPIRATION,
        title=f"Usul taman {tag}",
    )[0]
    submit(intake, region_code="91.19", privacy=common_pb2.PRIVACY_CONFIDENTIAL)
    submit(intake, region_code="91.19", privacy=common_pb2.PRIVACY_ANONYMOUS)

    def listing(**kw: Any) -> list[reporter_pb2.PublicReportSummary]:
        out: list[reporter_pb2.PublicReportSummary] = []
        token = ""
        for _ in range(20):
            page = reporter.ListPublicReports(
                reporter_pb2.ListPublicReportsRequest(page_size=2, page_token=token, **kw),
                timeout=5,
            )
            assert len(page.reports) <= 2
            out += page.reports
            token = page.next_page_token
            if not token:
                return out
        raise AssertionError("no last page")

    regency = listing(region_code="91.19")
    assert {r.tracking_id for r in regency} == {*here, aspiration}
    keys = [(r.received_at.ToDatetime(), r.tracking_id) for r in regency]
    assert keys == sorted(keys, reverse=True)
    assert {r.tracking_id for r in listing(region_code="91")} == {*here, aspiration, there}
    only = listing(region_code="91", classification=common_pb2.CLASSIFICATION_ASPIRATION)
    assert [r.tracking_id for r in only] == [aspiration]
    drive_and_wait(stack, reporter, here[0], ("accepted", "assigned", "in_progress"))
    assert [r.tracking_id for r in listing(region_code="91", state="in_progress")] == [here[0]]
    bad = error_of(
        lambda: reporter.ListPublicReports(
            reporter_pb2.ListPublicReportsRequest(region_code="91", page_token="x"), timeout=5
        )
    )
    assert set(violations(bad)) == {"page_token"}

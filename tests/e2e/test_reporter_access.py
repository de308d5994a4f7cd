"""Access by verified contact and the brake on guessing codes, over gRPC against the running
services: a reporter without the follow-up code asks for a one-time code with their phone
number (written another way), reads it from the development inbox, exchanges it for an
access token and uses the token on their own report; wrong contacts, anonymous and unknown
reports get the same reply and no code; wrong codes are limited per tracking id with
RESOURCE_EXHAUSTED and RetryInfo, known or unknown."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from lapor.v1 import common_pb2, intake_pb2, reporter_pb2, reporter_pb2_grpc
from pymongo import MongoClient

from services.common.ids import new_tracking_id
from services.stack.supervisor import Stack
from tests.e2e.test_reporter_api import drive_and_wait, error_of, violations
from tests.support import eventually, intake_stub, marker, retry_delay, submit_request

Stub = reporter_pb2_grpc.ReporterServiceStub
Mongo = MongoClient  # type: ignore[type-arg]


@pytest.fixture(scope="module")
def stubs(stack: Stack) -> Iterator[tuple[Any, Stub]]:
    address = stack.services["intake"].grpc_address
    channel, intake = intake_stub(address)
    reporter_channel = grpc.insecure_channel(address)
    with channel, reporter_channel:
        yield intake, Stub(reporter_channel)


def digits() -> str:
    return f"{int(marker(), 16) % 10**8:08d}"


def confidential(intake: Any, phone: str, email: str = "", **kw: Any) -> tuple[str, str]:
    contact = intake_pb2.ReporterContact(name=f"Made {marker()}", phone=phone, email=email)
    reply = intake.SubmitComplaint(
        submit_request(privacy=common_pb2.PRIVACY_CONFIDENTIAL, reporter=contact, **kw),
        timeout=10,
    )
    return reply.tracking_id, reply.follow_up_code


def request_code(reporter: Stub, tid: str, contact: str) -> reporter_pb2.RequestAccessCodeResponse:
    return reporter.RequestAccessCode(
        reporter_pb2.RequestAccessCodeRequest(tracking_id=tid, contact=contact), timeout=5
    )


def verify(reporter: Stub, tid: str, code: str) -> reporter_pb2.VerifyAccessCodeResponse:
    return reporter.VerifyAccessCode(
        reporter_pb2.VerifyAccessCodeRequest(tracking_id=tid, access_code=code), timeout=5
    )


def inbox(mongo: Mongo, tid: str) -> list[dict[str, Any]]:
    return list(mongo["lapor_intake"]["access_code_inbox"].find({"tracking_id": tid}))


def test_a_verified_contact_opens_the_report(stack: Stack, stubs: Any, mongo: Mongo) -> None:
    intake, reporter = stubs
    n = digits()
    title = f"Pungli di kelurahan {marker()}"
    tid, code = confidential(intake, f"0813{n}", f"warga.{n}@contoh.id", title=title)
    reply = request_code(reporter, tid, f"+62 813-{n[:4]}-{n[4:]}")
    assert "if this contact belongs to the report" in reply.message
    assert (reply.code_valid_seconds, reply.code_length) == (600, 6)
    sent = eventually(lambda: inbox(mongo, tid), what="the access code in the inbox")
    assert len(sent) == 1 and set(sent[0]) == {"_id", "tracking_id", "contact_hash", "code", "expires_at"}  # fmt: skip
    assert n not in str(sent[0]["contact_hash"]) and len(sent[0]["code"]) == 6
    issued = verify(reporter, tid, sent[0]["code"])
    assert issued.access_token.startswith("lat_") and issued.expires_at.seconds > 0
    mine = reporter.GetMyReport(
        reporter_pb2.GetMyReportRequest(tracking_id=tid, access_token=issued.access_token),
        timeout=5,
    )
    assert mine.view.title == title
    assert mine.contact.phone == f"+62813****{n[-4:]}"
    used = error_of(lambda: verify(reporter, tid, sent[0]["code"]))
    assert used.code() == grpc.StatusCode.PERMISSION_DENIED
    drive_and_wait(stack, reporter, tid, ("resolved", "in_progress", "resolved"))
    confirm = reporter_pb2.ConfirmResolutionRequest(
        tracking_id=tid, access_token=issued.access_token, rating=4, comment="Terima kasih"
    )
    assert reporter.ConfirmResolution(confirm, timeout=5).action == "confirmed"
    header = reporter_pb2.EvidenceHeader(
        tracking_id=tid, access_token=issued.access_token, file_name="a.pdf",
        content_type="application/pdf",
    )  # fmt: skip
    receipt = reporter.UploadEvidence(
        iter([reporter_pb2.EvidenceChunk(header=header), reporter_pb2.EvidenceChunk(data=PDF)]),
        timeout=10,
    )
    assert receipt.evidence.content_type == "application/pdf"
    both = error_of(
        lambda: reporter.GetMyReport(
            reporter_pb2.GetMyReportRequest(
                tracking_id=tid, follow_up_code=code, access_token=issued.access_token
            ),
            timeout=5,
        )
    )
    assert violations(both) == {"access_token": "give either follow_up_code or access_token, not both"}  # fmt: skip
    forged = error_of(
        lambda: reporter.GetMyReport(
            reporter_pb2.GetMyReportRequest(tracking_id=tid, access_token="lat_" + "A" * 43),
            timeout=5,
        )
    )
    assert forged.code() == grpc.StatusCode.PERMISSION_DENIED


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def test_no_code_and_the_same_reply_when_nothing_matches(stubs: Any, mongo: Mongo) -> None:
    intake, reporter = stubs
    n = digits()
    tid, _ = confidential(intake, f"0813{n}", f"warga.{n}@contoh.id")
    anonymous = intake.SubmitComplaint(
        submit_request(
            privacy=common_pb2.PRIVACY_ANONYMOUS,
            reporter=intake_pb2.ReporterContact(phone=f"0813{n}"),
        ),
        timeout=10,
    ).tracking_id
    other = intake.SubmitComplaint(submit_request(), timeout=10).tracking_id
    unknown = new_tracking_id()
    replies = [
        request_code(reporter, target, contact).message
        for target, contact in [
            (tid, "081399990000"),
            (tid, "lain@contoh.id"),
            (anonymous, f"0813{n}"),
            (other, f"0813{n}"),
            (unknown, f"0813{n}"),
        ]
    ]
    matched = request_code(reporter, tid, f"WARGA.{n}@CONTOH.ID").message
    assert set(replies) == {matched}
    eventually(lambda: inbox(mongo, tid), what="the matched request's code")
    assert len(inbox(mongo, tid)) == 1
    assert [inbox(mongo, t) for t in (anonymous, other, unknown)] == [[], [], []]
    bad = error_of(lambda: request_code(reporter, "ABC", "nomor saya"))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(bad)) == {"tracking_id", "contact"}


def test_access_code_requests_are_limited_per_report(stubs: Any) -> None:
    intake, reporter = stubs
    tid, _ = confidential(intake, f"0813{digits()}")
    for _ in range(3):
        request_code(reporter, tid, "081399990000")
    err = error_of(lambda: request_code(reporter, tid, "081399990000"))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 0 < retry_delay(err) <= 900


def test_wrong_codes_are_limited_per_tracking_id(stubs: Any) -> None:
    intake, reporter = stubs
    tid, code = confidential(intake, f"0813{digits()}")
    unknown = new_tracking_id()

    def mine(target: str, credential: str) -> Any:
        return reporter.GetMyReport(
            reporter_pb2.GetMyReportRequest(tracking_id=target, follow_up_code=credential),
            timeout=5,
        )

    answers: dict[str, list[tuple[grpc.StatusCode, str]]] = {}
    for target in (tid, unknown):
        wrong = [
            lambda t=target: mine(t, "WXYZ-WXYZ-WXYZ"),
            lambda t=target: mine(t, "WXYZ-WXYZ-WXYZ"),
            lambda t=target: reporter.AddInformation(
                reporter_pb2.AddInformationRequest(
                    tracking_id=t, access_token="lat_" + "B" * 43, text="info"
                ),
                timeout=5,
            ),
            lambda t=target: mine(t, "WXYZ-WXYZ-WXYZ"),
            lambda t=target: mine(t, "WXYZ-WXYZ-WXYZ"),
        ]
        answers[target] = []
        for call in wrong:
            err = error_of(call)
            answers[target].append((err.code(), err.details()))
        limited = error_of(lambda t=target: mine(t, "WXYZ-WXYZ-WXYZ"))  # type: ignore[misc]
        assert limited.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "too many wrong codes" in limited.details()
        assert 0 < retry_delay(limited) <= 900
        # Wrong 6-digit access codes count apart: the way back in stays open.
        assert error_of(lambda t=target: verify(reporter, t, "000000")).code() == (  # type: ignore[misc]
            grpc.StatusCode.PERMISSION_DENIED
        )
    assert {c for c, _ in answers[tid]} == {grpc.StatusCode.PERMISSION_DENIED}
    assert answers[tid] == answers[unknown]
    # A stranger who knows the tracking id cannot lock its reporter out.
    assert mine(tid, code).view.tracking_id == tid

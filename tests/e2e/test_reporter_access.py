"""Access by verified contact and the brake on guessing codes, over gRPC against the running
services: a reporter without the follow-up code asks for a one-time code with their phone
number (written another way), reads it from the development inbox, exchanges it with their
contact for an access token and uses the token on their own report; wrong contacts,
anonymous and unknown reports get the same reply and no code; wrong codes are limited per
tracking id with RESOURCE_EXHAUSTED and RetryInfo, known or unknown; a stranger who knows
only the tracking id and exhausts every limit open to them does not shut the reporter out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from lapor.v1 import common_pb2, intake_pb2, reporter_pb2, reporter_pb2_grpc
from pymongo import MongoClient

from services.common.ids import new_tracking_id
from services.intake.access_codes import NO_CODE_MATCH, NO_CONTACT
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


def verify(
    reporter: Stub, tid: str, contact: str, code: str
) -> reporter_pb2.VerifyAccessCodeResponse:
    return reporter.VerifyAccessCode(
        reporter_pb2.VerifyAccessCodeRequest(tracking_id=tid, contact=contact, access_code=code),
        timeout=5,
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
    issued = verify(reporter, tid, f"0813{n}", sent[0]["code"])
    assert issued.access_token.startswith("lat_") and issued.expires_at.seconds > 0
    mine = reporter.GetMyReport(
        reporter_pb2.GetMyReportRequest(tracking_id=tid, access_token=issued.access_token),
        timeout=5,
    )
    assert mine.view.title == title
    assert mine.contact.phone == f"+62813****{n[-4:]}"
    used = error_of(lambda: verify(reporter, tid, f"0813{n}", sent[0]["code"]))
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


def test_access_code_requests_are_limited_per_report_and_contact(stubs: Any) -> None:
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
    other = "081399990000"
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
        tried = error_of(lambda t=target: verify(reporter, t, other, "000000"))  # type: ignore[misc]
        assert tried.code() == grpc.StatusCode.PERMISSION_DENIED
    assert {c for c, _ in answers[tid]} == {grpc.StatusCode.PERMISSION_DENIED}
    assert answers[tid] == answers[unknown]
    # A stranger who knows the tracking id cannot lock its reporter out.
    assert mine(tid, code).view.tracking_id == tid


def test_a_stranger_who_knows_the_tracking_id_cannot_shut_the_reporter_out(
    stubs: Any, mongo: Mongo
) -> None:
    """The tracking id is on public listings. A stranger with it and a contact of their own
    asks for codes until refused, sends codes until refused and wrong follow-up codes until
    refused; the reporter then asks with their own contact, gets a code and opens the
    report with it. A wrong contact and a wrong code get the same answer."""
    intake, reporter = stubs
    n = digits()
    tid, _ = confidential(intake, f"0813{n}")
    stranger = f"0857{digits()}"
    for _ in range(3):
        request_code(reporter, tid, stranger)
    asked = error_of(lambda: request_code(reporter, tid, stranger))
    assert asked.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert asked.details().startswith("tracking_id, contact: at most 3 access-code requests")

    def as_stranger(code: str) -> grpc.RpcError:
        return error_of(lambda: verify(reporter, tid, stranger, code))

    for guess in range(5):
        tried = as_stranger(f"{guess:06d}")
        assert (tried.code(), tried.details()) == (grpc.StatusCode.PERMISSION_DENIED, NO_CODE_MATCH)
    refused = as_stranger("000005")
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 0 < retry_delay(refused) <= 900
    for _ in range(6):
        wrong = error_of(
            lambda: reporter.GetMyReport(
                reporter_pb2.GetMyReportRequest(tracking_id=tid, follow_up_code="WXYZ-WXYZ-WXYZ"),
                timeout=5,
            )
        )
    assert wrong.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert inbox(mongo, tid) == []

    request_code(reporter, tid, f"+62 813 {n}")
    sent = eventually(lambda: inbox(mongo, tid), what="the reporter's access code")
    code = sent[0]["code"]
    mistyped = f"{(int(code) + 1) % 10**6:06d}"
    wrong_code = error_of(lambda: verify(reporter, tid, f"0813{n}", mistyped))
    # the right code with another contact: not even tried
    wrong_contact = error_of(lambda: verify(reporter, tid, f"lain.{n}@contoh.id", code))
    assert {(e.code(), e.details()) for e in (wrong_code, wrong_contact)} == {
        (grpc.StatusCode.PERMISSION_DENIED, NO_CODE_MATCH)
    }
    issued = verify(reporter, tid, f"0813{n}", code)
    mine = reporter.GetMyReport(
        reporter_pb2.GetMyReportRequest(tracking_id=tid, access_token=issued.access_token),
        timeout=5,
    )
    assert mine.view.tracking_id == tid


def test_verifying_without_the_contact_is_invalid(stubs: Any) -> None:
    """What a client written before `contact` existed sends: INVALID_ARGUMENT naming it,
    not counted as a try."""
    _, reporter = stubs
    missing = error_of(
        lambda: reporter.VerifyAccessCode(
            reporter_pb2.VerifyAccessCodeRequest(
                tracking_id=new_tracking_id(), access_code="123456"
            ),
            timeout=5,
        )
    )
    assert missing.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(missing) == {"contact": NO_CONTACT}

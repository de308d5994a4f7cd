"""IntakeService.RaisePrivacy counts wrong follow-up codes against the tracking id like the
reporter API does (one count for both): after the limit, RESOURCE_EXHAUSTED with RetryInfo
for a wrong code, for known and unknown tracking ids alike; the right code gets through."""

from __future__ import annotations

import grpc
from lapor.v1 import common_pb2, intake_pb2, reporter_pb2, reporter_pb2_grpc

from services.common.ids import new_tracking_id
from services.stack.supervisor import Stack
from tests.support import intake_stub, refused, retry_delay, submit_request

LIMIT = 5  # LAPOR_REPORTER_MAX_WRONG_CODES, default
WRONG = "AAAA-BBBB-CCCC"


def raise_privacy(stub: object, tracking_id: str, code: str) -> object:
    return stub.RaisePrivacy(  # type: ignore[attr-defined]
        intake_pb2.RaisePrivacyRequest(
            tracking_id=tracking_id, follow_up_code=code, privacy=common_pb2.PRIVACY_CONFIDENTIAL
        ),
        timeout=5,
    )


def test_wrong_codes_on_raise_privacy_hit_the_limit(stack: Stack) -> None:
    address = stack.services["intake"].grpc_address
    channel, stub = intake_stub(address)
    reporter_channel = grpc.insecure_channel(address)
    with channel, reporter_channel:
        reporter = reporter_pb2_grpc.ReporterServiceStub(reporter_channel)
        reply = stub.SubmitComplaint(submit_request(), timeout=10)
        tid, code = reply.tracking_id, reply.follow_up_code
        for tracking_id in (tid, new_tracking_id()):  # known, then unknown
            for _ in range(LIMIT):
                wrong = refused(lambda t=tracking_id: raise_privacy(stub, t, WRONG))  # type: ignore[misc]
                assert wrong.code() == grpc.StatusCode.PERMISSION_DENIED
            over = refused(lambda t=tracking_id: raise_privacy(stub, t, WRONG))  # type: ignore[misc]
            assert over.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "too many wrong codes" in (over.details() or "")
            assert retry_delay(over) > 0
        # One count per tracking id, shared with the reporter API.
        mine = refused(
            lambda: reporter.GetMyReport(
                reporter_pb2.GetMyReportRequest(tracking_id=tid, follow_up_code=WRONG), timeout=5
            )
        )
        assert mine.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        view = stub.GetComplaint(intake_pb2.GetComplaintRequest(tracking_id=tid), timeout=5)
        assert view.privacy == common_pb2.PRIVACY_PUBLIC  # nothing was changed
        # The right code still gets through: someone else's guesses lock nobody out.
        right = raise_privacy(stub, tid, code)
        assert right.changed  # type: ignore[attr-defined]

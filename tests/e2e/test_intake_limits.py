"""Rate limits over gRPC: RESOURCE_EXHAUSTED with a retry delay, per contact and per
channel client, on a stack of its own with small limits."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from lapor.v1 import common_pb2, intake_pb2

from services.stack.supervisor import Stack
from tests.support import dev_api_key, intake_stub, marker, submit_request

LIMITS = {
    "LAPOR_INTAKE_LIMIT_PER_CONTACT": "3",
    "LAPOR_INTAKE_LIMIT_CONTACT_WINDOW_SECONDS": "3600",
    "LAPOR_INTAKE_LIMIT_PER_CLIENT": "8",
    "LAPOR_INTAKE_LIMIT_CLIENT_WINDOW_SECONDS": "3600",
}


def retry_delay(err: grpc.RpcError) -> float:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.RetryInfo()
    assert any(d.Unpack(info) for d in status.details)
    return float(info.retry_delay.seconds)


def test_limits_per_contact_and_per_client(fresh_stack: Callable[..., Stack]) -> None:
    stack = fresh_stack(env={"intake": LIMITS})
    address = stack.services["intake"].grpc_address
    phone = f"0857{int(marker(), 16) % 10**8:08d}"
    channel, stub = intake_stub(address, dev_api_key(client_id="dev-web"))
    with channel:

        def submit(**fields: object) -> intake_pb2.SubmitComplaintResponse:
            return stub.SubmitComplaint(
                submit_request(title=f"Laporan {marker()}", **fields), timeout=5
            )

        contact = intake_pb2.ReporterContact(phone=phone)
        first_request = submit_request(
            title=f"Laporan {marker()}", privacy=common_pb2.PRIVACY_ANONYMOUS, reporter=contact
        )
        first = stub.SubmitComplaint(first_request, timeout=5)
        for _ in range(2):  # anonymous: the number is only counted, as a keyed hash
            submit(privacy=common_pb2.PRIVACY_ANONYMOUS, reporter=contact)
        with pytest.raises(grpc.RpcError) as call:
            contact.phone = "+62" + phone[1:]  # the same number, written otherwise
            submit(privacy=common_pb2.PRIVACY_ANONYMOUS, reporter=contact)
        assert call.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        assert "contact" in (call.value.details() or "")  # type: ignore[attr-defined]
        assert 0 < retry_delay(call.value) <= 3600
        # Over the contact's limit, a retry of a stored report still gets its answer.
        again = stub.SubmitComplaint(first_request, timeout=5)
        assert again.duplicate and again.tracking_id == first.tracking_id
        for _ in range(3):  # the client has spent 5 of its 8
            submit()
        with pytest.raises(grpc.RpcError) as call:
            submit()
        assert call.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        assert "client" in (call.value.details() or "")  # type: ignore[attr-defined]
    other, other_stub = intake_stub(address, dev_api_key(client_id="dev-mobile-app"))
    with other:  # another client has its own budget
        other_stub.SubmitComplaint(submit_request(channel=common_pb2.CHANNEL_MOBILE_APP), timeout=5)
    assert stack.read_log("intake").count(phone[4:]) == 0

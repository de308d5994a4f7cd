"""Helpers for the officers' API end-to-end tests: tokens, stubs, waiting for routing."""

from __future__ import annotations

import grpc
from lapor.v1 import officer_pb2, officer_pb2_grpc

from services.common.auth import issue_token
from services.intake.devenv import dev_api_key
from services.stack.supervisor import Stack
from tests.e2e.conftest import SECRETS
from tests.support import eventually, intake_stub, marker, submit_request

Metadata = tuple[tuple[str, str], ...]


def token(
    institution: str, role: str = "officer", ttl: int = 3600, now: float | None = None
) -> str:
    return issue_token(
        SECRETS["jwt_key"],
        SECRETS["jwt_issuer"],
        f"{role}-{marker()}",
        institution,
        role,
        ttl_seconds=ttl,
        now=now,
    )


def auth(institution: str, role: str = "officer") -> Metadata:
    return (("authorization", f"Bearer {token(institution, role)}"),)


ADMIN = ("national", "national_admin")


def admin() -> Metadata:
    return auth(*ADMIN)


class Officers:
    """Stubs of both services on one channel."""

    def __init__(self, stack: Stack) -> None:
        self.channel = grpc.insecure_channel(stack.services["routing"].grpc_address)
        self.officer = officer_pb2_grpc.OfficerServiceStub(self.channel)
        self.admin = officer_pb2_grpc.AdminServiceStub(self.channel)

    def __enter__(self) -> Officers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.channel.close()

    def get(self, tracking_id: str, metadata: Metadata) -> officer_pb2.Report:
        return self.officer.GetReport(  # type: ignore[no-any-return]
            officer_pb2.GetReportRequest(tracking_id=tracking_id), metadata=metadata, timeout=5
        )

    def routed(self, tracking_id: str) -> officer_pb2.Report:
        """The report as a national admin sees it, once routing stored it."""

        def look() -> officer_pb2.Report | None:
            try:
                return self.get(tracking_id, admin())
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                    return None
                raise

        return eventually(look, what=f"routing of {tracking_id}")


def submit(stack: Stack, **fields: object) -> str:
    channel, stub = intake_stub(stack.services["intake"].grpc_address)
    with channel:
        reply = stub.SubmitComplaint(
            submit_request(**fields), metadata=(("x-api-key", dev_api_key(SECRETS)),), timeout=10
        )
    return str(reply.tracking_id)


def code_of(call: object) -> grpc.StatusCode:
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[attr-defined,no-any-return]
    raise AssertionError("the call succeeded")

"""SlaService.ExtendDeadline's `extension` (a google.protobuf.Duration) through a real
in-process gRPC server: every Duration that is not a valid, positive one within the
policy's cap is INVALID_ARGUMENT with a BadRequest field violation on `extension`, before
the report is read, never INTERNAL."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from lapor.v1 import sla_pb2, sla_pb2_grpc

from services.common.auth import Principal
from services.common.clock import ManualClock
from services.sla.domain.actions import Rules
from services.sla.domain.calendar import WorkingCalendar
from services.sla.domain.policy import parse_policy
from services.sla.grpc_api import DURATION_SECONDS_MAX, SlaService
from services.sla.officers import Officers
from tests.unit.test_sla_actions import POLICY

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
INT64_MAX, INT32_MAX = 2**63 - 1, 2**31 - 1
#: POLICY's cap: 50% of the longest resolution deadline (field_inspection, 600 s).
CAP_SECONDS = 300


class FakeVerifier:
    def from_metadata(self, metadata: Any) -> Principal:
        return Principal("officer-1", "pemda-51.08", "officer")


class Cases:
    """Records the reports read; knows none (a request that gets this far is NOT_FOUND)."""

    def __init__(self) -> None:
        self.read: list[Any] = []

    async def find_one(self, query: dict[str, Any]) -> None:
        self.read.append(query["_id"])
        return None


@pytest.fixture
def cases() -> Cases:
    return Cases()


@pytest.fixture
async def stub(cases: Cases) -> AsyncIterator[sla_pb2_grpc.SlaServiceStub]:
    rules = Rules(parse_policy(POLICY, Path(".")), WorkingCalendar())
    officers = Officers(cases, rules, None, ManualClock(T0))  # type: ignore[arg-type]
    server = grpc.aio.server()
    sla_pb2_grpc.add_SlaServiceServicer_to_server(
        SlaService(officers, None, FakeVerifier()),  # type: ignore[arg-type]
        server,
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield sla_pb2_grpc.SlaServiceStub(channel)
    finally:
        await server.stop(None)


async def refused(
    stub: sla_pb2_grpc.SlaServiceStub, extension: Duration, reason: str = "survey lapangan"
) -> tuple[grpc.StatusCode, list[tuple[str, str]]]:
    """The status code and the BadRequest field violations of an ExtendDeadline call."""
    request = sla_pb2.ExtendDeadlineRequest(
        tracking_id="7K3M-9QX2-DAC", extension=extension, reason=reason
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ExtendDeadline(request, timeout=10)
    trailing = dict(err.value.trailing_metadata() or ())
    violations: list[tuple[str, str]] = []
    if "grpc-status-details-bin" in trailing:
        status = status_pb2.Status.FromString(trailing["grpc-status-details-bin"])
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                violations += [(v.field, v.description) for v in bad.field_violations]
    return err.value.code(), violations


@pytest.mark.parametrize(
    "extension,rule",
    [
        (Duration(seconds=INT64_MAX), "seconds must be within"),
        (Duration(seconds=-INT64_MAX - 1), "seconds must be within"),
        (Duration(seconds=DURATION_SECONDS_MAX + 1), "seconds must be within"),
        (Duration(seconds=INT64_MAX, nanos=INT32_MAX), "seconds must be within"),
        (Duration(seconds=1, nanos=INT32_MAX), "nanos must be within"),
        (Duration(seconds=1, nanos=-(2**31)), "nanos must be within"),
        (Duration(seconds=5, nanos=-1), "same sign"),
        (Duration(seconds=-5, nanos=1), "same sign"),
        (Duration(), "must be a positive duration"),
        (Duration(seconds=-DURATION_SECONDS_MAX), "must be a positive duration"),
        (Duration(nanos=999), "at least 1 microsecond"),
        (Duration(seconds=DURATION_SECONDS_MAX, nanos=999_999_999), "cap"),
        (Duration(seconds=CAP_SECONDS, nanos=1_000), "cap"),
    ],
)
async def test_an_impossible_extension_is_invalid_argument_on_extension(
    stub: sla_pb2_grpc.SlaServiceStub,
    cases: Cases,
    caplog: pytest.LogCaptureFixture,
    extension: Duration,
    rule: str,
) -> None:
    caplog.set_level(logging.INFO)
    code, violations = await refused(stub, extension)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    [(field, description)] = violations
    assert field == "extension" and rule in description
    assert cases.read == []  # refused before the report is read
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []  # no stack trace


async def test_every_broken_rule_is_named_with_the_extension(
    stub: sla_pb2_grpc.SlaServiceStub, cases: Cases
) -> None:
    code, violations = await refused(stub, Duration(seconds=INT64_MAX), reason=" ")
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in violations] == ["extension", "reason"]
    assert cases.read == []


async def test_an_extension_within_the_cap_reaches_the_use_case(
    stub: sla_pb2_grpc.SlaServiceStub, cases: Cases
) -> None:
    """The largest allowed extension passes the edge: the (unknown) report is looked up."""
    code, violations = await refused(stub, Duration(seconds=CAP_SECONDS))
    assert (code, violations) == (grpc.StatusCode.NOT_FOUND, [])
    assert cases.read == ["7K3M-9QX2-DAC"]

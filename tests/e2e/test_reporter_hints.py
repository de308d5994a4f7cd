"""The reporter's own category and named institution travel with the report: stored by
intake, filterable in the public listing, recorded (as a hint only) in routing's decision."""

from __future__ import annotations

import grpc
import pytest
from lapor.v1 import reporter_pb2, reporter_pb2_grpc
from pymongo import MongoClient

from services.stack.supervisor import Stack
from tests.support import eventually, intake_stub, marker, submit_request


def test_category_and_named_institution_reach_listing_and_routing(
    stack: Stack, mongo: MongoClient
) -> None:  # type: ignore[type-arg]
    category = f"lampu-padam-{marker()}"
    channel, stub = intake_stub(stack.services["intake"].grpc_address)
    with channel:
        reply = stub.SubmitComplaint(
            submit_request(
                title="Listrik padam tiga hari",
                body="Listrik di desa kami padam sejak Senin, token sudah diisi.",
                category=category,
                named_institution_id="nasional-pln",
            ),
            timeout=5,
        )
    case = eventually(
        lambda: mongo["lapor_routing"]["cases"].find_one({"_id": reply.tracking_id}),
        what="the routed case",
    )
    assert case["decision"]["hint"] == "nasional-pln"
    stored = mongo["lapor_intake"]["complaints"].find_one({"_id": reply.tracking_id})
    assert stored["category"] == category and stored["named_institution_id"] == "nasional-pln"
    with grpc.insecure_channel(stack.services["intake"].grpc_address) as ch:
        page = reporter_pb2_grpc.ReporterServiceStub(ch).ListPublicReports(
            reporter_pb2.ListPublicReportsRequest(category=category, page_size=10), timeout=5
        )
    assert [r.tracking_id for r in page.reports] == [reply.tracking_id]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"category": "x" * 101}, "category"),
        ({"named_institution_id": "PLN Pusat!"}, "named_institution_id"),
    ],
)
def test_bad_hints_are_refused_naming_the_field(
    stack: Stack, fields: dict[str, str], field: str
) -> None:
    channel, stub = intake_stub(stack.services["intake"].grpc_address)
    with channel, pytest.raises(grpc.RpcError) as info:
        stub.SubmitComplaint(submit_request(**fields), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert field in (info.value.details() or "")  # type: ignore[attr-defined]

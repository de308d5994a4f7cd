"""Property: whatever a channel sends, SubmitComplaint answers with a documented status
(never UNKNOWN or INTERNAL), every INVALID_ARGUMENT names its fields and rules in
google.rpc.BadRequest, a refused request stores nothing, and intake stays SERVING."""

from __future__ import annotations

from collections import Counter

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lapor.v1 import intake_pb2
from pymongo import MongoClient

from services.stack.supervisor import Stack, health_status
from tests.support import dev_api_key, intake_stub

DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
short = st.text(max_size=40)
phones = st.one_of(
    short,
    st.from_regex(r"\A(\+62 ?|62|0)8[1-9]\d{1,2}[ -]?\d{3,4}[ -]?\d{2,5}\Z"),
    st.just(""),
)
texts = st.one_of(short, st.text(min_size=150, max_size=2000), st.just(""), st.just("   "))
enums = st.one_of(st.integers(0, 5), st.integers(-(2**31), 2**31 - 1))
regions = st.one_of(st.sampled_from(["51", "51.08", "31.71", "94.71", "99", "51.99"]), short)
words = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), min_size=1)
valid_web = st.builds(
    intake_pb2.SubmitComplaintRequest,
    channel=st.integers(1, 1),
    privacy=st.integers(1, 3),
    classification=st.integers(1, 3),
    title=words.map(lambda t: ("Laporan " + t)[:200]),
    body=words.map(lambda t: "Isi " + t),
    region_code=st.sampled_from(["51", "51.08", "31.71", "94.71"]),
    reporter=st.builds(intake_pb2.ReporterContact, name=short, phone=st.just("")),
    idempotency_key=st.from_regex(r"\A[a-z0-9]{1,12}\Z"),
)
valid_sms = st.builds(
    intake_pb2.SubmitComplaintRequest,
    channel=st.integers(2, 2),
    privacy=st.integers(1, 3),
    classification=st.integers(1, 3),
    region_code=st.just("51.08"),
    sms=st.builds(intake_pb2.SmsMessage, sender=phones, text=words.map(lambda t: t[:600])),
)
random_requests = st.builds(
    intake_pb2.SubmitComplaintRequest,
    channel=enums,
    privacy=enums,
    classification=enums,
    title=texts,
    body=texts,
    region_code=regions,
    reporter=st.builds(intake_pb2.ReporterContact, name=short, phone=phones, email=short),
    idempotency_key=st.one_of(st.just(""), st.from_regex(r"\A[a-z0-9]{1,8}\Z"), short),
    sms=st.one_of(st.none(), st.builds(intake_pb2.SmsMessage, sender=phones, text=texts)),
    social_media=st.one_of(
        st.none(),
        st.builds(intake_pb2.SocialMediaPost, platform=short, handle=short, post_id=short),
    ),
    institution_reference=st.one_of(
        st.none(),
        st.builds(intake_pb2.InstitutionReference, source_system=short, reference=short),
    ),
)
requests = st.one_of(valid_web, valid_sms, random_requests, random_requests)
CODES: Counter[str] = Counter()


def field_violations(exc: grpc.RpcError) -> list[tuple[str, str]]:
    """(field, rule) of each google.rpc.BadRequest field violation of a refusal."""
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    found: list[tuple[str, str]] = []
    for detail in status.details if status is not None else []:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found += [(v.field, v.description) for v in bad.field_violations]
    return found


def test_only_documented_statuses_and_intake_stays_serving(
    stack: Stack,
    mongo: MongoClient,  # type: ignore[type-arg]
) -> None:
    complaints = mongo["lapor_intake"]["complaints"]
    before = complaints.count_documents({})
    stored: set[str] = set()
    address = stack.services["intake"].grpc_address
    stubs = {
        client: intake_stub(address, dev_api_key(client_id=client))
        for client in ("dev-console", "dev-web", "dev-sms")
    }
    stubs["none"] = intake_stub(address, "")
    stubs["wrong"] = intake_stub(address, "wrong-key-0123456789abcdefghijklmn")

    @settings(
        max_examples=3000,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        request=requests,
        client=st.sampled_from(["dev-console"] * 6 + ["dev-web", "dev-sms", "none", "wrong"]),
    )
    def submit(request: intake_pb2.SubmitComplaintRequest, client: str) -> None:
        try:
            reply = stubs[client][1].SubmitComplaint(request, timeout=10)
            code = grpc.StatusCode.OK
            if not reply.duplicate:
                stored.add(reply.tracking_id)
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            assert code in DOCUMENTED, (code, exc.details())  # type: ignore[attr-defined]
            assert exc.details()  # type: ignore[attr-defined]
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                violations = field_violations(exc)
                assert violations and all(f and rule for f, rule in violations), violations
        CODES[code.name] += 1

    try:
        submit()
    finally:
        for channel, _stub in stubs.values():
            channel.close()
    assert health_status(address) == "SERVING"
    assert CODES["OK"] > 100 and CODES["INVALID_ARGUMENT"] > 100, CODES
    # Only the accepted, new reports were stored: a refusal left nothing behind.
    assert complaints.count_documents({}) == before + len(stored)
    assert complaints.count_documents({"_id": {"$in": sorted(stored)}}) == len(stored)

"""Bad input gets INVALID_ARGUMENT naming the field and the rule; nothing is stored or published."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from lapor.v1 import common_pb2, intake_pb2
from pymongo import MongoClient

from services.common.topics import COMPLAINTS_RECEIVED
from services.stack.supervisor import Stack
from tests.support import intake_stub, marker, read_topic, submit_request

CASES = [
    ({"title": ""}, "title", "must not be empty"),
    ({"title": "   "}, "title", "must not be empty"),
    ({"body": ""}, "body", "must not be empty"),
    ({"title": "x" * 201}, "title", "at most 200"),
    ({"channel": 0}, "channel", "must be one of"),
    ({"channel": 42}, "channel", "must be one of"),
    ({"privacy": 0}, "privacy", "must be one of"),
    ({"privacy": 9}, "privacy", "must be one of"),
    ({"classification": 0}, "classification", "must be one of"),
    ({"region_code": ""}, "region_code", "must not be empty"),
    ({"region_code": "Bali"}, "region_code", "Kemendagri code"),
    ({"region_code": "51.99"}, "region_code", "not a province or regency/city"),
    ({"idempotency_key": "spaces are bad"}, "idempotency_key", "characters"),
]


def tagged(tag: str, override: dict) -> intake_pb2.SubmitComplaintRequest:  # type: ignore[type-arg]
    """The request of a case, carrying `tag` in its title and its body: each case changes
    at most one of them, so the tag is in every request, where the checks look for it."""
    request = submit_request(
        **{"title": f"Jalan rusak {tag}", "body": f"laporan {tag}", **override}
    )
    assert tag in request.title or tag in request.body
    return request


@pytest.mark.parametrize(("override", "field", "rule"), CASES)
def test_refused_with_field_violation(
    stack: Stack, mongo: MongoClient, override: dict, field: str, rule: str
) -> None:  # type: ignore[type-arg]
    tag = marker()
    request = tagged(tag, override)
    channel, stub = intake_stub(stack.services["intake"].grpc_address)
    with channel, pytest.raises(grpc.RpcError) as info:
        stub.SubmitComplaint(request, timeout=5)
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert field in err.details() and rule in err.details()  # type: ignore[attr-defined]
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert any(v.field == field and rule in v.description for v in bad.field_violations)
    stored = {"$or": [{"title": {"$regex": tag}}, {"body": {"$regex": tag}}]}
    assert mongo["lapor_intake"]["complaints"].count_documents(stored) == 0


SMS = common_pb2.CHANNEL_SMS
SOCIAL = common_pb2.CHANNEL_SOCIAL_MEDIA
INSTITUTION = common_pb2.CHANNEL_INSTITUTION_SYSTEM


def sms(sender: str = "081234567890", text: str = "Jalan rusak di depan pasar") -> object:
    return intake_pb2.SmsMessage(sender=sender, text=text)


def post(**fields: str) -> object:
    return intake_pb2.SocialMediaPost(
        **{"platform": "x", "handle": "@warga", "post_id": "1790001", **fields}
    )


def origin(**fields: str) -> object:
    return intake_pb2.InstitutionReference(
        **{"source_system": "aduan-buleleng", "reference": "A/17", **fields}
    )


def contact(**fields: str) -> object:
    return intake_pb2.ReporterContact(**fields)


CHANNEL_CASES = [
    ({"channel": SMS, "body": ""}, "sms", "is required for channel sms"),
    ({"channel": SMS, "body": "", "sms": sms(sender="12345")}, "sms.sender", ""),
    ({"channel": SMS, "body": "", "sms": sms(text="  ")}, "sms.text", "must not be empty"),
    ({"channel": SMS, "body": "", "sms": sms(text="x" * 2000)}, "sms.text", "concatenated SMS"),
    ({"channel": SMS, "sms": sms()}, "body", "must be empty for channel sms"),
    (
        {"channel": SMS, "body": "", "sms": sms(), "reporter": contact(phone="081299999999")},
        "reporter.phone",
        "the SMS sender",
    ),
    ({"sms": sms()}, "sms", "is only for channel sms"),
    ({"channel": SOCIAL}, "social_media", "is required for channel social_media"),
    ({"channel": SOCIAL, "social_media": post(platform="X!")}, "social_media.platform", "a-z"),
    ({"channel": SOCIAL, "social_media": post(handle="@warga!")}, "social_media.handle", "1-64"),
    ({"channel": SOCIAL, "social_media": post(post_id="")}, "social_media.post_id", "1-128"),
    ({"channel": INSTITUTION}, "institution_reference", "is required for channel"),
    (
        {"channel": INSTITUTION, "institution_reference": origin(source_system="Bad System")},
        "institution_reference.source_system",
        "lower case",
    ),
    (
        {"channel": INSTITUTION, "institution_reference": origin(reference="")},
        "institution_reference.reference",
        "printable ASCII",
    ),
    ({"reporter": contact(phone="12")}, "reporter.phone", ""),
    ({"reporter": contact(email="bukan-email")}, "reporter.email", "is not an e-mail address"),
    ({"reporter": contact(name="n" * 201)}, "reporter.name", "at most 200"),
]


@pytest.mark.parametrize(("override", "field", "rule"), CHANNEL_CASES)
def test_channel_rules_are_refused_with_a_field_violation_and_store_nothing(
    stack: Stack, mongo: MongoClient, override: dict, field: str, rule: str
) -> None:  # type: ignore[type-arg]
    complaints = mongo["lapor_intake"]["complaints"]
    before = complaints.count_documents({})
    channel, stub = intake_stub(stack.services["intake"].grpc_address)
    with channel, pytest.raises(grpc.RpcError) as info:
        stub.SubmitComplaint(submit_request(**override), timeout=5)
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()  # type: ignore[attr-defined]
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    violations = [(v.field, v.description) for v in bad.field_violations]
    assert any(f == field and rule in d for f, d in violations), violations
    assert all(f and d for f, d in violations)
    assert complaints.count_documents({}) == before


def test_refused_requests_publish_nothing(stack: Stack) -> None:
    tag = marker()
    channel, stub = intake_stub(stack.services["intake"].grpc_address)
    with channel:
        for override, _field, _rule in CASES:
            with pytest.raises(grpc.RpcError):
                stub.SubmitComplaint(tagged(tag, override), timeout=5)
        ok = stub.SubmitComplaint(submit_request(body=f"diterima {tag}"), timeout=5)
    from tests.support import eventually

    messages = eventually(
        lambda: [
            v
            for k, v in read_topic(stack.bootstrap_servers, COMPLAINTS_RECEIVED)
            if k == ok.tracking_id.encode()
        ],
        what="the accepted report's event",
    )
    assert len(messages) == 1
    everything = read_topic(stack.bootstrap_servers, COMPLAINTS_RECEIVED)
    assert sum(1 for _k, v in everything if v and tag.encode() in v) == 1


def test_oversized_message_is_refused_by_the_server_limit(stack: Stack) -> None:
    channel, stub = intake_stub(stack.services["intake"].grpc_address)
    with channel, pytest.raises(grpc.RpcError) as info:
        stub.SubmitComplaint(submit_request(body="x" * (5 * 1024 * 1024)), timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    from services.stack.supervisor import health_status

    assert health_status(stack.services["intake"].grpc_address) == "SERVING"

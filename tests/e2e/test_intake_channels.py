"""Every channel over gRPC against the real processes: authentication, channel fields,
acknowledgements, follow-up codes and raising privacy."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from lapor.v1 import common_pb2, events_pb2, intake_pb2
from pymongo import MongoClient

from services.common.topics import REPORTER_ACTIONS
from services.intake.followup import FIELD, verify_follow_up_code
from services.intake.sms import fits_one_sms
from services.stack.supervisor import Stack
from tests.support import dev_api_key, eventually, intake_stub, marker, read_topic, submit_request

Mongo = MongoClient  # type: ignore[type-arg]


def complaints(mongo: Mongo) -> object:
    return mongo["lapor_intake"]["complaints"]


def routed(stub: object, tracking_id: str) -> intake_pb2.Complaint | None:
    c = stub.GetComplaint(intake_pb2.GetComplaintRequest(tracking_id=tracking_id), timeout=5)  # type: ignore[attr-defined]
    return c if c.institution.id else None


def code_of(call: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return call.value.code()  # type: ignore[attr-defined, no-any-return]


# -- authentication -----------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "not-a-key-of-any-client-0123456789"])
def test_without_a_valid_key_nothing_is_stored(stack: Stack, mongo: Mongo, key: str) -> None:
    tag = marker()
    channel, stub = intake_stub(stack.services["intake"].grpc_address, key)
    with channel, pytest.raises(grpc.RpcError) as call:
        stub.SubmitComplaint(submit_request(body=f"tanpa kunci {tag}"), timeout=5)
    assert code_of(call) == grpc.StatusCode.UNAUTHENTICATED
    assert "x-api-key" in (call.value.details() or "")  # type: ignore[attr-defined]
    assert complaints(mongo).count_documents({"body": {"$regex": tag}}) == 0  # type: ignore[attr-defined]


def test_a_client_may_not_claim_another_channel(stack: Stack, mongo: Mongo) -> None:
    tag = marker()
    key = dev_api_key(client_id="dev-web")
    channel, stub = intake_stub(stack.services["intake"].grpc_address, key)
    with channel, pytest.raises(grpc.RpcError) as call:
        stub.SubmitComplaint(
            submit_request(
                channel=common_pb2.CHANNEL_MOBILE_APP, body=f"aplikasi {tag}", title="Pungli"
            ),
            timeout=5,
        )
    assert code_of(call) == grpc.StatusCode.PERMISSION_DENIED
    assert "channel" in (call.value.details() or "")  # type: ignore[attr-defined]
    assert complaints(mongo).count_documents({"body": {"$regex": tag}}) == 0  # type: ignore[attr-defined]


def test_tracking_needs_no_key(stack: Stack) -> None:
    channel, stub = intake_stub(stack.services["intake"].grpc_address)
    with channel:
        tracking_id = stub.SubmitComplaint(submit_request(), timeout=5).tracking_id
    anonymous_channel, anonymous = intake_stub(stack.services["intake"].grpc_address, "")
    with anonymous_channel:
        c = anonymous.GetComplaint(
            intake_pb2.GetComplaintRequest(tracking_id=tracking_id), timeout=5
        )
    assert c.tracking_id == tracking_id


# -- one test per channel, each with its own channel client ----------------------------


def channel_stub(stack: Stack, client_id: str) -> tuple[grpc.Channel, object]:
    return intake_stub(stack.services["intake"].grpc_address, dev_api_key(client_id=client_id))


@pytest.mark.parametrize(
    ("client_id", "channel_pb"),
    [("dev-web", common_pb2.CHANNEL_WEB), ("dev-mobile-app", common_pb2.CHANNEL_MOBILE_APP)],
)
def test_web_and_mobile_app(stack: Stack, client_id: str, channel_pb: int) -> None:
    channel, stub = channel_stub(stack, client_id)
    with channel:
        reply = stub.SubmitComplaint(  # type: ignore[attr-defined]
            submit_request(channel=channel_pb, title=f"Pungli di kelurahan {marker()}"), timeout=5
        )
        assert reply.tracking_id and reply.follow_up_code and not reply.acknowledgement
        c = eventually(lambda: routed(stub, reply.tracking_id), what="routed")
    assert c.channel == channel_pb


def test_sms_sender_normalised_text_becomes_the_report_and_ack_fits_one_sms(
    stack: Stack, mongo: Mongo
) -> None:
    tag = marker()
    text = f"Jalan di depan SD 3 Singaraja berlubang besar, sudah 2 bulan. {tag}"
    channel, stub = channel_stub(stack, "dev-sms")
    with channel:
        reply = stub.SubmitComplaint(  # type: ignore[attr-defined]
            submit_request(
                channel=common_pb2.CHANNEL_SMS,
                privacy=common_pb2.PRIVACY_CONFIDENTIAL,
                title="",
                body="",
                sms=intake_pb2.SmsMessage(sender="+62 812-3456-7001", text=text),
            ),
            timeout=5,
        )
        eventually(lambda: routed(stub, reply.tracking_id), what="routed")
    assert reply.tracking_id in reply.acknowledgement and fits_one_sms(reply.acknowledgement)
    doc = complaints(mongo).find_one({"_id": reply.tracking_id})  # type: ignore[attr-defined]
    assert doc["body"] == text and doc["title"].startswith("Jalan di depan SD 3")
    assert doc["reachable"] and doc["reporter"]["ct"]  # the sender, sealed
    assert "3456" not in repr(doc)


@pytest.mark.parametrize(
    ("sms", "field"),
    [
        (intake_pb2.SmsMessage(sender="12345", text="Lampu mati"), "sms.sender"),
        (intake_pb2.SmsMessage(sender="081234567001", text=""), "sms.text"),
        (intake_pb2.SmsMessage(sender="081234567001", text="x" * 1531), "sms.text"),
        (intake_pb2.SmsMessage(sender="081234567001", text="ą" * 671), "sms.text"),
    ],
)
def test_sms_rules(stack: Stack, sms: intake_pb2.SmsMessage, field: str) -> None:
    channel, stub = channel_stub(stack, "dev-sms")
    with channel, pytest.raises(grpc.RpcError) as call:
        stub.SubmitComplaint(  # type: ignore[attr-defined]
            submit_request(channel=common_pb2.CHANNEL_SMS, title="", body="", sms=sms), timeout=5
        )
    assert code_of(call) == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (call.value.details() or "")  # type: ignore[attr-defined]


def test_sms_without_its_fields_is_refused(stack: Stack) -> None:
    channel, stub = channel_stub(stack, "dev-sms")
    with channel, pytest.raises(grpc.RpcError) as call:
        stub.SubmitComplaint(submit_request(channel=common_pb2.CHANNEL_SMS), timeout=5)  # type: ignore[attr-defined]
    assert code_of(call) == grpc.StatusCode.INVALID_ARGUMENT
    assert "sms: is required for channel sms" in (call.value.details() or "")  # type: ignore[attr-defined]


def test_social_media_post_is_its_own_idempotency_key(stack: Stack, mongo: Mongo) -> None:
    post = intake_pb2.SocialMediaPost(platform="x", handle="@warga_bali", post_id=marker())
    request = submit_request(
        channel=common_pb2.CHANNEL_SOCIAL_MEDIA,
        idempotency_key="",
        social_media=post,
        title=f"Sampah menumpuk {marker()}",
    )
    channel, stub = channel_stub(stack, "dev-social-media")
    with channel:
        first = stub.SubmitComplaint(request, timeout=5)  # type: ignore[attr-defined]
        again = stub.SubmitComplaint(request, timeout=5)  # type: ignore[attr-defined]
    assert again.tracking_id == first.tracking_id and again.duplicate
    assert first.tracking_id in first.acknowledgement and fits_one_sms(first.acknowledgement)
    assert first.follow_up_code not in first.acknowledgement  # a reply may be public
    doc = complaints(mongo).find_one({"_id": first.tracking_id})  # type: ignore[attr-defined]
    assert "warga_bali" not in repr(doc) and post.post_id not in repr(doc)
    # both codes work: the retry's answer carried a new one
    assert verify_follow_up_code(doc[FIELD], first.follow_up_code)
    assert verify_follow_up_code(doc[FIELD], again.follow_up_code)
    # A post id is public: another channel client sending it names the report, no code.
    other_channel, other = channel_stub(stack, "dev-console")
    with other_channel:
        replayed = other.SubmitComplaint(request, timeout=5)  # type: ignore[attr-defined]
    assert replayed.tracking_id == first.tracking_id and replayed.duplicate
    assert replayed.follow_up_code == ""
    stored = complaints(mongo).find_one({"_id": first.tracking_id})  # type: ignore[attr-defined]
    assert len(stored[FIELD]) == len(doc[FIELD])  # no code was added for it


def test_institution_reference_twice_is_the_same_report(stack: Stack, mongo: Mongo) -> None:
    ref = intake_pb2.InstitutionReference(source_system="pemkab-buleleng-aduan", reference=marker())
    request = submit_request(
        channel=common_pb2.CHANNEL_INSTITUTION_SYSTEM, institution_reference=ref
    )
    channel, stub = channel_stub(stack, "dev-institution-system")
    with channel:
        first = stub.SubmitComplaint(request, timeout=5)  # type: ignore[attr-defined]
        other_key = submit_request(
            channel=common_pb2.CHANNEL_INSTITUTION_SYSTEM, institution_reference=ref
        )
        again = stub.SubmitComplaint(other_key, timeout=5)  # type: ignore[attr-defined]
        assert again.tracking_id == first.tracking_id and again.duplicate
        changed = submit_request(
            channel=common_pb2.CHANNEL_INSTITUTION_SYSTEM,
            institution_reference=ref,
            body="Isi yang lain sama sekali.",
        )
        with pytest.raises(grpc.RpcError) as call:
            stub.SubmitComplaint(changed, timeout=5)  # type: ignore[attr-defined]
        eventually(lambda: routed(stub, first.tracking_id), what="routed")
    assert code_of(call) == grpc.StatusCode.INVALID_ARGUMENT
    assert "institution_reference.reference" in (call.value.details() or "")  # type: ignore[attr-defined]
    assert complaints(mongo).count_documents({"_id": first.tracking_id}) == 1  # type: ignore[attr-defined]
    doc = complaints(mongo).find_one({"_id": first.tracking_id})  # type: ignore[attr-defined]
    assert ref.reference not in repr(doc)  # kept only as a keyed hash: it leads to the reporter


def test_concurrent_retries_over_grpc_store_one_report(stack: Stack, mongo: Mongo) -> None:
    request = submit_request(title=f"Retry badai {marker()}")
    channel, stub = intake_stub(stack.services["intake"].grpc_address)
    with channel, ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda _: stub.SubmitComplaint(request, timeout=10), range(48)))
    assert len({r.tracking_id for r in replies}) == 1
    assert sum(not r.duplicate for r in replies) == 1
    assert complaints(mongo).count_documents({"title": request.title}) == 1  # type: ignore[attr-defined]


def test_same_reporter_same_text_again_gets_the_first_tracking_id(stack: Stack) -> None:
    phone = f"0813{int(marker(), 16) % 10**8:08d}"
    contact = intake_pb2.ReporterContact(name="Wayan", phone=phone)
    title = f"Antrean e-KTP {marker()}"
    channel, stub = intake_stub(stack.services["intake"].grpc_address)
    with channel:
        first = stub.SubmitComplaint(  # type: ignore[attr-defined]
            submit_request(title=title, privacy=common_pb2.PRIVACY_CONFIDENTIAL, reporter=contact),
            timeout=5,
        )
        # a new idempotency key and the number written differently: still the same reporter
        contact.phone = "+62 " + phone[1:4] + "-" + phone[4:]
        again = stub.SubmitComplaint(  # type: ignore[attr-defined]
            submit_request(title=title, privacy=common_pb2.PRIVACY_CONFIDENTIAL, reporter=contact),
            timeout=5,
        )
        other = stub.SubmitComplaint(  # type: ignore[attr-defined]
            submit_request(
                title=f"{title} lain", privacy=common_pb2.PRIVACY_CONFIDENTIAL, reporter=contact
            ),
            timeout=5,
        )
    assert again.tracking_id == first.tracking_id and again.duplicate
    assert again.follow_up_code == "" and first.follow_up_code  # a typed number proves nothing
    assert other.tracking_id != first.tracking_id and not other.duplicate


# -- follow-up codes and privacy -----------------------------------------------------------


def raise_privacy(stub: object, tracking_id: str, code: str, privacy: int) -> object:
    return stub.RaisePrivacy(  # type: ignore[attr-defined]
        intake_pb2.RaisePrivacyRequest(
            tracking_id=tracking_id, follow_up_code=code, privacy=privacy
        ),
        timeout=5,
    )


def test_privacy_is_raised_with_the_code_never_lowered(stack: Stack, mongo: Mongo) -> None:
    contact = intake_pb2.ReporterContact(name="Komang", email=f"{marker()}@contoh.id")
    channel, stub = intake_stub(stack.services["intake"].grpc_address)
    with channel:
        reply = stub.SubmitComplaint(submit_request(reporter=contact), timeout=5)
        tid, code = reply.tracking_id, reply.follow_up_code
        public = stub.GetComplaint(intake_pb2.GetComplaintRequest(tracking_id=tid), timeout=5)
        assert public.title
        with pytest.raises(grpc.RpcError) as wrong:
            raise_privacy(stub, tid, "AAAA-BBBB-CCCC", common_pb2.PRIVACY_CONFIDENTIAL)
        assert code_of(wrong) == grpc.StatusCode.PERMISSION_DENIED
        raised = raise_privacy(stub, tid, code.lower(), common_pb2.PRIVACY_CONFIDENTIAL)
        assert raised.changed  # type: ignore[attr-defined]
        hidden = stub.GetComplaint(intake_pb2.GetComplaintRequest(tracking_id=tid), timeout=5)
        assert hidden.privacy == common_pb2.PRIVACY_CONFIDENTIAL and not hidden.title
        assert not raise_privacy(stub, tid, code, common_pb2.PRIVACY_CONFIDENTIAL).changed  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as lower:
            raise_privacy(stub, tid, code, common_pb2.PRIVACY_PUBLIC)
        assert code_of(lower) == grpc.StatusCode.FAILED_PRECONDITION
        assert complaints(mongo).find_one({"_id": tid})["reporter"]  # type: ignore[attr-defined]
        assert raise_privacy(stub, tid, code, common_pb2.PRIVACY_ANONYMOUS).changed  # type: ignore[attr-defined]
    doc = complaints(mongo).find_one({"_id": tid})  # type: ignore[attr-defined]
    assert doc["privacy"] == "anonymous" and "reporter" not in doc and not doc["reachable"]

    def actions() -> list[events_pb2.ReporterAction]:
        found = [
            events_pb2.ReporterAction.FromString(v or b"")
            for k, v in read_topic(stack.bootstrap_servers, REPORTER_ACTIONS)
            if k == tid.encode()
        ]
        return found if len(found) >= 2 else []

    events = eventually(actions, what="two privacy_raised events")
    assert [(e.action, e.privacy) for e in events] == [
        ("privacy_raised", "confidential"),
        ("privacy_raised", "anonymous"),
    ]
    assert all(contact.email.encode() not in e.SerializeToString() for e in events)


@pytest.mark.parametrize(
    ("tracking_id", "code", "privacy", "status"),
    [
        ("nonsense", "AAAA-BBBB-CCCC", common_pb2.PRIVACY_CONFIDENTIAL, "INVALID_ARGUMENT"),
        ("0000-0000-000", "", common_pb2.PRIVACY_CONFIDENTIAL, "INVALID_ARGUMENT"),
        ("0000-0000-000", "AAAA-BBBB-CCCC", 0, "INVALID_ARGUMENT"),
        ("0000-0000-000", "AAAA-BBBB-CCCC", common_pb2.PRIVACY_CONFIDENTIAL, "PERMISSION_DENIED"),
    ],
)
def test_raise_privacy_bad_requests(
    stack: Stack, tracking_id: str, code: str, privacy: int, status: str
) -> None:
    channel, stub = intake_stub(stack.services["intake"].grpc_address, "")
    with channel, pytest.raises(grpc.RpcError) as call:
        raise_privacy(stub, tracking_id, code, privacy)
    assert code_of(call).name == status

"""The privacy leak test: confidential and anonymous reporters with distinctive names,
numbers, e-mail addresses and handles go through the whole pipeline, and ask for access
codes by contact (their own contact, written other ways, and a stranger's); then every
stored document of every database, every message on every topic, every service's log and
every /metrics endpoint is searched for them and for the access token. Only the encrypted
identity may hold the contacts."""

from __future__ import annotations

import urllib.request

import bson
import grpc
from lapor.v1 import common_pb2, intake_pb2, reporter_pb2, reporter_pb2_grpc
from pymongo import MongoClient

from services.common.topics import ALL_TOPICS
from services.stack.supervisor import SERVICES, Stack
from tests.support import dev_api_key, eventually, intake_stub, marker, read_topic, submit_request

Mongo = MongoClient  # type: ignore[type-arg]


def needles_for(tag: str, digits: str) -> dict[str, list[str]]:
    national = f"0812{digits}"
    return {
        "name": [f"Raden Ayu Sulistyaningsih {tag}", f"Sulistyaningsih {tag}"],
        "phone": [national, f"+62812{digits}", f"62812{digits}", f"812{digits}", f"0812-{digits}"],
        "email": [f"pelapor.{tag}@bocor.example", f"pelapor.{tag}"],
        "handle": [f"rahasia_{tag}"],
        # a stranger's contact, tried on the reports: never stored, logged or published
        "stranger": [f"0857{digits}", f"+62857{digits}", f"orang.lain.{tag}@bocor.example"],
    }


def submissions(tag: str, digits: str) -> list[tuple[str, intake_pb2.SubmitComplaintRequest]]:
    n = needles_for(tag, digits)
    contact = intake_pb2.ReporterContact(
        name=n["name"][0], phone=n["phone"][0], email=n["email"][0]
    )
    body = f"Petugas meminta uang untuk membuat KK. Kode {tag}."
    out = []
    for privacy in (common_pb2.PRIVACY_CONFIDENTIAL, common_pb2.PRIVACY_ANONYMOUS):
        out.append(("dev-web", submit_request(privacy=privacy, reporter=contact, body=body)))
        out.append(
            (
                "dev-sms",
                submit_request(
                    channel=common_pb2.CHANNEL_SMS,
                    privacy=privacy,
                    title="",
                    body="",
                    sms=intake_pb2.SmsMessage(sender=n["phone"][2], text=f"{body} sms {privacy}"),
                ),
            )
        )
        out.append(
            (
                "dev-social-media",
                submit_request(
                    channel=common_pb2.CHANNEL_SOCIAL_MEDIA,
                    privacy=privacy,
                    body=f"{body} sosmed {privacy}",
                    social_media=intake_pb2.SocialMediaPost(
                        platform="x", handle=f"@{n['handle'][0]}", post_id=f"p{tag}{privacy}"
                    ),
                ),
            )
        )
    return out


def access_by_contact(stack: Stack, mongo: Mongo, ids: list[str], n: dict[str, list[str]]) -> str:
    """The reporter of the confidential web report asks for codes with their own contact
    (other spellings) and a stranger's, on it and on the anonymous web report; verifies the
    code and reads the report with the token. Returns the token."""
    confidential, anonymous = ids[0], ids[3]
    inbox = mongo["lapor_intake"]["access_code_inbox"]
    with grpc.insecure_channel(stack.services["intake"].grpc_address) as channel:
        reporter = reporter_pb2_grpc.ReporterServiceStub(channel)
        for tid, contact in [
            (confidential, n["stranger"][0]),
            (confidential, n["stranger"][2]),
            (confidential, n["email"][0].upper()),
            (anonymous, n["phone"][1]),
        ]:
            reporter.RequestAccessCode(
                reporter_pb2.RequestAccessCodeRequest(tracking_id=tid, contact=contact),
                timeout=5,
            )
        sent = eventually(
            lambda: list(inbox.find({"tracking_id": confidential})), what="the access code"
        )
        issued = reporter.VerifyAccessCode(
            reporter_pb2.VerifyAccessCodeRequest(
                tracking_id=confidential, contact=n["email"][0], access_code=sent[-1]["code"]
            ),
            timeout=5,
        )
        mine = reporter.GetMyReport(
            reporter_pb2.GetMyReportRequest(
                tracking_id=confidential, access_token=issued.access_token
            ),
            timeout=5,
        )
        assert mine.view.tracking_id == confidential
        assert inbox.count_documents({"tracking_id": {"$in": ids[1:]}}) == 0
        return issued.access_token


def test_no_identity_anywhere_but_the_encrypted_field(stack: Stack, mongo: Mongo) -> None:
    tag, digits = marker(), f"{int(marker(), 16) % 10**8:08d}"
    ids: list[str] = []
    for client_id, request in submissions(tag, digits):
        channel, stub = intake_stub(
            stack.services["intake"].grpc_address, dev_api_key(client_id=client_id)
        )
        with channel:
            ids.append(stub.SubmitComplaint(request, timeout=5).tracking_id)
    channel, stub = intake_stub(stack.services["intake"].grpc_address)
    with channel:

        def done(tid: str) -> bool:
            c = stub.GetComplaint(intake_pb2.GetComplaintRequest(tracking_id=tid), timeout=5)
            return bool(c.institution.id and c.deadlines and c.notifications)

        eventually(lambda: all(done(t) for t in ids), timeout=60, what="the pipeline, done")
    token = access_by_contact(stack, mongo, ids, needles_for(tag, digits))
    needles = [(kind, v) for kind, values in needles_for(tag, digits).items() for v in values]
    needles.append(("access token", token))
    found: list[str] = []

    def search(where: str, blob: bytes) -> None:
        lowered = blob.lower()
        found.extend(
            f"{kind} {value!r} in {where}"
            for kind, value in needles
            if value.lower().encode() in lowered
        )

    documents = 0
    for db_name in mongo.list_database_names():
        for coll_name in mongo[db_name].list_collection_names():
            for doc in mongo[db_name][coll_name].find():
                documents += 1
                if doc.get("_id") in ids and "reporter" in doc:
                    sealed = doc.pop("reporter")  # the one place the identity may be: sealed
                    assert set(sealed) == {"kid", "nonce", "ct"}
                search(f"{db_name}.{coll_name} {doc.get('_id')}", bson.encode(doc))
    confidential = mongo["lapor_intake"]["complaints"].count_documents(
        {"_id": {"$in": ids}, "reporter.ct": {"$exists": True}}
    )
    anonymous = mongo["lapor_intake"]["complaints"].count_documents(
        {"_id": {"$in": ids}, "privacy": "anonymous", "reporter": {"$exists": True}}
    )
    assert (confidential, anonymous) == (3, 0)
    messages = 0
    for topic in ALL_TOPICS:
        for key, value in read_topic(stack.bootstrap_servers, topic):
            messages += 1
            search(f"topic {topic}", (key or b"") + b"|" + (value or b""))
    for name in SERVICES:
        search(f"{name} log", stack.read_log(name).encode())
        url = f"http://127.0.0.1:{stack.services[name].ports['metrics']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            search(f"{name} /metrics", response.read())
    assert documents > len(ids) and messages >= len(ids)
    assert found == []

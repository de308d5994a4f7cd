"""notify tells the reporter what the institution did, once per action."""

from __future__ import annotations

import uuid

from confluent_kafka import Producer
from lapor.v1 import common_pb2, events_pb2
from pymongo import MongoClient

from services.common.topics import CASE_ACTIONS
from services.stack.supervisor import Stack
from tests.support import eventually


def publish_action(stack: Stack, tracking_id: str, action: str, note: str, times: int = 1) -> str:
    event_id = uuid.uuid4().hex
    event = events_pb2.CaseAction(
        meta=common_pb2.EventMeta(event_id=event_id, tracking_id=tracking_id, producer="test"),
        action=action,
        actor_role="officer",
        institution=common_pb2.Institution(
            id="pemda-51.08/disdukcapil", name="Disdukcapil Buleleng"
        ),
        public_note=note,
    )
    producer = Producer({"bootstrap.servers": stack.bootstrap_servers})
    for _ in range(times):  # a redelivery: the same event twice
        producer.produce(CASE_ACTIONS, event.SerializeToString(), key=tracking_id.encode())
    producer.flush(10)
    return event_id


def test_a_response_reaches_the_reporter_once(stack: Stack, mongo: MongoClient) -> None:  # type: ignore[type-arg]
    tracking_id = f"T-{uuid.uuid4().hex[:8]}"
    publish_action(stack, tracking_id, "responded", "KTP Anda siap diambil Senin.", times=2)
    publish_action(stack, tracking_id, "accepted", "")
    inbox = mongo["lapor_notify"]["inbox"]
    delivered = eventually(
        lambda: list(inbox.find({"tracking_id": tracking_id})),
        what="the response notification in the inbox",
    )
    notes = mongo["lapor_notify"]["notifications"]
    eventually(
        lambda: notes.count_documents({"tracking_id": tracking_id, "state": "sent"}) == 1,
        what="sent",
    )
    assert [d["template"] for d in delivered] == ["institution_responded"]
    assert "siap diambil" in delivered[0]["text"]
    assert notes.count_documents({"tracking_id": tracking_id}) == 1  # 'accepted' is not told

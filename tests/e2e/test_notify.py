"""notify tells the reporter what the institution did, once per action."""

from __future__ import annotations

import uuid

from confluent_kafka import Producer
from lapor.v1 import common_pb2, events_pb2
from pymongo import MongoClient

from services.common.topics import CASE_ACTIONS, NOTIFICATIONS
from services.stack.supervisor import Stack
from tests.support import eventually, read_topic


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
    responded = publish_action(
        stack, tracking_id, "responded", "KTP Anda siap diambil Senin.", times=2
    )
    publish_action(stack, tracking_id, "accepted", "")
    # Barrier: an action the reporter is told of, after the others on the same key (so the
    # same partition: consumed after them). Once it is sent and recorded, the redelivered
    # 'responded' and the 'accepted' have been handled.
    resolved = publish_action(stack, tracking_id, "resolved", "Sudah diserahkan.")
    inbox = mongo["lapor_notify"]["inbox"]
    notes = mongo["lapor_notify"]["notifications"]
    eventually(
        lambda: notes.count_documents(
            {"tracking_id": tracking_id, "template": "complaint_resolved", "state": "sent"}
        ),
        what="the resolution sent and recorded",
    )
    delivered = {d["_id"]: d for d in inbox.find({"tracking_id": tracking_id})}
    # once each, under the ids the events give them; 'accepted' is not told
    assert sorted(delivered) == sorted(
        [f"{responded}:institution_responded", f"{resolved}:complaint_resolved"]
    )
    assert "siap diambil" in delivered[f"{responded}:institution_responded"]["text"]
    recorded = {d["_id"]: d["state"] for d in notes.find({"tracking_id": tracking_id})}
    assert recorded == {
        f"{responded}:institution_responded": "sent",
        f"{resolved}:complaint_resolved": "sent",
    }

    # The NotificationRecorded events follow in the order they were stored (one key, one
    # queue): once the resolution's is out, a second one for the response would be too.
    def events() -> list[str] | None:
        found = [
            events_pb2.NotificationRecorded.FromString(v).template
            for k, v in read_topic(stack.bootstrap_servers, NOTIFICATIONS)
            if k == tracking_id.encode() and v is not None
        ]
        return found if "complaint_resolved" in found else None

    assert eventually(events, what="the resolution's NotificationRecorded") == [
        "institution_responded",
        "complaint_resolved",
    ]

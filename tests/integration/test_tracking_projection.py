"""The tracking view against the real database: late and repeated events."""

from __future__ import annotations

from datetime import UTC, datetime

from lapor.v1 import common_pb2, events_pb2

from services.common.kafka import Delivery
from services.intake.projection import TrackingProjection, routed_update


def routed(tracking_id: str, event_id: str) -> Delivery[events_pb2.ComplaintRouted]:
    e = events_pb2.ComplaintRouted(
        meta=common_pb2.EventMeta(event_id=event_id, tracking_id=tracking_id),
        institution=common_pb2.Institution(id="pemda-51.08", name="Pemerintah Kabupaten Buleleng"),
        rule="region-government:51.08",
    )
    e.meta.occurred_at.FromDatetime(datetime.now(UTC))
    return Delivery(e, tracking_id, 0, 0)


async def test_a_late_routed_event_does_not_roll_the_case_back(db: object) -> None:
    complaints = db["complaints"]  # type: ignore[index]
    await complaints.insert_many(
        [
            {"_id": "fresh", "status": "received", "history": [], "_applied": []},
            {
                "_id": "moved",
                "status": "in_progress",
                "state": "in_progress",
                "colour": "yellow",
                "institution": {"id": "pemda-51.08/dinkes", "name": "Dinas Kesehatan"},
                "history": [],
                "_applied": [],
            },
        ]
    )
    projection = TrackingProjection(complaints)
    for _ in range(2):  # the second time is a redelivery
        await projection.apply(
            "routed", [routed("fresh", "e1"), routed("moved", "e2")], routed_update
        )
    fresh = await complaints.find_one({"_id": "fresh"})
    moved = await complaints.find_one({"_id": "moved"})
    assert fresh["status"] == "routed" and fresh["institution"]["id"] == "pemda-51.08"
    assert [h["action"] for h in fresh["history"]] == ["routed"]
    assert moved["status"] == "in_progress" and moved["colour"] == "yellow"
    assert moved["institution"]["id"] == "pemda-51.08/dinkes"
    assert [h["action"] for h in moved["history"]] == ["routed"]

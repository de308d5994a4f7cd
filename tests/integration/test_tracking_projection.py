"""The tracking view against the real database: late, repeated and racing events, and the
complaint with its timeline as readers see it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from lapor.v1 import common_pb2, events_pb2

from services.common.kafka import Delivery
from services.common.metrics import EVENTS_CONSUMED
from services.intake.projection import (
    TIMELINES,
    TrackingProjection,
    escalation_update,
    notification_update,
    read_view,
    routed_update,
    sla_update,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def meta(tracking_id: str, event_id: str, at: datetime) -> common_pb2.EventMeta:
    m = common_pb2.EventMeta(event_id=event_id, tracking_id=tracking_id)
    m.occurred_at.FromDatetime(at)
    return m


def routed(
    tracking_id: str, event_id: str, at: datetime = T0, topic: str = ""
) -> Delivery[events_pb2.ComplaintRouted]:
    e = events_pb2.ComplaintRouted(
        meta=meta(tracking_id, event_id, at),
        institution=common_pb2.Institution(id="pemda-51.08", name="Pemerintah Kabupaten Buleleng"),
        rule="region-government:51.08",
        topic=topic,
    )
    return Delivery(e, tracking_id, 0, 0)


def deadlines(tracking_id: str, event_id: str, at: datetime) -> Delivery[events_pb2.SlaEvent]:
    e = events_pb2.SlaEvent(meta=meta(tracking_id, event_id, at))
    d = e.deadlines_set.deadlines.add(clock="first_response")
    d.due_at.FromDatetime(at + timedelta(days=5))
    return Delivery(e, tracking_id, 0, 0)


def notified(
    tracking_id: str, event_id: str, at: datetime
) -> Delivery[events_pb2.NotificationRecorded]:
    e = events_pb2.NotificationRecorded(
        meta=meta(tracking_id, event_id, at), template="complaint_routed", channel="sms"
    )
    return Delivery(e, tracking_id, 0, 0)


def escalated(
    tracking_id: str, event_id: str, at: datetime
) -> Delivery[events_pb2.OmbudsmanEscalation]:
    e = events_pb2.OmbudsmanEscalation(meta=meta(tracking_id, event_id, at))
    return Delivery(e, tracking_id, 0, 0)


def received(tracking_id: str) -> dict[str, object]:
    return {
        "_id": tracking_id,
        "status": "received",
        "colour": "red",
        "institution": None,
        "history": [{"at": T0 - timedelta(minutes=1), "action": "received", "actor": "intake"}],
        "deadlines": [],
        "notifications": [],
        "_applied": [],
    }


def counted(topic: str, outcome: str) -> float:
    return EVENTS_CONSUMED.labels(topic=topic, outcome=outcome)._value.get()


async def test_a_late_routed_event_does_not_roll_the_case_back(db: object) -> None:
    complaints = db["complaints"]  # type: ignore[index]
    await complaints.insert_many(
        [
            received("fresh"),
            {
                **received("moved"),
                "status": "in_progress",
                "state": "in_progress",
                "colour": "yellow",
                "institution": {"id": "pemda-51.08/dinkes", "name": "Dinas Kesehatan"},
            },
            {**received("escalated"), "status": "escalated", "escalated": True},
        ]
    )
    projection = TrackingProjection(complaints)
    events = [
        routed("fresh", "e1", topic="jalan_rusak"),
        routed("moved", "e2", topic="kesehatan"),
        routed("escalated", "e3"),
    ]
    for _ in range(2):  # the second time is a redelivery
        await projection.apply("routed", events, routed_update)
    fresh = await read_view(complaints, "fresh", {})
    moved = await read_view(complaints, "moved", {})
    late = await read_view(complaints, "escalated", {})
    assert fresh is not None and moved is not None and late is not None
    assert fresh["status"] == "routed" and fresh["colour"] == "red"
    assert fresh["institution"]["id"] == "pemda-51.08" and fresh["topic"] == "jalan_rusak"
    assert [h["action"] for h in fresh["history"]] == ["received", "routed"]
    assert moved["status"] == "in_progress" and moved["colour"] == "yellow"
    assert moved["institution"]["id"] == "pemda-51.08/dinkes"
    assert moved["topic"] == "kesehatan"  # a listing filter: set whatever the state
    assert [h["action"] for h in moved["history"]] == ["received", "routed"]
    assert late["status"] == "escalated" and late["institution"] is None


async def test_the_timeline_takes_the_frequent_events_and_readers_see_one_view(db: object) -> None:
    complaints = db["complaints"]  # type: ignore[index]
    await complaints.insert_one(received("r1"))
    before = await complaints.find_one({"_id": "r1"})
    projection = TrackingProjection(complaints)
    await projection.apply("sla", [deadlines("r1", "s1", T0 + timedelta(seconds=2))], sla_update)
    await projection.apply(
        "notifications", [notified("r1", "n1", T0 + timedelta(seconds=3))], notification_update
    )
    # deadlines and notifications leave the complaint (and its listing indexes) untouched
    assert await complaints.find_one({"_id": "r1"}) == before
    await projection.apply("routed", [routed("r1", "e1", T0 + timedelta(seconds=1))], routed_update)
    await projection.apply(
        "escalations", [escalated("r1", "x1", T0 + timedelta(days=60))], escalation_update
    )
    view = await read_view(complaints, "r1", {"_applied": 0})
    assert view is not None
    assert view["status"] == "escalated" and view["escalated"] is True
    # the reader sorts by time; stored, the complaint's lines come before the timeline's
    assert sorted(h["action"] for h in view["history"]) == sorted(
        ["received", "deadlines_set", "notified", "routed", "escalated"]
    )
    assert [d["clock"] for d in view["deadlines"]] == ["first_response"]
    assert [n["template"] for n in view["notifications"]] == ["complaint_routed"]
    timeline = await db[TIMELINES].find_one({"_id": "r1"})  # type: ignore[index]
    assert timeline is not None and "reporter" not in timeline
    assert set(timeline) == {"_id", "_applied", "history", "deadlines", "overdue", "notifications"}


async def test_redeliveries_in_a_mixed_batch_are_counted_and_add_nothing(db: object) -> None:
    complaints = db["complaints"]  # type: ignore[index]
    await complaints.insert_many([received("a"), received("b"), received("c")])
    projection = TrackingProjection(complaints)
    await projection.apply("sla", [deadlines("b", "sb", T0)], sla_update)
    applied, duplicate = counted("sla", "applied"), counted("sla", "duplicate")
    # new, redelivered, new, redelivered: each refusal of the upsert restarts the rest
    batch = [
        deadlines("a", "sa", T0),
        deadlines("b", "sb", T0),
        deadlines("c", "sc", T0),
        deadlines("a", "sa", T0),
    ]
    await projection.apply("sla", batch, sla_update)
    assert counted("sla", "applied") - applied == 2
    assert counted("sla", "duplicate") - duplicate == 2
    for tracking_id in "abc":
        view = await read_view(complaints, tracking_id, {})
        assert view is not None
        assert [h["action"] for h in view["history"]] == ["received", "deadlines_set"]


async def test_first_events_racing_to_create_one_timeline_are_all_applied(db: object) -> None:
    """Three consumers' first events for the same new reports at once: none is lost. (The
    embedded database runs each upsert under its collection lock, so here the first one
    creates the timeline and the others update it; on MongoDB a losing upsert is refused
    with a duplicate key and goes the same way as a redelivery in the test above, then
    applies as a plain update.)"""
    complaints = db["complaints"]  # type: ignore[index]
    ids = [f"race-{i}" for i in range(20)]
    await complaints.insert_many([received(i) for i in ids])
    # three consumers (routed, sla, notifications) reach each new report at about once
    await asyncio.gather(
        TrackingProjection(complaints).apply(
            "routed", [routed(i, f"r-{i}") for i in ids], routed_update
        ),
        TrackingProjection(complaints).apply(
            "sla", [deadlines(i, f"s-{i}", T0) for i in ids], sla_update
        ),
        TrackingProjection(complaints).apply(
            "notifications", [notified(i, f"n-{i}", T0) for i in ids], notification_update
        ),
    )
    for tracking_id in ids:
        view = await read_view(complaints, tracking_id, {})
        assert view is not None
        assert sorted(h["action"] for h in view["history"]) == [
            "deadlines_set",
            "notified",
            "received",
            "routed",
        ]
        assert view["status"] == "routed"

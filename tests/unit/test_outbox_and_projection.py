"""Outbox update helpers (services/common/outbox.py) and the tracking-view update
builders (services/intake/projection.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lapor.v1 import common_pb2, events_pb2

from services.common.outbox import (
    OUTBOX,
    PENDING,
    OutboxMessage,
    merge_updates,
    outbox_fields,
    outbox_update,
)
from services.intake.projection import (
    ViewChange,
    escalation_update,
    notification_update,
    routed_update,
    sla_update,
)

AT = datetime(2026, 3, 2, 4, 30, tzinfo=UTC)
DUE = datetime(2026, 3, 5, 15, 59, 59, tzinfo=UTC)
M1 = OutboxMessage("e1", "lapor.complaints.received", "T1", b"\x01")
M2 = OutboxMessage("e2", "lapor.complaints.routed", "T1", b"\x02")
# Text a reporter might have written about themselves: must never reach the view's updates.
PRIVATE = ("Made Wirawan", "0812-3456-7890", "made@example.id")


def test_outbox_fields() -> None:
    assert outbox_fields([M1, M2]) == {
        OUTBOX: [
            {"id": "e1", "topic": "lapor.complaints.received", "key": "T1", "value": b"\x01"},
            {"id": "e2", "topic": "lapor.complaints.routed", "key": "T1", "value": b"\x02"},
        ],
        PENDING: True,
    }
    assert outbox_fields([]) == {OUTBOX: [], PENDING: False}
    assert (OUTBOX, PENDING) == ("_outbox", "_outbox_pending")


def test_outbox_update_appends_and_marks_pending() -> None:
    assert outbox_update([M2]) == {
        "$push": {OUTBOX: {"$each": [M2.as_doc()]}},
        "$set": {PENDING: True},
    }


def test_merge_updates_combines_operators() -> None:
    state = {"$set": {"status": "routed"}, "$push": {"history": {"action": "routed"}}}
    merged = merge_updates(state, outbox_update([M1]), {"$inc": {"n": 1}})
    assert merged == {
        "$set": {"status": "routed", PENDING: True},
        "$push": {"history": {"action": "routed"}, OUTBOX: {"$each": [M1.as_doc()]}},
        "$inc": {"n": 1},
    }
    assert state == {"$set": {"status": "routed"}, "$push": {"history": {"action": "routed"}}}
    assert merge_updates() == {}


def meta(event_id: str = "ev-1") -> common_pb2.EventMeta:
    m = common_pb2.EventMeta(event_id=event_id, tracking_id="T1", producer="test")
    m.occurred_at.FromDatetime(AT)
    return m


def strings(value: Any) -> list[str]:
    """Every key and string value anywhere inside an update."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [str(k), *strings(v)]]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def assert_private_free(update: dict[str, Any]) -> None:
    for text in strings(update):
        assert "reporter" not in text
        for private in PRIVATE:
            assert private not in text


def test_routed_update() -> None:
    e = events_pb2.ComplaintRouted(
        meta=meta(),
        institution=common_pb2.Institution(id="pemda-51.08/dlh", name="DLH Badung"),
        rule="region 51.08",
        region_code="51.08",
        holder_ancestors=["pemda-51.08"],
    )
    change = routed_update(e)
    # the history line goes to the timeline, once per event
    assert change.timeline == {
        "$push": {
            "history": {
                "at": AT,
                "action": "routed",
                "actor": "routing",
                "detail": "to DLH Badung (region 51.08)",
            }
        }
    }
    # the complaint's fields: one pipeline stage, each value only while routing has not
    # moved the case yet (a late event must not roll it back; see the integration test)
    assert isinstance(change.complaint, list) and len(change.complaint) == 1
    fields = change.complaint[0]["$set"]
    assert set(fields) == {"status", "colour", "institution"}  # no topic in the event
    literals = {name: value["$cond"][1]["$literal"] for name, value in fields.items()}
    assert literals == {
        "status": "routed",
        "colour": "red",
        "institution": {
            "id": "pemda-51.08/dlh",
            "name": "DLH Badung",
            "ancestors": ["pemda-51.08"],
        },
    }
    assert {name: value["$cond"][2] for name, value in fields.items()} == {
        "status": "$status",
        "colour": "$colour",
        "institution": "$institution",
    }
    assert_private_free(change.timeline)
    assert_private_free(fields)


def test_routed_update_sets_the_topic_whatever_the_state() -> None:
    e = events_pb2.ComplaintRouted(meta=meta(), topic="jalan_rusak")
    change = routed_update(e)
    assert isinstance(change.complaint, list)
    assert change.complaint[0]["$set"]["topic"] == {"$literal": "jalan_rusak"}


def test_sla_deadlines_set() -> None:
    e = events_pb2.SlaEvent(meta=meta(), institution_id="pemda-51.08")
    first = e.deadlines_set.deadlines.add(clock="first_response")
    first.due_at.FromDatetime(DUE)
    ombudsman = e.deadlines_set.deadlines.add(clock="ombudsman", state="warned")
    ombudsman.due_at.FromDatetime(datetime(2026, 5, 1, 15, 59, tzinfo=UTC))
    change = sla_update(e)
    assert change.complaint is None  # deadlines live in the timeline only
    assert change.follow_overdue  # the complaint's flag follows the timeline's
    assert change.condition is None  # no clocks_version: applied as before, unchecked
    update = change.timeline
    assert update is not None
    assert "$max" not in update  # nor does it change the version applied
    assert update["$set"] == {
        "deadlines": [
            {"clock": "first_response", "due_at": DUE, "state": "running"},
            {
                "clock": "ombudsman",
                "due_at": datetime(2026, 5, 1, 15, 59, tzinfo=UTC),
                "state": "warned",
            },
        ],
        "overdue": False,  # no breached clock
    }
    assert update["$push"] == {
        "history": {
            "at": AT,
            "action": "deadlines_set",
            "actor": "sla",
            "detail": "first_response by 2026-03-05 15:59 UTC, ombudsman by 2026-05-01 15:59 UTC",
        }
    }
    assert_private_free(update)


def test_sla_deadlines_set_with_a_breached_clock_is_overdue_and_versioned() -> None:
    e = events_pb2.SlaEvent(meta=meta(), clocks_version=7)
    e.deadlines_set.deadlines.add(clock="first_response", state="breached").due_at.FromDatetime(DUE)
    e.deadlines_set.deadlines.add(clock="resolution").due_at.FromDatetime(DUE)
    change = sla_update(e)
    assert change.complaint is None and change.follow_overdue
    # applied only if no newer version was, and raises the timeline's to this one
    assert change.condition == {"sla_version": {"$not": {"$gt": 7}}}
    assert change.timeline is not None
    assert change.timeline["$max"] == {"sla_version": 7}
    assert change.timeline["$set"]["overdue"] is True


def test_sla_warning_only_adds_history() -> None:
    e = events_pb2.SlaEvent(meta=meta(), warning=events_pb2.DeadlineWarning(clock="resolution"))
    assert sla_update(e) == ViewChange(
        timeline={
            "$push": {
                "history": {
                    "at": AT,
                    "action": "deadline_warning",
                    "actor": "sla",
                    "detail": "resolution",
                }
            }
        }
    )


def test_sla_warning_with_a_version_is_checked_and_recorded() -> None:
    e = events_pb2.SlaEvent(
        meta=meta(), clocks_version=3, warning=events_pb2.DeadlineWarning(clock="resolution")
    )
    change = sla_update(e)
    assert change.condition == {"sla_version": {"$not": {"$gt": 3}}}
    assert change.timeline is not None and change.timeline["$max"] == {"sla_version": 3}
    assert not change.follow_overdue and "$set" not in change.timeline  # history only


def test_sla_breach_marks_overdue() -> None:
    e = events_pb2.SlaEvent(
        meta=meta(),
        breached=events_pb2.DeadlineBreached(clock="first_response", escalation_level="unit"),
    )
    assert sla_update(e) == ViewChange(
        # the timeline's flag; the complaint's (a listing filter) follows it
        timeline={
            "$set": {"overdue": True},
            "$push": {
                "history": {
                    "at": AT,
                    "action": "deadline_breached",
                    "actor": "sla",
                    "detail": "first_response",
                }
            },
        },
        follow_overdue=True,
    )
    versioned = sla_update(
        events_pb2.SlaEvent(
            meta=meta(), clocks_version=4, breached=events_pb2.DeadlineBreached(clock="resolution")
        )
    )
    assert versioned.condition == {"sla_version": {"$not": {"$gt": 4}}}
    assert versioned.timeline is not None and versioned.timeline["$max"] == {"sla_version": 4}


def test_sla_event_without_kind_changes_nothing() -> None:
    assert sla_update(events_pb2.SlaEvent(meta=meta())) == ViewChange()


def test_notification_update() -> None:
    e = events_pb2.NotificationRecorded(
        meta=meta(), template="complaint_routed", channel="sms", cause_event_id="ev-0"
    )
    change = notification_update(e)
    assert change == ViewChange(
        timeline={
            "$push": {
                "notifications": {"template": "complaint_routed", "channel": "sms", "at": AT},
                "history": {
                    "at": AT,
                    "action": "notified",
                    "actor": "notify",
                    "detail": "complaint_routed",
                },
            }
        }
    )
    assert_private_free(change.timeline)


def test_escalation_update_copies_no_report_content() -> None:
    e = events_pb2.OmbudsmanEscalation(
        meta=meta(),
        institution=common_pb2.Institution(id="pemda-51.08", name="Pemkab Badung"),
        title=f"Laporan dari {PRIVATE[0]}",
        body=f"Hubungi saya di {PRIVATE[1]} atau {PRIVATE[2]}",
        reason="not resolved within 60 days",
    )
    change = escalation_update(e)
    assert change == ViewChange(
        # "escalated" unless routing's case actions recorded a settled state; once
        complaint=[
            {
                "$set": {
                    "status": {
                        "$cond": [
                            {"$ne": ["$escalated", True]},  # the first time only
                            {
                                "$cond": [
                                    {
                                        "$in": [
                                            {"$ifNull": ["$state", ""]},
                                            ["resolved", "closed", "archived"],
                                        ]
                                    },
                                    "$status",
                                    {"$literal": "escalated"},
                                ]
                            },
                            "$status",
                        ]
                    },
                    "escalated": {"$literal": True},
                }
            }
        ],
        timeline={
            "$push": {
                "history": {
                    "at": AT,
                    "action": "escalated",
                    "actor": "sla",
                    "detail": "handed to Ombudsman RI",
                }
            }
        },
    )
    assert_private_free(change.timeline)
    assert_private_free(change.complaint)

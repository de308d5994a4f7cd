"""Routing's refusal of a reporter action and intake's view of it, against the real database:
once per event, whatever the redeliveries, and the reporter can act again. Raising the
privacy is never refused for the case's state and never lowers the privacy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from lapor.v1 import common_pb2, events_pb2

from services.common.clock import ManualClock
from services.common.kafka import Delivery
from services.common.regions import default_regions
from services.intake.case_view import CaseActionProjection
from services.intake.reporter import ReporterActionRecord, snapshot
from services.intake.reporter_rules import ReporterCommand, check_allowed
from services.intake.reporter_store import MongoReportRepository
from services.routing.actions import CaseActions
from services.routing.case_events import CaseEventHandlers
from services.routing.case_store import CaseStore
from services.routing.domain.directory import Directory

UNIT = "pemda-51.08/disdukcapil"
AT = datetime(2026, 3, 2, 4, 30, tzinfo=UTC)


def reporter_action(event_id: str, action: str, text: str = "", privacy: str = "") -> Delivery[Any]:
    e = events_pb2.ReporterAction(
        meta=common_pb2.EventMeta(event_id=event_id, tracking_id="T1", producer="intake"),
        action=action,
        text=text,
        privacy=privacy,
    )
    return Delivery(e, "T1", 0, 0)


def case_handlers(cases: Any) -> tuple[CaseEventHandlers, list[int]]:
    """Routing's case-event handlers over `cases`, and the list each relay wake-up adds to."""
    woken: list[int] = []
    store = CaseStore(cases)
    directory = Directory.seed(default_regions())
    actions = CaseActions(store, lambda: directory, ManualClock(AT), lambda: woken.append(1))
    return CaseEventHandlers(actions, store), woken


async def test_routing_refuses_a_redelivered_reporter_action_once(db: Any) -> None:
    cases = db["cases"]
    await cases.insert_one(
        {
            "_id": "T1",
            "state": "awaiting_reporter",
            "institution_id": UNIT,
            "version": 3,
            "history": [],
            "_applied": [],
        }
    )
    handlers, woken = case_handlers(cases)
    too_long = reporter_action("r1", "info_provided", "x" * 4_500)
    for _ in range(2):  # the second time is a redelivery
        await handlers.handle_reporter([too_long])
    doc = await cases.find_one({"_id": "T1"})
    assert (doc["state"], doc["version"]) == ("awaiting_reporter", 4)
    assert [h["action"] for h in doc["history"]] == ["reporter_action_refused"]
    assert doc["history"][0]["reason"] == "info_provided: text: must be at most 4000 characters"
    [message] = doc["_outbox"]
    event = events_pb2.CaseAction.FromString(message["value"])
    assert (message["id"], event.refused_event_id, event.to_state) == (
        "r1:refused",
        "r1",
        "awaiting_reporter",
    )
    assert "r1" in doc["_applied"] and woken == [1]

    # A refusal decided on an older version of the case is not written.
    stale = {**doc, "version": 3}
    assert not await handlers._refuse(stale, reporter_action("r9", "confirmed").message, "x")

    # The next answer applies as usual.
    await handlers.handle_reporter([reporter_action("r2", "info_provided", "Nomor A-117")])
    doc = await cases.find_one({"_id": "T1"})
    assert doc["state"] == "in_progress"
    assert [h["action"] for h in doc["history"]] == ["reporter_action_refused", "info_provided"]


@pytest.mark.parametrize("state", ["closed", "archived", "in_verification"])
async def test_routing_raises_the_privacy_in_any_state_once_and_never_lowers_it(
    db: Any, state: str
) -> None:
    cases = db["cases"]
    await cases.insert_one(
        {
            "_id": "T1",
            "state": state,
            "institution_id": UNIT,
            "privacy": "PRIVACY_PUBLIC",
            "version": 5,
            "history": [],
            "_applied": [],
        }
    )
    handlers, woken = case_handlers(cases)
    anonymous = reporter_action("p2", "privacy_raised", privacy="anonymous")
    confidential = reporter_action("p1", "privacy_raised", privacy="confidential")
    # p2 twice (a redelivery), then p1, raised before p2 but delivered late
    await handlers.handle_reporter([anonymous, anonymous])
    await handlers.handle_reporter([confidential, anonymous])
    doc = await cases.find_one({"_id": "T1"})
    assert (doc["state"], doc["privacy"], doc["version"]) == (state, "PRIVACY_ANONYMOUS", 7)
    assert [(h["action"], h["actor"], h["from_state"], h["to_state"]) for h in doc["history"]] == [
        ("privacy_raised", "reporter", state, state)
    ] * 2
    events = [events_pb2.CaseAction.FromString(m["value"]) for m in doc["_outbox"]]
    assert [(e.action, e.from_state, e.to_state) for e in events] == [
        ("privacy_raised", state, state)
    ] * 2
    assert {"p1", "p2"} <= set(doc["_applied"]) and woken == [1, 1]

    # A malformed level is refused (and intake told), not applied.
    await handlers.handle_reporter([reporter_action("p3", "privacy_raised", privacy="public")])
    doc = await cases.find_one({"_id": "T1"})
    assert (doc["state"], doc["privacy"], doc["version"]) == (state, "PRIVACY_ANONYMOUS", 8)
    assert doc["history"][-1]["action"] == "reporter_action_refused"
    assert doc["history"][-1]["reason"] == (
        "privacy_raised: privacy: must be one of confidential, anonymous"
    )


def refusal(refused_event_id: str, refused_action: str, state: str) -> Delivery[Any]:
    e = events_pb2.CaseAction(
        meta=common_pb2.EventMeta(
            event_id=f"{refused_event_id}:refused", tracking_id="T1", producer="routing"
        ),
        action="reporter_action_refused",
        actor_role="system",
        from_state=state,
        to_state=state,
        reason=f"action {refused_action} is not allowed in state {state}",
        refused_event_id=refused_event_id,
        refused_action=refused_action,
    )
    e.meta.occurred_at.FromDatetime(AT)
    return Delivery(e, "T1", 0, 0)


async def test_intake_view_unblocks_the_reporter_once_and_tells_them(db: Any) -> None:
    complaints = db["complaints"]
    await complaints.insert_one(
        {"_id": "T1", "privacy": "public", "state": "resolved", "case_seq": 2, "history": []}
    )
    reports = MongoReportRepository(complaints)
    doc = await complaints.find_one({"_id": "T1"})
    reject = ReporterActionRecord("r1", "T1", "rejected", "Belum diperbaiki", 0, AT)
    assert await reports.record_action(snapshot(doc), reject, counts_as_rejection=True)
    doc = await complaints.find_one({"_id": "T1"})
    assert (doc["reporter_seq"], doc["rejections"]) == (2, 1)

    projection = CaseActionProjection(complaints)
    for _ in range(2):  # the second time is a redelivery
        await projection.apply([refusal("r1", "rejected", "resolved")])
    doc = await complaints.find_one({"_id": "T1"})
    assert (doc["reporter_seq"], doc["rejections"], doc["state"]) == (-1, 0, "resolved")
    notes = [h["note"] for h in doc["history"] if h["action"] == "reporter_action_refused"]
    assert len(notes) == 1 and "rejection of the follow-up could not be applied" in notes[0]
    check_allowed(ReporterCommand.CONFIRM_RESOLUTION, snapshot(doc), max_reopens=2)

    # The reporter acts again; a late copy of the old refusal does not free them a second time.
    confirm = ReporterActionRecord("r2", "T1", "confirmed", "", 5, AT)
    assert await reports.record_action(snapshot(doc), confirm, counts_as_rejection=False)
    await projection.apply([refusal("r1", "rejected", "resolved")])
    doc = await complaints.find_one({"_id": "T1"})
    assert doc["reporter_seq"] == 2 and doc["rejections"] == 0
    assert len([h for h in doc["history"] if h["action"] == "reporter_action_refused"]) == 1

    # A refusal of an action this report never recorded (nothing intake sent) changes nothing.
    await projection.apply([refusal("r-unknown", "confirmed", "resolved")])
    after = await complaints.find_one({"_id": "T1"})
    assert after == doc

"""A reporter action routing refuses: how the reporter is held back while an action is
pending, what the refusal event carries, how intake's view lets the reporter act again and
tells them why, and that sla and notify take the new action in their stride. Pure."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from lapor.v1 import common_pb2, events_pb2

from services.common.errors import FailedPrecondition
from services.common.regions import default_regions
from services.common.topics import CASE_ACTIONS
from services.intake.case_view import REFUSED, case_update, refusal_update, unblock
from services.intake.reporter import snapshot
from services.intake.reporter_rules import ReporterCommand, allowed_commands, check_allowed
from services.notify.domain import for_case_action
from services.routing.case_events import refusal_event_id, refusal_message
from services.routing.case_events import refusal_update as routing_refusal_update
from services.routing.domain.directory import Directory
from services.sla.domain.actions import Action, Rules, apply_action
from services.sla.domain.calendar import WorkingCalendar
from services.sla.domain.clocks import start_clocks
from services.sla.domain.policy import parse_policy
from tests.unit.test_sla_actions import POLICY

AT = datetime(2026, 3, 2, 4, 30, tzinfo=UTC)
UNIT = "pemda-51.08/disdukcapil"


def refusal(
    refused_event_id: str = "r1",
    refused_action: str = "info_provided",
    state: str = "awaiting_reporter",
    reason: str = "text: must be at most 4000 characters",
    reopen_count: int = 0,
) -> events_pb2.CaseAction:
    ts = Timestamp()
    ts.FromDatetime(AT)
    return events_pb2.CaseAction(
        meta=common_pb2.EventMeta(
            event_id=f"{refused_event_id}:refused",
            tracking_id="T1",
            occurred_at=ts,
            producer="routing",
        ),
        action=REFUSED,
        actor_role="system",
        from_state=state,
        to_state=state,
        reason=reason,
        reopen_count=reopen_count,
        refused_event_id=refused_event_id,
        refused_action=refused_action,
    )


def view_after_action(
    action: str = "info_provided", event_id: str = "r1", state: str = "awaiting_reporter"
) -> dict[str, object]:
    """The tracking view right after intake stored a reporter action at case_seq 3."""
    return {
        "_id": "T1",
        "state": state,
        "case_seq": 3,
        "reporter_seq": 3,
        "rejections": 1 if action == "rejected" else 0,
        "my_actions": [{"event_id": event_id, "action": action, "text": "t", "rating": 0}],
    }


def apply_set(doc: dict[str, object], update: dict[str, dict[str, int]]) -> dict[str, object]:
    out = {**doc, **update.get("$set", {})}
    for name, by in update.get("$inc", {}).items():
        out[name] = int(out.get(name) or 0) + by  # type: ignore[call-overload]
    return out


# --- how the reporter is blocked (the gap) ------------------------------------------------


def test_a_pending_action_blocks_the_reporter_until_a_case_action_moves_case_seq() -> None:
    doc = view_after_action()
    with pytest.raises(FailedPrecondition, match="still being handled"):
        check_allowed(ReporterCommand.ADD_INFORMATION, snapshot(doc), max_reopens=2)
    assert "add_information" not in allowed_commands(snapshot(doc), 2)
    # An event that neither changes the state nor comes from the reporter does not move
    # case_seq: treated like any other case action, a refusal would leave the reporter stuck.
    assert "$inc" not in case_update(refusal())


# --- intake's view ------------------------------------------------------------------------


def test_the_refusal_entry_is_for_the_reporter_only_and_changes_no_state() -> None:
    update = refusal_update(refusal())
    entry = update["$push"]["history"]
    assert (entry["action"], entry["actor"], entry["public"], entry["state"]) == (
        REFUSED,
        "routing",
        False,
        "awaiting_reporter",
    )
    assert entry["note"] == (
        "your additional information could not be applied: the report is now in state "
        "awaiting_reporter (text: must be at most 4000 characters); you may act again on the "
        "report as it is now"
    )
    assert "$set" not in update and "$inc" not in update  # no state, no case_seq


def test_a_refused_confirmation_names_the_state_the_report_moved_to() -> None:
    e = refusal(
        refused_action="confirmed",
        state="closed",
        reason="action confirmed is not allowed in state closed",
    )
    note = refusal_update(e)["$push"]["history"]["note"]
    assert note.startswith("your confirmation of the follow-up could not be applied")
    assert "now in state closed" in note


def test_a_refused_privacy_change_is_not_called_undone() -> None:
    e = refusal(refused_action="privacy_raised", state="closed", reason="not allowed")
    note = refusal_update(e)["$push"]["history"]["note"]
    assert note.startswith("your privacy change applies to this report here")
    assert "could not be applied" not in note


def test_the_refused_pending_action_no_longer_blocks_the_reporter() -> None:
    doc = view_after_action()
    change = unblock(doc, refusal())
    assert change is not None
    condition, update = change
    assert condition == {"_id": "T1", "reporter_seq": 3, "case_seq": 3}
    assert update == {"$set": {"reporter_seq": -1}}
    after = apply_set(doc, update)
    check_allowed(ReporterCommand.ADD_INFORMATION, snapshot(after), max_reopens=2)
    assert unblock(after, refusal()) is None  # redelivered: nothing left to do


def test_a_refused_rejection_gives_the_reopen_back() -> None:
    doc = view_after_action("rejected", state="resolved")
    change = unblock(doc, refusal(refused_action="rejected", state="resolved"))
    assert change is not None
    condition, update = change
    assert condition["rejections"] == 1
    after = apply_set(doc, update)
    assert after["rejections"] == 0 and after["reporter_seq"] == -1
    assert allowed_commands(snapshot(after), 1) == [
        "confirm_resolution",
        "reject_resolution",
        "upload_evidence",
    ]


def test_no_unblocking_when_the_reporter_acted_again_or_the_case_moved_since() -> None:
    acted_again = view_after_action(event_id="r2")
    acted_again["my_actions"] = [
        {"event_id": "r1", "action": "info_provided"},
        {"event_id": "r2", "action": "info_provided"},
    ]
    assert unblock(acted_again, refusal("r1")) is None
    moved = {**view_after_action(), "case_seq": 4}
    assert unblock(moved, refusal("r1")) is None
    assert unblock({"_id": "T1"}, refusal("r1")) is None  # never acted through intake


def test_unblocking_at_case_seq_zero_matches_a_missing_counter() -> None:
    doc = {**view_after_action(), "case_seq": 0, "reporter_seq": 0}
    change = unblock(doc, refusal())
    assert change is not None and change[0]["case_seq"] == {"$in": [0, None]}


# --- routing's event ----------------------------------------------------------------------


def test_routing_refusal_event_is_deterministic_and_carries_no_reporter_text() -> None:
    refused = events_pb2.ReporterAction(
        meta=common_pb2.EventMeta(event_id="abc", tracking_id="T1"),
        action="info_provided",
        text="Rahasia: nama saya Siti, nomor 0812-3456-7890",
    )
    doc = {
        "_id": "T1",
        "state": "awaiting_reporter",
        "institution_id": UNIT,
        "reopen_count": 1,
        "version": 7,
    }
    directory = Directory.seed(default_regions())
    reason = "text: must be at most 4000 characters"
    message = refusal_message(doc, refused, reason, directory, AT)
    assert (message.id, message.topic, message.key) == ("abc:refused", CASE_ACTIONS, "T1")
    assert refusal_event_id("abc") == message.id
    event = events_pb2.CaseAction.FromString(message.value)
    assert (event.action, event.actor_role, event.from_state, event.to_state) == (
        "reporter_action_refused",
        "system",
        "awaiting_reporter",
        "awaiting_reporter",
    )
    assert (event.refused_event_id, event.refused_action, event.reason) == (
        "abc",
        "info_provided",
        reason,
    )
    assert (event.institution.id, event.reopen_count) == (UNIT, 1)
    assert b"Siti" not in message.value and b"0812" not in message.value
    update = routing_refusal_update(doc, refused, message, reason, AT)
    assert update["$inc"] == {"version": 1}
    assert update["$push"]["_applied"]["$each"] == ["abc"]
    assert update["$push"]["history"]["reason"] == f"info_provided: {reason}"
    assert "Siti" not in repr(update["$push"]["history"])


# --- the other consumers of lapor.cases.actions ------------------------------------------


def test_notify_sends_nothing_for_a_refusal() -> None:
    assert for_case_action("T1", REFUSED, "Disdukcapil", "") is None


@pytest.mark.parametrize(
    ("steps", "state"),
    [
        (
            (("accepted", "in_progress"), ("info_requested", "awaiting_reporter")),
            "awaiting_reporter",
        ),
        ((("accepted", "in_progress"), ("resolved", "resolved")), "resolved"),
    ],
)
def test_sla_clocks_do_not_move_on_a_refusal(
    steps: tuple[tuple[str, str], ...], state: str
) -> None:
    policy = parse_policy(POLICY, Path("."))
    rules = Rules(policy, WorkingCalendar())
    t0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    case = start_clocks("T1", UNIT, "Asia/Makassar", "complaint", t0, t0, policy, WorkingCalendar())
    for i, (name, to_state) in enumerate(steps, start=1):
        case = apply_action(case, Action(name, t0.replace(second=i), to_state=to_state), rules)
    after = apply_action(
        case,
        Action(REFUSED, t0.replace(second=30), to_state=state, institution_id=UNIT),
        rules,
    )
    assert after == case

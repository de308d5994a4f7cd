"""Routing's event ids: derived from the consumed event and the outcome for what routing
concludes from events (the same conclusion again is the same event: a restore of routing's
database publishes nothing new), random for officers' actions."""

from __future__ import annotations

import asyncio
import copy
import re
from datetime import UTC, datetime, timedelta

import pytest
from lapor.v1 import common_pb2, events_pb2

from services.common.clock import ManualClock
from services.common.ids import DIGEST_LENGTH, derived_event_id
from services.common.regions import default_regions
from services.common.status import CaseState
from services.routing.actions import CaseActions
from services.routing.codec import (
    case_action_event,
    case_action_event_id,
    routed_event,
    routed_event_id,
)
from services.routing.domain.case import CaseStatus, Command, Outcome, Role, apply
from services.routing.domain.directory import Directory
from services.routing.domain.rules import Decision
from tests.unit.test_case_actions import UNIT, FakeCases

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
OTHER_UNIT = "pemda-51.08/dlh"


@pytest.fixture(scope="module")
def directory() -> Directory:
    return Directory.seed(default_regions())


def test_a_derived_id_names_its_cause_and_kind_and_digests_the_outcome() -> None:
    event_id = derived_event_id("ev-1", "confirmed", ["reporter", "resolved", "closed"])
    assert re.fullmatch(rf"ev-1:confirmed:[0-9a-f]{{{DIGEST_LENGTH}}}", event_id)
    assert event_id == derived_event_id("ev-1", "confirmed", ("reporter", "resolved", "closed"))


@pytest.mark.parametrize(
    ("cause", "kind", "outcome"),
    [
        ("ev-2", "confirmed", ["reporter", "resolved", "closed"]),
        ("ev-1", "rejected", ["reporter", "resolved", "closed"]),
        ("ev-1", "confirmed", ["reporter", "resolved", "in_progress"]),
        ("ev-1", "confirmed", ["reporter", "resolved", "closed", ""]),
        ("ev-1", "confirmed", ["reporterresolved", "", "closed"]),  # parts are not run together
    ],
)
def test_any_other_cause_kind_or_outcome_is_another_id(
    cause: str, kind: str, outcome: list[str]
) -> None:
    first = derived_event_id("ev-1", "confirmed", ["reporter", "resolved", "closed"])
    assert derived_event_id(cause, kind, outcome) != first


def received(event_id: str = "rcv-1") -> events_pb2.ComplaintReceived:
    message = events_pb2.ComplaintReceived(
        meta=common_pb2.EventMeta(event_id=event_id, tracking_id="T-1"), region_code="51.08"
    )
    message.meta.occurred_at.FromDatetime(NOW - timedelta(minutes=5))
    return message


def decision(directory: Directory, institution_id: str | None, rule: str = "r@1") -> Decision:
    institution = directory.get(institution_id) if institution_id else None
    return Decision(institution, rule, topic="jalan", confidence=0.9, rules_version="1")


def routed_id(message: events_pb2.ComplaintReceived, d: Decision, directory: Directory) -> str:
    out = routed_event(message, d, "Asia/Makassar", NOW, directory)
    event = events_pb2.ComplaintRouted.FromString(out.value)
    assert out.id == event.meta.event_id
    return out.id


def test_a_complaint_routed_again_to_the_same_institution_is_the_same_event(
    directory: Directory,
) -> None:
    """Whenever it is decided, and by whichever rule: the institution is the decision."""
    first = routed_id(received(), decision(directory, UNIT), directory)
    assert first == routed_event_id("rcv-1", UNIT) == f"rcv-1:routed:{UNIT}"
    later = routed_event(received(), decision(directory, UNIT, "r@2"), "", NOW, directory)
    assert later.id == first
    queue = routed_id(received(), decision(directory, None), directory)
    assert queue == "rcv-1:routed:verification-queue"


def test_a_complaint_routed_elsewhere_or_another_complaint_is_another_event(
    directory: Directory,
) -> None:
    first = routed_id(received(), decision(directory, UNIT), directory)
    assert routed_id(received(), decision(directory, OTHER_UNIT), directory) != first
    assert routed_id(received(), decision(directory, None), directory) != first
    assert routed_id(received("rcv-2"), decision(directory, UNIT), directory) != first


def outcome(
    command: Command, state: CaseState = CaseState.RESOLVED, institution: str = UNIT
) -> Outcome:
    return apply(CaseStatus(state, institution, responded=True), command)


CONFIRM = Command("confirmed", Role.REPORTER, rating=4)


def test_a_case_action_applied_again_with_the_same_outcome_is_the_same_event(
    directory: Directory,
) -> None:
    """Not the time, nor the directory's names (presentation), only what it says."""
    first = case_action_event("T-1", outcome(CONFIRM), directory, NOW, "rpt-1")
    again = case_action_event("T-1", outcome(CONFIRM), directory, NOW + timedelta(days=2), "rpt-1")
    assert first.id == again.id == case_action_event_id("rpt-1", outcome(CONFIRM))
    assert first.id.startswith("rpt-1:confirmed:")
    assert events_pb2.CaseAction.FromString(first.value).meta.event_id == first.id


@pytest.mark.parametrize(
    "other",
    [
        outcome(CONFIRM, institution=OTHER_UNIT),  # routed elsewhere meanwhile
        outcome(Command("confirmed", Role.REPORTER, rating=2)),
        outcome(Command("rejected", Role.REPORTER, reason="Belum.")),  # another to_state
        apply(CaseStatus(CaseState.RESOLVED, UNIT, responded=True, reopen_count=1), CONFIRM),
        apply(
            CaseStatus(CaseState.RESOLVED, UNIT, responded=True, handling_class="complaint"),
            CONFIRM,
        ),
    ],
)
def test_a_case_action_with_another_outcome_is_another_event(other: Outcome) -> None:
    assert case_action_event_id("rpt-1", other) != case_action_event_id("rpt-1", outcome(CONFIRM))


def test_an_officers_action_has_a_random_id(directory: Directory) -> None:
    accept = outcome(Command("accepted", Role.OFFICER, actor_id="ani"), CaseState.ASSIGNED)
    ids = {case_action_event("T-1", accept, directory, NOW).id for _ in range(3)}
    assert len(ids) == 3 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_the_use_case_derives_the_id_from_the_event_it_applies(directory: Directory) -> None:
    """The same reporter's action applied to the case restored from a backup (a fresh copy
    of the same stored case) publishes the same event."""
    case = {
        "_id": "T-1",
        "state": "resolved",
        "institution_id": UNIT,
        "responded": True,
        "version": 4,
        "history": [],
        "_applied": [],
    }
    published = []
    for _ in range(2):  # the first time, then after the restore
        cases = FakeCases()
        cases.docs["T-1"] = copy.deepcopy(case)
        actions = CaseActions(cases, lambda: directory, ManualClock(NOW))
        asyncio.run(actions.act(None, "T-1", CONFIRM, event_id="rpt-1"))
        [message] = cases.published
        published.append(message.id)
    assert published[0] == published[1] == case_action_event_id("rpt-1", outcome(CONFIRM))

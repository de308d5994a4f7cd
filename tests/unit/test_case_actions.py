"""The action use case over an in-memory fake of its repository port: visibility, target
checks, compare-and-set, expected versions, redelivered events and raised privacy."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
from lapor.v1 import events_pb2

from services.common.clock import ManualClock
from services.common.errors import FailedPrecondition, NotFound, ValidationError
from services.common.mongo import Doc
from services.common.outbox import OutboxMessage
from services.common.regions import default_regions
from services.common.topics import CASE_ACTIONS
from services.routing.actions import CaseActions
from services.routing.case_store import history_entry, stored_privacy
from services.routing.domain.access import Actor
from services.routing.domain.case import Command, Outcome, Role
from services.routing.domain.directory import Directory

UNIT = "pemda-51.08/disdukcapil"


class FakeCases:
    """Compare-and-set on ``version`` like the MongoDB adapter; ``interfere`` changes the
    stored case between a read and the next write, as a concurrent officer would."""

    def __init__(self) -> None:
        self.docs: dict[str, Doc] = {}
        self.published: list[OutboxMessage] = []
        self.interfere: Any = None

    async def get(self, tracking_id: str) -> Doc | None:
        doc = self.docs.get(tracking_id)
        return None if doc is None else {**doc, "history": list(doc["history"])}

    async def commit(
        self,
        doc: Doc,
        outcome: Outcome,
        message: OutboxMessage,
        now: datetime,
        applied_event_id: str = "",
    ) -> Doc | None:
        if self.interfere is not None:
            interfere, self.interfere = self.interfere, None
            interfere(self.docs[doc["_id"]])
        stored = self.docs[doc["_id"]]
        if stored["version"] != doc["version"] or applied_event_id in stored["_applied"]:
            return None
        after = outcome.after
        stored.update(
            state=after.state.value,
            institution_id=after.institution_id,
            responded=after.responded,
            reopen_count=after.reopen_count,
            handling_class=after.handling_class,
            version=stored["version"] + 1,
        )
        if after.privacy != outcome.before.privacy:
            stored["privacy"] = stored_privacy(after.privacy)
        stored["history"].append(history_entry(outcome, now))
        if applied_event_id:
            stored["_applied"].append(applied_event_id)
        self.published.append(message)
        return await self.get(doc["_id"])


@pytest.fixture(scope="module")
def directory() -> Directory:
    return Directory.seed(default_regions())


@pytest.fixture
def cases() -> FakeCases:
    fake = FakeCases()
    fake.docs["T-1"] = {
        "_id": "T-1",
        "state": "assigned",
        "institution_id": UNIT,
        "version": 1,
        "history": [],
        "_applied": [],
    }
    return fake


@pytest.fixture
def actions(cases: FakeCases, directory: Directory) -> CaseActions:
    return CaseActions(cases, lambda: directory, ManualClock())


def run(coro: Any) -> Any:
    return asyncio.run(coro)


OFFICER = Actor("ani", UNIT, Role.OFFICER)


def test_an_action_is_stored_with_its_history_and_event(
    actions: CaseActions, cases: FakeCases
) -> None:
    doc = run(actions.act(OFFICER, "T-1", Command("accepted", Role.OFFICER, actor_id="ani")))
    assert (doc["state"], doc["version"]) == ("in_progress", 2)
    entry = doc["history"][-1]
    assert (entry["action"], entry["actor_id"], entry["from_state"], entry["to_state"]) == (
        "accepted",
        "ani",
        "assigned",
        "in_progress",
    )
    [message] = cases.published
    assert (message.topic, message.key) == (CASE_ACTIONS, "T-1")
    event = events_pb2.CaseAction.FromString(message.value)
    assert (event.action, event.from_state, event.to_state, event.institution.id) == (
        "accepted",
        "assigned",
        "in_progress",
        UNIT,
    )


def test_foreign_reports_are_not_found(actions: CaseActions, cases: FakeCases) -> None:
    other = Actor("budi", "pemda-51.71/disdukcapil", Role.OFFICER)
    with pytest.raises(NotFound):
        run(actions.act(other, "T-1", Command("accepted", Role.OFFICER)))
    with pytest.raises(NotFound):
        run(actions.act(OFFICER, "T-404", Command("accepted", Role.OFFICER)))
    assert cases.docs["T-1"]["version"] == 1 and not cases.published


@pytest.mark.parametrize(
    ("target", "reason", "message"),
    [
        ("pemda-00/nothing", "r", "institution_id: unknown institution"),
        ("verification-queue", "r", "institution_id: unknown institution"),  # not a target
        (UNIT, "r", "institution_id: must not be the report's own institution"),
        ("pemda-51.08/dpupr", "", "reason: must not be empty when forwarding"),
        ("nasional-pln", "", "reason: must not be empty when forwarding"),
    ],
)
def test_forward_targets_are_checked(
    actions: CaseActions, cases: FakeCases, target: str, reason: str, message: str
) -> None:
    command = Command("forwarded", Role.OFFICER, institution_id=target, reason=reason)
    with pytest.raises(ValidationError, match=message):
        run(actions.act(OFFICER, "T-1", command))
    assert cases.docs["T-1"]["version"] == 1


def test_forward_inside_ones_institution_needs_no_reason(
    actions: CaseActions, cases: FakeCases
) -> None:
    government = Actor("kadis", "pemda-51.08", Role.INSTITUTION_ADMIN)
    command = Command("forwarded", Role.INSTITUTION_ADMIN, institution_id="pemda-51.08/dpupr")
    doc = run(actions.act(government, "T-1", command))
    assert (doc["state"], doc["institution_id"]) == ("assigned", "pemda-51.08/dpupr")


def test_a_concurrent_change_is_decided_again_on_the_new_state(
    actions: CaseActions, cases: FakeCases
) -> None:
    def other_officer_accepts(doc: Doc) -> None:
        doc.update(state="in_progress", version=doc["version"] + 1)

    cases.interfere = other_officer_accepts
    with pytest.raises(FailedPrecondition, match="accepted is not allowed in state in_progress"):
        run(actions.act(OFFICER, "T-1", Command("accepted", Role.OFFICER)))
    assert not cases.published


def test_a_concurrent_change_that_still_allows_the_action_is_retried(
    actions: CaseActions, cases: FakeCases
) -> None:
    def someone_sets_the_class(doc: Doc) -> None:
        doc.update(handling_class="complaint", version=doc["version"] + 1)

    cases.interfere = someone_sets_the_class
    doc = run(actions.act(OFFICER, "T-1", Command("accepted", Role.OFFICER)))
    assert (doc["state"], doc["version"], doc["handling_class"]) == ("in_progress", 3, "complaint")


def test_expected_version_must_match(actions: CaseActions, cases: FakeCases) -> None:
    with pytest.raises(FailedPrecondition, match="expected_version"):
        run(actions.act(OFFICER, "T-1", Command("accepted", Role.OFFICER), expected_version=7))
    doc = run(actions.act(OFFICER, "T-1", Command("accepted", Role.OFFICER), expected_version=1))
    assert doc["version"] == 2


def test_a_redelivered_event_changes_nothing(actions: CaseActions, cases: FakeCases) -> None:
    cases.docs["T-1"].update(state="resolved")
    confirm = Command("confirmed", Role.REPORTER)
    first = run(actions.act(None, "T-1", confirm, event_id="e-1"))
    again = run(actions.act(None, "T-1", confirm, event_id="e-1"))
    assert first["state"] == again["state"] == "closed"
    assert again["version"] == 2 and len(cases.published) == 1


def test_empty_tracking_id_is_invalid(actions: CaseActions) -> None:
    with pytest.raises(ValidationError, match="tracking_id"):
        run(actions.act(OFFICER, " ", Command("accepted", Role.OFFICER)))


@pytest.mark.parametrize("state", ["closed", "archived", "in_verification", "awaiting_reporter"])
def test_privacy_is_raised_in_any_state_with_its_history_entry(
    actions: CaseActions, cases: FakeCases, state: str
) -> None:
    cases.docs["T-1"].update(state=state, privacy="PRIVACY_PUBLIC")
    raise_ = Command("privacy_raised", Role.REPORTER, privacy="confidential")
    doc = run(actions.act(None, "T-1", raise_, event_id="p-1"))
    assert (doc["state"], doc["privacy"], doc["version"]) == (
        state,
        "PRIVACY_CONFIDENTIAL",
        2,
    )
    [entry] = doc["history"]
    assert {k: v for k, v in entry.items() if k != "at"} == {
        "action": "privacy_raised",
        "actor": "reporter",
        "actor_id": "",
        "from_state": state,
        "to_state": state,
        "institution_id": UNIT,
        "text": "",
        "reason": "",
        "evidence": [],
        "handling_class": "",
    }
    [message] = cases.published
    event = events_pb2.CaseAction.FromString(message.value)
    assert (event.action, event.actor_role, event.from_state, event.to_state) == (
        "privacy_raised",
        "reporter",
        state,
        state,
    )


def test_privacy_is_raised_once_and_a_late_lower_level_never_lowers_it(
    actions: CaseActions, cases: FakeCases
) -> None:
    cases.docs["T-1"].update(state="closed", privacy="PRIVACY_PUBLIC")
    anonymous = Command("privacy_raised", Role.REPORTER, privacy="anonymous")
    confidential = Command("privacy_raised", Role.REPORTER, privacy="confidential")
    run(actions.act(None, "T-1", anonymous, event_id="p-2"))
    again = run(actions.act(None, "T-1", anonymous, event_id="p-2"))  # a redelivery
    assert (again["privacy"], again["version"], len(again["history"])) == (
        "PRIVACY_ANONYMOUS",
        2,
        1,
    )
    late = run(actions.act(None, "T-1", confidential, event_id="p-1"))  # raised before p-2
    assert (late["privacy"], late["state"]) == ("PRIVACY_ANONYMOUS", "closed")
    assert [h["action"] for h in late["history"]] == ["privacy_raised", "privacy_raised"]


def test_a_concurrent_raise_is_decided_again_on_the_new_privacy(
    actions: CaseActions, cases: FakeCases
) -> None:
    cases.docs["T-1"].update(privacy="PRIVACY_PUBLIC")

    def a_later_raise_lands_first(doc: Doc) -> None:
        doc.update(privacy="PRIVACY_ANONYMOUS", version=doc["version"] + 1)

    cases.interfere = a_later_raise_lands_first
    raise_ = Command("privacy_raised", Role.REPORTER, privacy="confidential")
    doc = run(actions.act(None, "T-1", raise_, event_id="p-1"))
    assert (doc["privacy"], doc["version"]) == ("PRIVACY_ANONYMOUS", 3)


def test_a_target_added_since_the_last_refresh_is_looked_up(
    cases: FakeCases, directory: Directory
) -> None:
    """Forwarding to a unit another replica stored a moment ago: the directory is asked
    (`knows`) before the target is refused as unknown."""
    from services.routing.domain.directory import Institution

    new_unit = Institution("pemda-51.08/upt-pasar", "UPT Pasar", "unit", "pemda-51.08", "51.08", ())
    current = {"directory": directory}
    asked: list[str] = []

    async def knows(institution_id: str) -> bool:
        asked.append(institution_id)
        current["directory"] = Directory([*directory.all(), new_unit])  # the stored change
        return True

    actions = CaseActions(cases, lambda: current["directory"], ManualClock(), knows=knows)
    command = Command("forwarded", Role.OFFICER, institution_id=new_unit.id, reason="pasar")
    doc = run(actions.act(OFFICER, "T-1", command))
    assert asked == [new_unit.id] and doc["institution_id"] == new_unit.id


def test_officers_actions_per_report_are_capped(
    actions: CaseActions, cases: FakeCases, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report takes at most MAX_CASE_ACTIONS officers' and institution admins' actions (its
    history is copied into three services' documents, under MongoDB's 16 MiB); the reporter,
    the system and the national admins still pass, so it can always be closed."""
    from services.routing import actions as actions_module

    monkeypatch.setattr(actions_module, "MAX_CASE_ACTIONS", 4)
    run(actions.act(OFFICER, "T-1", Command("accepted", Role.OFFICER, actor_id="ani")))
    for n in range(3):
        run(actions.act(OFFICER, "T-1", Command("followed_up", Role.OFFICER, text=f"step {n}")))
    version = cases.docs["T-1"]["version"]
    with pytest.raises(FailedPrecondition, match="tracking_id: report T-1 has reached 4 actions"):
        run(actions.act(OFFICER, "T-1", Command("followed_up", Role.OFFICER, text="one more")))
    admin = Actor("ida", "pemda-51.08", Role.INSTITUTION_ADMIN)
    with pytest.raises(FailedPrecondition, match="has reached 4 actions"):
        run(actions.act(admin, "T-1", Command("resolved", Role.INSTITUTION_ADMIN, text="done")))
    assert cases.docs["T-1"]["version"] == version  # nothing stored
    national = Actor("nas", "", Role.NATIONAL_ADMIN)
    doc = run(actions.act(national, "T-1", Command("resolved", Role.NATIONAL_ADMIN, text="done")))
    assert doc["state"] == "resolved"
    doc = run(actions.act(None, "T-1", Command("confirmed", Role.REPORTER, rating=5)))
    assert doc["state"] == "closed"

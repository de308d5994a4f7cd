"""SLA events out of order, against the real database: sla stamps each SlaEvent with the
version of the clocks document its write left (``clocks_version``), and routing's case and
intake's tracking view apply an event only if no newer one was applied. A breach that waited
in ``sla_outbox`` while a later ``deadlines_set`` went out first changes neither view; a
newer one does; redeliveries change nothing; events without a version apply as before. And
a late OmbudsmanEscalation never hides a resolved or closed report in intake's view: the
view ends the same whichever comes first (docs/sla.md, "Ordering of SLA events")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lapor.v1 import common_pb2, events_pb2

from services.common.auth import Principal
from services.common.clock import ManualClock
from services.common.kafka import Delivery
from services.common.metrics import EVENTS_CONSUMED
from services.common.outbox import OutboxMessage
from services.common.regions import default_regions
from services.common.topics import SLA_EVENTS
from services.intake.case_view import CaseActionProjection
from services.intake.projection import (
    TIMELINES,
    TrackingProjection,
    escalation_update,
    read_view,
    sla_update,
)
from services.routing.actions import CaseActions
from services.routing.case_events import CaseEventHandlers
from services.routing.case_store import CaseStore
from services.routing.domain.directory import Directory
from services.sla.codec import case_from_doc
from services.sla.domain.actions import Rules
from services.sla.domain.calendar import WorkingCalendar
from services.sla.domain.policy import parse_policy
from services.sla.handlers import SlaHandlers
from services.sla.officers import ExtendDeadline, Officers
from services.sla.relay import SlaRelay
from services.sla.sweep import Sweeper
from tests.unit.test_sla_actions import POLICY

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
DUE = datetime(2026, 3, 9, 15, 59, tzinfo=UTC)
TID = "7K3M-ORDR-SLA"
#: The clocks once the breached resolution deadline got more time (a new handling class).
AFTER_MORE_TIME = [
    ("first_response", "met"),
    ("resolution#1", "running"),
    ("ombudsman", "running"),
]


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def meta(event_id: str, at: datetime = T0, tid: str = TID) -> common_pb2.EventMeta:
    m = common_pb2.EventMeta(event_id=event_id, tracking_id=tid, producer="sla")
    m.occurred_at.FromDatetime(at)
    return m


def delivery(message: Any) -> Delivery[Any]:
    return Delivery(message, message.meta.tracking_id, 0, 0)


class Tree:
    def is_within(self, id: str, ancestor_id: str) -> bool:
        return id == ancestor_id or id.startswith(ancestor_id + "/")


class Recorder:
    """A publisher that keeps what the relays publish, in publishing order."""

    def __init__(self) -> None:
        self.messages: list[OutboxMessage] = []

    async def publish_many(self, messages: list[OutboxMessage]) -> None:
        self.messages.extend(messages)

    def sla_events(self) -> list[events_pb2.SlaEvent]:
        return [events_pb2.SlaEvent.FromString(m.value) for m in self.messages]


# -- the consumers' stores ---------------------------------------------------------------


def routing_handlers(db: Any, collection: str = "cases") -> CaseEventHandlers:
    store = CaseStore(db[collection])
    directory = Directory.seed(default_regions())
    return CaseEventHandlers(CaseActions(store, lambda: directory, ManualClock(T0)), store)


def routing_case(tid: str = TID) -> dict[str, Any]:
    return {
        "_id": tid,
        "state": "in_progress",
        "institution_id": "pemda-51.08",
        "version": 2,
        "history": [],
        "_applied": [],
        "deadlines": [],
        "overdue": False,
    }


def complaint(tid: str = TID, **fields: Any) -> dict[str, Any]:
    return {
        "_id": tid,
        "status": "routed",
        "colour": "red",
        "overdue": False,
        "escalated": False,
        "history": [{"at": T0, "action": "received", "actor": "intake"}],
        "notifications": [],
        "_applied": [],
        **fields,
    }


def deadlines_set(
    event_id: str, version: int, state: str = "running", clock: str = "resolution"
) -> events_pb2.SlaEvent:
    e = events_pb2.SlaEvent(meta=meta(event_id), clocks_version=version)
    e.deadlines_set.deadlines.add(clock="first_response", state="met").due_at.FromDatetime(DUE)
    e.deadlines_set.deadlines.add(clock=clock, state=state).due_at.FromDatetime(DUE)
    return e


def breached(event_id: str, version: int, clock: str = "resolution") -> events_pb2.SlaEvent:
    e = events_pb2.SlaEvent(meta=meta(event_id), clocks_version=version)
    e.breached.clock = clock
    e.breached.due_at.FromDatetime(DUE)
    e.breached.escalation_level = "unit"
    return e


def counted(outcome: str) -> float:
    return EVENTS_CONSUMED.labels(topic=SLA_EVENTS, outcome=outcome)._value.get()


async def routing_apply(handlers: CaseEventHandlers, *events: events_pb2.SlaEvent) -> Any:
    await handlers.handle_sla([delivery(e) for e in events])
    return await handlers.store.cases.find_one({"_id": TID})


async def intake_apply(complaints: Any, *events: events_pb2.SlaEvent) -> Any:
    await TrackingProjection(complaints).apply("sla", [delivery(e) for e in events], sla_update)
    return await read_view(complaints, TID, {})


def states(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(d["clock"], d["state"]) for d in doc["deadlines"]]


# -- from sla's outboxes to both views ------------------------------------------------------


@dataclass
class Sla:
    """sla's own stores and relays over `db`, with a routed report whose first response
    was given (clocks version 2) and the time of that response."""

    policy: Any
    rules: Rules
    clock: ManualClock
    clocks: Any
    handlers: SlaHandlers
    recorder: Recorder
    relay: SlaRelay


async def responded_report(db: Any, **routed: Any) -> Sla:
    policy = parse_policy(POLICY, Path("."))
    clock = ManualClock(T0)
    clocks = db["clocks"]
    rules = Rules(policy, WorkingCalendar())
    recorder = Recorder()
    handlers = SlaHandlers(clocks, rules, clock)
    sla = Sla(policy, rules, clock, clocks, handlers, recorder, SlaRelay(clocks, recorder))
    event = events_pb2.ComplaintRouted(
        meta=meta(f"{TID}:routed"),
        institution=common_pb2.Institution(id="pemda-51.08", name="Pemkab Buleleng"),
        classification=common_pb2.CLASSIFICATION_COMPLAINT,
        timezone="Asia/Makassar",
        **routed,
    )
    await sla.handlers.handle_routed([delivery(event)])  # version 1
    responded = events_pb2.CaseAction(
        meta=meta(f"{TID}:responded", s(5)), action="responded", to_state="in_progress"
    )
    clock.set(s(5))
    await sla.handlers.handle_actions([delivery(responded)])  # version 2: first response met
    return sla


async def test_a_breach_relayed_after_a_newer_deadlines_set_changes_neither_view(db: Any) -> None:
    """The reviewed defect, end to end through sla's own stores and relays: the resolution
    clock breaches (its events wait in ``sla_outbox``), a new handling class gives it more
    time (a new cycle, running), the document relay publishes that ``deadlines_set`` first
    and the batch relay the stale warning and breach after it."""
    world = await responded_report(db, region_code="51.08")
    clock, clocks, sla, recorder, relay = (
        world.clock,
        world.clocks,
        world.handlers,
        world.recorder,
        world.relay,
    )
    sweeper = Sweeper(clocks, world.policy, clock)
    await relay.documents.relay_once()
    clock.set(s(51))
    assert await sweeper.sweep_once() == 1  # version 3: resolution warned and breached
    more_time = events_pb2.CaseAction(
        meta=meta(f"{TID}:class", s(52)), action="handling_class_set", handling_class="dispute"
    )
    clock.set(s(52))
    await sla.handle_actions([delivery(more_time)])  # version 4: resolution#1 runs
    await relay.documents.relay_once()  # the document relay is first ...
    await relay.relay_batches_once()  # ... the batch relay publishes the stale breach after it

    events = recorder.sla_events()
    assert [(e.WhichOneof("kind"), e.clocks_version) for e in events] == [
        ("deadlines_set", 1),
        ("deadlines_set", 2),
        ("deadlines_set", 4),
        ("warning", 3),
        ("breached", 3),
    ]
    stored = await clocks.find_one({"_id": TID})
    assert stored["version"] == 4 and not case_from_doc(stored).overdue  # sla: running

    # routing and intake get them in that order, in one batch and one at a time
    for batched in (True, False):
        name = "batched" if batched else "one_by_one"
        routing = routing_handlers(db, f"cases_{name}")
        await routing.store.cases.insert_one(routing_case())
        complaints = db[f"complaints_{name}"]
        await complaints.insert_one(complaint())
        await db[TIMELINES].delete_many({})  # the timelines of every complaints collection
        for group in [events] if batched else [[e] for e in events]:
            case = await routing_apply(routing, *group)
            view = await intake_apply(complaints, *group)
        assert case["sla_version"] == 4 and not case["overdue"]
        assert states(case) == AFTER_MORE_TIME
        assert view is not None and not view["overdue"]
        assert states(view) == states(case)
        timeline = await db[TIMELINES].find_one({"_id": TID})
        assert (timeline["sla_version"], timeline["overdue"]) == (4, False)
        assert [h["action"] for h in view["history"]] == ["received"] + ["deadlines_set"] * 3

    # In publishing order (no relay ahead of the other) the breach shows, then goes.
    routing = routing_handlers(db, "cases_in_order")
    await routing.store.cases.insert_one(routing_case())
    complaints = db["complaints_in_order"]
    await complaints.insert_one(complaint())
    await db[TIMELINES].delete_many({})
    in_order = sorted(events, key=lambda e: e.clocks_version)
    for event in in_order:
        case = await routing_apply(routing, event)
        view = await intake_apply(complaints, event)
        assert case["overdue"] == view["overdue"] == (event.WhichOneof("kind") == "breached")
    assert states(case) == states(view) == AFTER_MORE_TIME
    assert "deadline_breached" in [h["action"] for h in view["history"]]


async def test_an_extension_carries_the_version_its_write_left(db: Any) -> None:
    """An officer extends the resolution deadline while the warning of the old one waits
    in ``sla_outbox``: the extension's ``deadlines_set`` carries the newer version, so
    routing ends with sla's clocks (the stale warning is ignored; here the extended clock
    stays warned anyway, services/sla/domain/actions.py)."""
    world = await responded_report(db)
    clock, clocks, recorder, relay = world.clock, world.clocks, world.recorder, world.relay
    clock.set(s(41))
    assert await Sweeper(clocks, world.policy, clock).sweep_once() == 1  # version 3: warned
    officers = Officers(clocks, world.rules, Tree(), clock)
    officer = Principal("officer-1", "pemda-51.08", "officer")
    await officers.extend(officer, ExtendDeadline(TID, "", timedelta(seconds=20), "survey"))
    await relay.documents.relay_once()
    await relay.relay_batches_once()
    events = recorder.sla_events()
    assert [(e.WhichOneof("kind"), e.clocks_version) for e in events] == [
        ("deadlines_set", 1),
        ("deadlines_set", 2),
        ("deadlines_set", 4),
        ("warning", 3),
    ]
    assert events[3].warning.clock == "resolution"
    routing = routing_handlers(db)
    await routing.store.cases.insert_one(routing_case())
    case = await routing_apply(routing, *events)
    assert case["sla_version"] == 4 and states(case) == [
        (c.label, c.state) for c in case_from_doc(await clocks.find_one({"_id": TID})).clocks
    ]


# -- routing's case -------------------------------------------------------------------------


async def test_routing_applies_an_sla_event_only_from_the_version_it_applied_on(db: Any) -> None:
    handlers = routing_handlers(db)
    await handlers.store.cases.insert_one(routing_case())
    case = await routing_apply(handlers, deadlines_set("d5", 5))
    assert (case["sla_version"], case["overdue"]) == (5, False)

    # a stale breach (it waited in sla_outbox) after the newer deadlines: ignored
    ignored = counted("ignored")
    case = await routing_apply(handlers, breached("b4", 4))
    assert (case["sla_version"], case["overdue"]) == (5, False)
    assert states(case)[1] == ("resolution", "running") and "b4" not in case["_applied"]
    assert counted("ignored") - ignored == 1
    # an older deadlines_set too (the batched path)
    case = await routing_apply(handlers, deadlines_set("d3", 3, state="breached"))
    assert states(case)[1] == ("resolution", "running") and "d3" not in case["_applied"]

    # one of the same version (one write's events share it) or newer: applied
    case = await routing_apply(handlers, breached("b5", 5))
    assert (case["sla_version"], case["overdue"]) == (5, True)
    assert states(case)[1] == ("resolution", "breached")
    case = await routing_apply(handlers, deadlines_set("d6", 6, clock="resolution#1"))
    assert (case["sla_version"], case["overdue"]) == (6, False)

    # redeliveries of applied events change nothing, whatever their version
    before = await handlers.store.cases.find_one({"_id": TID})
    duplicate = counted("duplicate")
    case = await routing_apply(handlers, deadlines_set("d6", 6, clock="resolution#1"))
    assert case == before
    case = await routing_apply(handlers, breached("b5", 5), deadlines_set("d5", 5))
    assert case == before
    # the two deadlines_set; the breach is older than the case's version: ignored
    assert counted("duplicate") - duplicate == 2

    # events from before clocks_version (0) apply as before, and leave the version alone
    case = await routing_apply(handlers, breached("old-breach", 0, clock="resolution#1"))
    assert (case["sla_version"], case["overdue"]) == (6, True)
    case = await routing_apply(handlers, deadlines_set("old-deadlines", 0))
    assert (case["sla_version"], case["overdue"]) == (6, False)
    assert states(case)[1] == ("resolution", "running")


async def test_routing_cases_from_before_the_version_take_the_first_versioned_event(
    db: Any,
) -> None:
    handlers = routing_handlers(db)
    await handlers.store.cases.insert_one(
        {**routing_case(), "overdue": True, "deadlines": [{"clock": "resolution", "state": "x"}]}
    )
    case = await routing_apply(handlers, breached("b1", 1))
    assert (case["sla_version"], case["overdue"]) == (1, True)


# -- intake's tracking view ---------------------------------------------------------------


async def test_intake_applies_an_sla_event_only_from_the_version_it_applied_on(db: Any) -> None:
    complaints = db["complaints"]
    await complaints.insert_one(complaint())
    view = await intake_apply(complaints, deadlines_set("d5", 5))
    assert not view["overdue"] and states(view)[1] == ("resolution", "running")

    # a stale breach after the newer deadlines: ignored whole (no history line either)
    before = await complaints.find_one({"_id": TID})
    view = await intake_apply(complaints, breached("b4", 4))
    assert await complaints.find_one({"_id": TID}) == before  # the complaint is not written
    assert not view["overdue"]
    assert [h["action"] for h in view["history"]] == ["received", "deadlines_set"]
    timeline = await db[TIMELINES].find_one({"_id": TID})
    assert (timeline["sla_version"], timeline["overdue"]) == (5, False)
    assert "b4" not in timeline["_applied"]
    # an older deadlines_set neither
    view = await intake_apply(complaints, deadlines_set("d3", 3, state="breached"))
    assert states(view)[1] == ("resolution", "running") and not view["overdue"]

    # the same version or newer: applied; the complaint's overdue (a listing filter) follows
    view = await intake_apply(complaints, breached("b5", 5))
    assert view["overdue"] and (await complaints.find_one({"_id": TID}))["overdue"] is True
    assert [h["action"] for h in view["history"]][-1] == "deadline_breached"
    view = await intake_apply(complaints, deadlines_set("d6", 6, clock="resolution#1"))
    assert not view["overdue"] and states(view)[1] == ("resolution#1", "running")
    assert (await complaints.find_one({"_id": TID}))["sla_version"] == 6

    # redeliveries of applied events change nothing
    complaint_before = await complaints.find_one({"_id": TID})
    timeline_before = await db[TIMELINES].find_one({"_id": TID})
    redelivered = [breached("b5", 5), deadlines_set("d6", 6, clock="resolution#1")]
    await intake_apply(complaints, *redelivered, deadlines_set("d5", 5))
    assert await complaints.find_one({"_id": TID}) == complaint_before
    assert await db[TIMELINES].find_one({"_id": TID}) == timeline_before

    # events from before clocks_version (0) apply as before, and leave the version alone
    view = await intake_apply(complaints, breached("old-breach", 0))
    assert view["overdue"] and [h["action"] for h in view["history"]][-1] == "deadline_breached"
    view = await intake_apply(complaints, deadlines_set("old-deadlines", 0))
    assert not view["overdue"] and states(view)[1] == ("resolution", "running")
    timeline = await db[TIMELINES].find_one({"_id": TID})
    assert timeline["sla_version"] == 6


async def test_intake_overdue_is_restored_after_a_crash_between_the_two_writes(db: Any) -> None:
    """The timeline took the breach but the complaint's flag was not written (a crash in
    between): the redelivered breach, a duplicate for the timeline, still sets it."""
    complaints = db["complaints"]
    await complaints.insert_one(complaint())
    await db[TIMELINES].insert_one(
        {"_id": TID, "_applied": ["b2"], "history": [], "overdue": True, "sla_version": 2}
    )
    view = await intake_apply(complaints, breached("b2", 2))
    assert view["overdue"] and view["history"] == complaint()["history"]


async def test_a_stale_first_event_creates_no_timeline_of_its_own(db: Any) -> None:
    """Events racing to create the timeline: an older one that loses finds the newer state."""
    complaints = db["complaints"]
    await complaints.insert_one(complaint())
    view = await intake_apply(complaints, deadlines_set("d2", 2), breached("b1", 1))
    assert not view["overdue"] and [h["action"] for h in view["history"]] == [
        "received",
        "deadlines_set",
    ]


# -- a late escalation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "status", "shown"),
    [
        ("closed", "closed", "closed"),
        ("archived", "closed", "closed"),
        ("resolved", "followed_up", "followed_up"),
        ("in_progress", "in_progress", "escalated"),
        ("awaiting_reporter", "in_progress", "escalated"),
        (None, "routed", "escalated"),
    ],
)
async def test_a_late_escalation_never_hides_a_resolved_or_closed_report(
    db: Any, state: str | None, status: str, shown: str
) -> None:
    complaints = db["complaints"]
    fields = {"status": status, **({"state": state} if state else {})}
    await complaints.insert_one(complaint(**fields))
    escalation = events_pb2.OmbudsmanEscalation(meta=meta(f"{TID}:ombudsman:escalation"))
    projection = TrackingProjection(complaints)
    for _ in range(2):  # the second time is a redelivery
        await projection.apply("escalations", [delivery(escalation)], escalation_update)
        view = await read_view(complaints, TID, {})
        assert view is not None
        assert view["status"] == shown and view.get("state") == state
        assert view["escalated"] is True  # it was escalated: the flag says so in any state
    assert [h["action"] for h in view["history"]] == ["received", "escalated"]


def officer_action(event_id: str, action: str, before: str, after: str) -> events_pb2.CaseAction:
    """An officer's CaseAction on the report, 5 s in."""
    return events_pb2.CaseAction(
        meta=meta(event_id, s(5)),
        action=action,
        actor_role="officer",
        from_state=before,
        to_state=after,
        public_note="Sudah kami tangani",
    )


@pytest.mark.parametrize("escalation_first", [True, False])
async def test_escalation_and_resolution_end_the_same_in_either_order(
    db: Any, escalation_first: bool
) -> None:
    """The Ombudsman escalation (lapor.escalations) and the institution's resolution
    (lapor.cases.actions) race on two topics: the report shows the follow-up for the
    reporter to confirm, and the escalated flag, whichever arrives first."""
    complaints = db["complaints"]
    await complaints.insert_one(complaint(status="in_progress", state="in_progress"))
    escalation = events_pb2.OmbudsmanEscalation(meta=meta(f"{TID}:ombudsman:escalation"))
    resolved = officer_action("r1", "resolved", "in_progress", "resolved")
    tracking = TrackingProjection(complaints)
    cases = CaseActionProjection(complaints)

    async def escalate() -> None:
        await tracking.apply("escalations", [delivery(escalation)], escalation_update)

    async def resolve() -> None:
        await cases.apply([delivery(resolved)])

    for step in (escalate, resolve) if escalation_first else (resolve, escalate):
        await step()
    view = await read_view(complaints, TID, {})
    assert view is not None
    assert (view["state"], view["status"], view["escalated"]) == (
        "resolved",
        "followed_up",
        True,
    )


async def test_a_redelivered_escalation_leaves_a_later_case_action_s_status(db: Any) -> None:
    """Escalated, then the institution responds (status from the case's state), then the
    escalation is delivered again (the consumer restarted before committing it): the status
    stays the response's."""
    complaints = db["complaints"]
    await complaints.insert_one(complaint(status="routed", state="assigned"))
    escalation = events_pb2.OmbudsmanEscalation(meta=meta(f"{TID}:ombudsman:escalation"))
    responded = officer_action("c1", "responded", "assigned", "in_progress")
    tracking = TrackingProjection(complaints)
    await tracking.apply("escalations", [delivery(escalation)], escalation_update)
    assert (await read_view(complaints, TID, {}))["status"] == "escalated"
    await CaseActionProjection(complaints).apply([delivery(responded)])
    await tracking.apply("escalations", [delivery(escalation)], escalation_update)
    view = await read_view(complaints, TID, {})
    assert view is not None and (view["status"], view["escalated"]) == ("in_progress", True)

"""Routing's database restored to a time T and its consumer groups rewound (deploy/README.md,
"Backups and restore"): routing hears again the events it had handled after T and publishes
what it concludes from them again. Against the real database process, with what routing
publishes fed to notify and to intake's tracking view, each with its real store: the same
conclusion reaches the reporter once, a different one (the rules changed since) reaches them
and the tracking view."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from lapor.v1 import common_pb2, events_pb2

from services.common.clock import ManualClock
from services.common.kafka import Delivery
from services.common.mongo import Doc
from services.common.outbox import OutboxMessage, OutboxRelay, queue_for
from services.common.regions import default_regions
from services.common.topics import CASE_ACTIONS, COMPLAINTS_ROUTED
from services.intake.case_view import CaseActionProjection
from services.intake.projection import TrackingProjection, read_view, routed_update
from services.notify.handlers import NotifyHandlers
from services.routing.actions import CaseActions
from services.routing.case_events import CaseEventHandlers
from services.routing.case_store import CaseStore
from services.routing.domain.case import Command, Role
from services.routing.domain.classifier import TopicClassifier
from services.routing.domain.directory import Directory
from services.routing.domain.rules import DEFAULT_RULES_FILE, RuleSet
from services.routing.handlers import RoutingHandlers
from tests.integration.test_notify_store import SpyProvider
from tests.integration.test_routing_early_privacy import raised
from tests.integration.test_routing_received import received
from tests.integration.test_routing_stale_auto_close import auto_close_due
from tests.integration.test_sla_store import T0
from tests.integration.test_tracking_projection import received as complaint
from tests.support import RecordingPublisher

FIRST = "pemda-51.08/dpupr"  # where the shipped rules send a road report in 51.08
SECOND = "pemda-51.08/dlh"  # where the changed rules below send it


class Routing:
    """Routing's handlers on their own collection, its outbox relayed to a recorder."""

    def __init__(self, db: Any) -> None:
        regions = default_regions()
        self.directory = Directory.seed(regions)
        self.rules = RuleSet.load(DEFAULT_RULES_FILE, self.directory)
        self.clock = ManualClock(T0 + timedelta(minutes=15))
        self.cases = db["routing_cases"]
        store = CaseStore(self.cases)
        self.handlers = RoutingHandlers(
            store,
            lambda: self.directory,
            lambda: self.rules,
            TopicClassifier.default(),
            regions,
            self.clock,
        )
        self.actions = CaseActions(store, lambda: self.directory, self.clock)
        self.events = CaseEventHandlers(self.actions, store)
        self.handlers.after_stored = self.events.apply_early_privacy
        self.publisher = RecordingPublisher()
        self.relay = OutboxRelay([self.cases], self.publisher, queues=[queue_for(self.cases)])

    async def published(self) -> list[OutboxMessage]:
        """What the relay publishes now (everything stored since the last call)."""
        start = len(self.publisher.sent)
        while await self.relay.relay_once():
            pass
        return self.publisher.sent[start:]

    async def backup(self) -> list[Doc]:
        return await self.cases.find({}).to_list(None)

    async def restore(self, backup: list[Doc]) -> None:
        """The database as it was at the backup (its outbox was empty then: relayed)."""
        await self.cases.delete_many({})
        await queue_for(self.cases).delete_many({})
        if backup:
            await self.cases.insert_many(backup)


class Downstream:
    """notify and intake's tracking view, consuming what routing published."""

    def __init__(self, db: Any) -> None:
        self.inbox = db["inbox"]
        self.provider = SpyProvider(self.inbox)
        self.notify = NotifyHandlers(db["notifications"], self.provider, ManualClock(T0))
        self.complaints = db["complaints"]
        self.tracking = TrackingProjection(self.complaints)
        self.case_view = CaseActionProjection(self.complaints)

    async def start(self, tid: str) -> None:
        await self.notify.ensure_indexes()
        await self.complaints.insert_one(complaint(tid))  # intake stored the report

    async def consume(self, messages: list[OutboxMessage]) -> None:
        routed = [
            Delivery(events_pb2.ComplaintRouted.FromString(m.value), m.key, 0, n)
            for n, m in enumerate(messages)
            if m.topic == COMPLAINTS_ROUTED
        ]
        actions = [
            Delivery(events_pb2.CaseAction.FromString(m.value), m.key, 0, n)
            for n, m in enumerate(messages)
            if m.topic == CASE_ACTIONS
        ]
        if routed:
            await self.notify.handle_routed(routed)
            await self.tracking.apply(COMPLAINTS_ROUTED, routed, routed_update)
        if actions:
            await self.notify.handle_case_actions(actions)
            await self.case_view.apply(actions)

    async def texts(self, tid: str) -> list[str]:
        """What the reporter received, in order."""
        inbox = await self.inbox.find({"tracking_id": tid}).to_list(None)
        by_id = {d["_id"]: d["text"] for d in inbox}
        return [by_id[nid] for nid in self.provider.sent if nid in by_id]

    async def view(self, tid: str) -> Doc:
        view = await read_view(self.complaints, tid, {})
        assert view is not None
        return view


def confirmed(tid: str) -> Delivery[events_pb2.ReporterAction]:
    message = events_pb2.ReporterAction(
        meta=common_pb2.EventMeta(event_id=f"{tid}:confirm", tracking_id=tid),
        action="confirmed",
        rating=5,
    )
    return Delivery(message, tid, 0, 0)


def changed_rules(directory: Directory) -> RuleSet:
    """The rules after a change made between the first routing and the restore."""
    rule = {"name": "jalan-dlh", "topic": "jalan", "to": "unit:dlh"}
    return RuleSet.parse({"version": "2026-12-01.1", "rule": [rule]}, directory)


async def fresh(db: Any) -> tuple[Routing, Downstream, str]:
    """Routing and what consumes its events, on one database, and a new report's id that
    intake's view already holds (received)."""
    routing, downstream = Routing(db), Downstream(db)
    await routing.handlers.ensure_indexes()
    tid = uuid.uuid4().hex[:10]
    await downstream.start(tid)
    return routing, downstream, tid


async def test_a_complaint_routed_again_after_a_restore_reaches_the_reporter_once(
    db: Any,
) -> None:
    routing, downstream, tid = await fresh(db)
    backup = await routing.backup()  # T: before the complaint was received

    await routing.handlers.handle_received([received(tid)])
    first = await routing.published()
    await downstream.consume(first)
    assert len(await downstream.texts(tid)) == 1

    # Restored to T, groups rewound: the complaint is heard and routed again, the same way.
    await routing.restore(backup)
    routing.clock.advance(timedelta(hours=3))
    await routing.handlers.handle_received([received(tid)])
    again = await routing.published()
    assert len(again) == 1 and again[0].topic == COMPLAINTS_ROUTED  # published again
    await downstream.consume(again)

    holder = routing.directory.get(FIRST)
    assert holder is not None
    assert len(downstream.provider.sent) == 1  # not sent a second time
    [text] = await downstream.texts(tid)
    assert holder.name in text
    assert await downstream.notify.notifications.count_documents({"tracking_id": tid}) == 1
    view = await downstream.view(tid)
    assert [h["action"] for h in view["history"]] == ["received", "routed"]
    assert view["institution"]["id"] == FIRST


async def test_a_complaint_routed_elsewhere_after_a_restore_reaches_the_reporter_and_view(
    db: Any,
) -> None:
    """The rules changed between the first routing and the restore: the new decision is a
    new event, so the reporter is told the new institution and the view follows it."""
    routing, downstream, tid = await fresh(db)
    backup = await routing.backup()

    await routing.handlers.handle_received([received(tid)])
    await downstream.consume(await routing.published())

    await routing.restore(backup)
    routing.rules = changed_rules(routing.directory)
    await routing.handlers.handle_received([received(tid)])
    await downstream.consume(await routing.published())

    first_name = routing.directory.get(FIRST)
    second_name = routing.directory.get(SECOND)
    assert first_name is not None and second_name is not None
    texts = await downstream.texts(tid)
    assert len(texts) == 2
    assert first_name.name in texts[0] and second_name.name in texts[1]
    view = await downstream.view(tid)
    assert view["institution"]["id"] == SECOND
    assert [h["action"] for h in view["history"]] == ["received", "routed", "routed"]


async def test_a_holder_changed_by_a_restore_reaches_the_view_through_the_next_action(
    db: Any,
) -> None:
    """Once the view holds a case state (here from a privacy raise), a late ComplaintRouted
    no longer moves its holder; the reporter's action applied again after the restore, now
    on a case held by another institution, is a new CaseAction and moves it."""
    routing, downstream, tid = await fresh(db)
    backup = await routing.backup()

    await routing.handlers.handle_received([received(tid)])
    await routing.events.handle_reporter([raised(tid, "confidential")])
    await downstream.consume(await routing.published())
    assert (await downstream.view(tid))["institution"]["id"] == FIRST

    await routing.restore(backup)
    routing.rules = changed_rules(routing.directory)
    await routing.handlers.handle_received([received(tid)])
    await routing.events.handle_reporter([raised(tid, "confidential")])
    again = await routing.published()
    assert [m.topic for m in again] == [COMPLAINTS_ROUTED, CASE_ACTIONS]
    await downstream.consume(again)

    view = await downstream.view(tid)
    assert view["institution"]["id"] == SECOND
    # (the view lists the complaint's own history, then its timeline's)
    actions = sorted(h["action"] for h in view["history"])
    assert actions == ["privacy_raised", "privacy_raised", "received", "routed", "routed"]


@pytest.mark.parametrize("cause", ["reporter_confirmed", "auto_close_due"])
async def test_a_case_action_applied_again_after_a_restore_reaches_the_reporter_once(
    db: Any, cause: str
) -> None:
    """The report was resolved at T; after T the reporter confirmed it (or sla's auto-close
    closed it). Restored to T, routing applies that event again: the same closure, the same
    CaseAction, one "closed" message and one history line."""
    routing, downstream, tid = await fresh(db)
    await routing.handlers.handle_received([received(tid)])
    await routing.actions.act(None, tid, Command("accepted", Role.OFFICER))
    await routing.actions.act(None, tid, Command("resolved", Role.OFFICER, text="Selesai."))
    await downstream.consume(await routing.published())
    backup = await routing.backup()  # T: resolved
    sent_before = len(downstream.provider.sent)

    async def close() -> None:
        if cause == "reporter_confirmed":
            await routing.events.handle_reporter([confirmed(tid)])
        else:
            await routing.events.handle_sla([auto_close_due(tid, T0 + timedelta(days=10))])

    routing.clock.advance(timedelta(days=10))
    await close()
    await downstream.consume(await routing.published())
    assert len(downstream.provider.sent) == sent_before + 1  # "closed"

    await routing.restore(backup)
    routing.clock.advance(timedelta(hours=1))
    await close()
    again = await routing.published()
    assert [m.topic for m in again] == [CASE_ACTIONS]  # published again
    await downstream.consume(again)

    assert len(downstream.provider.sent) == sent_before + 1
    closed = [t for t in await downstream.texts(tid) if "telah selesai" in t]
    assert len(closed) == 1
    view = await downstream.view(tid)
    closing = [h for h in view["history"] if h["action"] in ("confirmed", "auto_closed")]
    assert len(closing) == 1 and view["state"] == "closed"

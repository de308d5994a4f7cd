"""A late ``auto_close_due`` armed for a resolution the reporter rejected must not close the
case the institution has resolved again (it would cut the reporter's new confirm-or-reject
window to nothing; closed is final). Against the real database process."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from lapor.v1 import common_pb2, events_pb2

from services.common.clock import ManualClock
from services.common.kafka import Delivery
from services.routing.case_events import CaseEventHandlers
from services.routing.domain.access import Actor
from services.routing.domain.case import Command, Role
from tests.integration.test_routing_early_privacy import received, wired
from tests.integration.test_sla_store import T0


def auto_close_due(tid: str, due: Any, version: int = 0) -> Delivery[events_pb2.SlaEvent]:
    message = events_pb2.SlaEvent(
        meta=common_pb2.EventMeta(event_id=f"{tid}:auto_close:{due}", tracking_id=tid),
        clocks_version=version,
        auto_close_due=events_pb2.AutoCloseDue(),
    )
    message.auto_close_due.due_at.FromDatetime(due)
    return Delivery(message, tid, 0, 0)


async def resolved_case(db: Any, clock: ManualClock) -> tuple[CaseEventHandlers, str, Actor]:
    """A routed report its institution accepted and resolved at the clock's time."""
    handlers, events = wired(db, clock)
    await handlers.ensure_indexes()
    tid = uuid.uuid4().hex[:10]
    await handlers.handle_received([received(tid)])
    case = await db["cases"].find_one({"_id": tid})
    officer = Actor("petugas", case["institution_id"], Role.OFFICER)
    await events.actions.act(officer, tid, Command("accepted", Role.OFFICER))
    await events.actions.act(officer, tid, Command("resolved", Role.OFFICER, text="Selesai."))
    return events, tid, officer


async def test_an_auto_close_armed_for_an_earlier_resolution_is_ignored(db: Any) -> None:
    clock = ManualClock(T0)
    events, tid, officer = await resolved_case(db, clock)
    act = events.actions.act
    first_resolution = T0
    first_due = first_resolution + timedelta(days=10)
    clock.set(first_due - timedelta(minutes=1))
    await act(None, tid, Command("rejected", Role.REPORTER, reason="Masih berlubang."))
    clock.set(first_due + timedelta(minutes=5))
    await act(officer, tid, Command("resolved", Role.OFFICER, text="Sudah diaspal ulang."))

    # The first resolution's auto-close, fired at its due time, arrives only now.
    await events.handle_sla([auto_close_due(tid, first_due)])
    after = await db["cases"].find_one({"_id": tid})
    assert after["state"] == "resolved" and after["reopen_count"] == 1

    # The new resolution's own auto-close closes it.
    await events.handle_sla([auto_close_due(tid, first_due + timedelta(days=10, minutes=5))])
    assert (await db["cases"].find_one({"_id": tid}))["state"] == "closed"


async def test_an_auto_close_older_than_the_clocks_applied_is_ignored(db: Any) -> None:
    """sla's clocks moved on (a newer clocks_version applied here): the event is stale."""
    events, tid, _officer = await resolved_case(db, ManualClock(T0))
    await db["cases"].update_one({"_id": tid}, {"$set": {"sla_version": 9}})
    await events.handle_sla([auto_close_due(tid, T0 + timedelta(days=10), version=7)])
    assert (await db["cases"].find_one({"_id": tid}))["state"] == "resolved"
    await events.handle_sla([auto_close_due(tid, T0 + timedelta(days=10), version=10)])
    assert (await db["cases"].find_one({"_id": tid}))["state"] == "closed"

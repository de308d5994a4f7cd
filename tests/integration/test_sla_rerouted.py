"""A report routed again with another institution, against the real database: after a
restore of routing's database routing routes the reports received since again, and a
different decision (rules or directory changed) is a new ComplaintRouted
(``<received id>:routed:<institution>``) for a report whose clocks sla already keeps. sla
follows it as it follows the case action making the same move (docs/sla.md, "How the
case's actions drive the clocks"); the same decision, a redelivery or a closed report change
nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from lapor.v1 import common_pb2, events_pb2

from services.common.outbox import OUTBOX
from services.common.topics import COMPLAINTS_ROUTED
from services.sla.handlers import SlaHandlers
from tests.integration.test_sla_content import consumed, stored
from tests.integration.test_sla_store import T0, action, delivery, meta, parts
from tests.integration.test_sla_tallies import recount, stored_counts

__all__ = ["parts"]  # the fixture, shared with test_sla_store

QUEUE = "verification-queue"
PEMDA = common_pb2.Institution(id="pemda-51.08", name="Pemerintah Kabupaten Badung")
DPUPR = common_pb2.Institution(id="pemda-51.08/dpupr", name="Dinas PUPR Kabupaten Badung")
PLN = common_pb2.Institution(id="nasional-pln", name="PT PLN (Persero)")


def routed(tid: str, to: str | common_pb2.Institution, at: float) -> events_pb2.ComplaintRouted:
    """Routing's decision as it publishes it: the id derived from the received event and
    the institution (services/routing/codec.py `routed_event_id`)."""
    institution = common_pb2.Institution(id=to, name="") if isinstance(to, str) else to
    message = events_pb2.ComplaintRouted(
        meta=meta(tid, f"{tid}:received:routed:{institution.id}", at),
        institution=institution,
        holder_ancestors=["pemda-51.08"] if institution.id.startswith("pemda-51.08/") else [],
        classification=common_pb2.CLASSIFICATION_COMPLAINT,
        region_code="51.08",
        timezone="Asia/Makassar",
        topic="jalan",
    )
    message.received_at.FromDatetime(T0)
    return message


def clocks(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["clocks"]}


def queued(doc: dict[str, Any]) -> list[events_pb2.SlaEvent]:
    """The deadlines_set events the report's own outbox holds (those of later writes)."""
    return [events_pb2.SlaEvent.FromString(e["value"]) for e in doc.get(OUTBOX, [])]


def counted(outcome: str) -> float:
    return consumed(outcome, COMPLAINTS_ROUTED)


async def held_by_pemda(handlers: SlaHandlers, *steps: tuple[str, str]) -> str:
    """A report routed to PEMDA at 0 s and accepted at 1 s, then `steps` (action, the state
    it leaves) one second apart; its tracking id."""
    tid = uuid.uuid4().hex[:8]
    await handlers.handle_routed([delivery(routed(tid, PEMDA, 0))])
    acts = [("accepted", "in_progress"), *steps]
    await handlers.handle_actions(
        [
            delivery(action(tid, name, n + 1, to_state=state, institution=PEMDA))
            for n, (name, state) in enumerate(acts)
        ]
    )
    return tid


async def test_from_the_queue_to_an_institution_is_a_verification(parts: Any, db: Any) -> None:
    """First decision: the national verification queue; after the restore: the government.
    The verification clock is met at the new decision, the resolution clock starts there,
    the holder changes, the Ombudsman's 60 days still count from receipt, and a
    deadlines_set tells routing and intake the new dates."""
    handlers, _, _, clock = parts
    tid = uuid.uuid4().hex[:8]
    await handlers.handle_routed([delivery(routed(tid, QUEUE, 0))])
    first = await stored(db, tid)
    clock.set(T0 + timedelta(seconds=8))
    applied = counted("applied")
    again = routed(tid, PEMDA, 8)
    await handlers.handle_routed([delivery(again)])
    doc = await stored(db, tid)
    assert counted("applied") == applied + 1
    assert (doc["institution_id"], doc["institution_name"]) == (PEMDA.id, PEMDA.name)
    assert doc["case_state"] == "assigned"
    assert doc["card"]["top_institution"] == "pemda-51.08"
    after, before = clocks(doc), clocks(first)
    assert after["verification"]["state"] == "met"
    assert after["verification"]["stopped_at"] == T0 + timedelta(seconds=8)
    assert after["resolution"]["state"] == "running"
    assert after["resolution"]["started_at"] == T0 + timedelta(seconds=8)
    assert after["first_response"] == before["first_response"]
    assert after["ombudsman"] == before["ombudsman"]
    assert after["ombudsman"]["started_at"] == T0
    assert doc["timeline"][-1]["action"] == "rerouted"
    assert doc["timeline"][-1]["detail"] == PEMDA.name
    [event] = queued(doc)
    assert event.meta.event_id == f"{tid}:deadlines:{again.meta.event_id}"
    assert event.institution_id == PEMDA.id
    assert event.clocks_version == doc["version"] == 2
    assert [(d.clock, d.state) for d in event.deadlines_set.deadlines] == [
        ("first_response", "running"),
        ("verification", "met"),
        ("ombudsman", "running"),
        ("resolution", "running"),
    ]
    assert await stored_counts(db) == await recount(db)


async def test_from_one_institution_to_another_is_a_forward(parts: Any, db: Any) -> None:
    """First decision: the government, which accepted it; after the restore: its unit. The
    holder, its name and ancestors change and the case is assigned again, as after a
    forward; the deadlines stay (a forward moves none), so no deadlines_set goes out."""
    handlers, *_ = parts
    tid = uuid.uuid4().hex[:8]
    await handlers.handle_routed([delivery(routed(tid, PEMDA, 0))])
    accepted = action(tid, "accepted", 2, to_state="in_progress", institution=PEMDA)
    await handlers.handle_actions([delivery(accepted)])
    first = await stored(db, tid)
    await handlers.handle_routed([delivery(routed(tid, DPUPR, 8))])
    doc = await stored(db, tid)
    assert (doc["institution_id"], doc["institution_name"]) == (DPUPR.id, DPUPR.name)
    assert doc["institution_ancestors"] == ["pemda-51.08"]
    assert doc["case_state"] == "assigned"
    assert doc["clocks"] == first["clocks"]
    assert queued(doc) == []
    assert doc["version"] == first["version"] + 1
    # and on to another government: the report card follows the holder
    await handlers.handle_routed([delivery(routed(tid, PLN, 9))])
    doc = await stored(db, tid)
    assert (doc["institution_id"], doc["card"]["top_institution"]) == (PLN.id, PLN.id)
    assert await stored_counts(db) == await recount(db)


async def test_an_institution_back_to_the_queue_is_a_return_to_the_queue(
    parts: Any, db: Any
) -> None:
    """As after ``declined``: the queue holds it, in verification; the clocks stay."""
    handlers, *_ = parts
    tid = uuid.uuid4().hex[:8]
    await handlers.handle_routed([delivery(routed(tid, PEMDA, 0))])
    first = await stored(db, tid)
    await handlers.handle_routed([delivery(routed(tid, QUEUE, 8))])
    doc = await stored(db, tid)
    assert (doc["institution_id"], doc["case_state"]) == (QUEUE, "in_verification")
    assert doc["clocks"] == first["clocks"]


async def test_the_same_institution_under_another_id_changes_nothing(parts: Any, db: Any) -> None:
    handlers, *_ = parts
    tid = uuid.uuid4().hex[:8]
    await handlers.handle_routed([delivery(routed(tid, PEMDA, 0))])
    first = await stored(db, tid)
    same = routed(tid, PEMDA, 8)
    same.meta.event_id = f"{tid}:received-again:routed:{PEMDA.id}"
    duplicates = counted("duplicate")
    await handlers.handle_routed([delivery(same)])
    assert await stored(db, tid) == first
    assert counted("duplicate") == duplicates + 1


async def test_a_redelivered_rerouting_changes_nothing(parts: Any, db: Any) -> None:
    """The new decision applies once; delivered again (alone or in one batch with itself),
    nothing moves; nor does the first decision delivered again afterwards."""
    handlers, *_ = parts
    tid = uuid.uuid4().hex[:8]
    original = routed(tid, QUEUE, 0)
    await handlers.handle_routed([delivery(original)])
    again = routed(tid, PEMDA, 8)
    await handlers.handle_routed([delivery(again), delivery(again)])
    doc = await stored(db, tid)
    assert doc["version"] == 2
    duplicates = counted("duplicate")
    await handlers.handle_routed([delivery(again)])
    await handlers.handle_routed([delivery(original)])
    assert await stored(db, tid) == doc
    assert counted("duplicate") == duplicates + 2


async def test_a_closed_report_is_not_routed_again(parts: Any, db: Any) -> None:
    """No action leads out of a closed or archived case: the new decision is ignored
    (counted), and so is its redelivery."""
    handlers, *_ = parts
    tid = await held_by_pemda(handlers, ("resolved", "resolved"), ("confirmed", "closed"))
    closed = await stored(db, tid)
    ignored = counted("ignored")
    again = routed(tid, PLN, 8)
    await handlers.handle_routed([delivery(again)])
    await handlers.handle_routed([delivery(again)])
    assert await stored(db, tid) == closed
    assert counted("ignored") == ignored + 2


async def test_a_pending_information_request_ends_with_the_rerouting(parts: Any, db: Any) -> None:
    """Routing's case starts afresh at the new institution: the request pending at the old
    one ends as with ``info_provided`` (the paused time is given back)."""
    handlers, *_ = parts
    tid = await held_by_pemda(handlers, ("info_requested", "awaiting_reporter"))
    paused = clocks(await stored(db, tid))["resolution"]
    assert paused["pauses"][-1][1] is None
    again = routed(tid, PLN, 8)
    await handlers.handle_routed([delivery(again)])
    doc = await stored(db, tid)
    resolution = clocks(doc)["resolution"]
    assert (doc["info_pending"], doc["case_state"]) == (False, "assigned")
    assert resolution["pauses"] == [[T0 + timedelta(seconds=2), T0 + timedelta(seconds=8)]]
    assert resolution["due_at"] == paused["due_at"] + timedelta(seconds=6)
    event = queued(doc)[-1]
    assert event.meta.event_id == f"{tid}:deadlines:{again.meta.event_id}"
    assert event.institution_id == PLN.id


async def test_a_resolved_report_is_open_again_at_the_new_institution(parts: Any, db: Any) -> None:
    """As after ``rejected``: auto-close stops, resolution starts a new cycle, the Ombudsman
    clock runs again to its deadline from receipt."""
    handlers, *_ = parts
    tid = await held_by_pemda(handlers, ("resolved", "resolved"))
    ombudsman = clocks(await stored(db, tid))["ombudsman"]
    assert ombudsman["state"] == "met"
    await handlers.handle_routed([delivery(routed(tid, PLN, 8))])
    doc = await stored(db, tid)
    after = clocks(doc)
    assert (doc["institution_id"], doc["case_state"]) == (PLN.id, "assigned")
    assert after["auto_close"]["state"] == "stopped"
    assert (after["resolution"]["cycle"], after["resolution"]["state"]) == (1, "running")
    assert after["resolution"]["started_at"] == T0 + timedelta(seconds=8)
    assert after["ombudsman"]["state"] == "running"
    assert after["ombudsman"]["due_at"] == ombudsman["due_at"]
    assert await stored_counts(db) == await recount(db)


async def test_an_action_routing_decided_later_keeps_its_holder(parts: Any, db: Any) -> None:
    """The two topics are consumed apart: the unit's forward (decided after the new
    routing) reaches sla before the new routing itself. The forward's holder stays; the
    routing only moves what the forward did not (here nothing)."""
    handlers, *_ = parts
    tid = uuid.uuid4().hex[:8]
    await handlers.handle_routed([delivery(routed(tid, PLN, 0))])
    forwarded = action(tid, "forwarded", 9, to_state="assigned", institution=DPUPR)
    await handlers.handle_actions([delivery(forwarded)])
    await handlers.handle_routed([delivery(routed(tid, PEMDA, 8))])  # decided before it
    doc = await stored(db, tid)
    assert (doc["institution_id"], doc["institution_name"]) == (DPUPR.id, DPUPR.name)
    assert doc["routed_to"] == PEMDA.id


async def test_a_later_action_out_of_the_queue_still_lets_the_rerouting_verify(
    parts: Any, db: Any
) -> None:
    """First decision: the queue. Routing's new decision (the government) and a case action
    routing derived after it (holder: the government) arrive the other way round: the
    action sets the holder and starts the resolution clock, the routing then meets the
    verification clock at its own time (it no longer waits in the queue)."""
    handlers, *_ = parts
    tid = uuid.uuid4().hex[:8]
    await handlers.handle_routed([delivery(routed(tid, QUEUE, 0))])
    raised = action(tid, "privacy_raised", 9, to_state="assigned", institution=PEMDA)
    await handlers.handle_actions([delivery(raised)])
    await handlers.handle_routed([delivery(routed(tid, PEMDA, 8))])
    doc = await stored(db, tid)
    after = clocks(doc)
    assert (doc["institution_id"], doc["case_state"]) == (PEMDA.id, "assigned")
    assert after["verification"]["state"] == "met"
    assert after["verification"]["stopped_at"] == T0 + timedelta(seconds=8)
    assert after["resolution"]["started_at"] == T0 + timedelta(seconds=9)

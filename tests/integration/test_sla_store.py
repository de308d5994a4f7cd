"""SLA's handlers, sweep and officer use cases against the real database process:
idempotency, actions that arrive before the routing, compare-and-set between two sweepers,
the Ombudsman contract built from stored state."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lapor.v1 import common_pb2, events_pb2

from services.common.auth import Principal
from services.common.clock import ManualClock
from services.common.errors import FailedPrecondition, NotFound, ValidationError
from services.common.kafka import Delivery
from services.common.outbox import OUTBOX, PUBLISHED, queue_for
from services.sla.cards import ReportCards
from services.sla.domain.actions import Rules
from services.sla.domain.calendar import WorkingCalendar
from services.sla.domain.policy import parse_policy
from services.sla.handlers import SlaHandlers
from services.sla.officers import ExtendDeadline, Officers
from services.sla.relay import BATCH_OUTBOX, SlaRelay
from services.sla.sweep import Sweeper
from tests.unit.test_sla_actions import POLICY

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
OFFICER = Principal("officer-1", "pemda-51.08", "officer")


class Tree:
    def is_within(self, id: str, ancestor_id: str) -> bool:
        return id == ancestor_id or id.startswith(ancestor_id + "/")


def delivery(message: Any) -> Delivery[Any]:
    return Delivery(message, message.meta.tracking_id, 0, 0)


def meta(tid: str, event_id: str, at: float) -> common_pb2.EventMeta:
    m = common_pb2.EventMeta(event_id=event_id, tracking_id=tid)
    m.occurred_at.FromDatetime(T0 + timedelta(seconds=at))
    return m


def routed(tid: str, institution: str = "pemda-51.08") -> events_pb2.ComplaintRouted:
    return events_pb2.ComplaintRouted(
        meta=meta(tid, f"{tid}:routed", 0),
        institution=common_pb2.Institution(id=institution, name="Pemkab Badung"),
        classification=common_pb2.CLASSIFICATION_COMPLAINT,
        region_code="51.08",
        timezone="Asia/Makassar",
        topic="jalan",
    )


def action(tid: str, name: str, at: float, **kw: Any) -> events_pb2.CaseAction:
    return events_pb2.CaseAction(meta=meta(tid, f"{tid}:{name}:{at}", at), action=name, **kw)


@pytest.fixture
def parts(db: Any) -> tuple[SlaHandlers, Sweeper, Officers, ManualClock]:
    policy = parse_policy(POLICY, Path("."))
    clock = ManualClock(T0)
    rules = Rules(policy, WorkingCalendar())
    cases = db["clocks"]
    return (
        SlaHandlers(cases, rules, clock),
        Sweeper(cases, policy, clock),
        Officers(cases, rules, Tree(), clock),
        clock,
    )


def outbox_ids(doc: dict[str, Any]) -> list[str]:
    """Every event the report holds: queued with it (kept for replay), published or not."""
    return [e["id"] for e in [*doc.get(PUBLISHED, []), *doc.get(OUTBOX, [])]]


async def swept_events(db: Any, tids: list[str]) -> list[dict[str, Any]]:
    """The sweep's events stored in the batch outbox, for these reports."""
    wanted = set(tids)
    return [
        e async for doc in db[BATCH_OUTBOX].find({}) for e in doc["events"] if e["key"] in wanted
    ]


async def test_routed_twice_is_stored_once(parts: Any, db: Any) -> None:
    handlers, *_ = parts
    tid = uuid.uuid4().hex[:8]
    await handlers.handle_routed([delivery(routed(tid))])
    await handlers.handle_routed([delivery(routed(tid))])
    doc = await db["clocks"].find_one({"_id": tid})
    assert doc["version"] == 1
    assert outbox_ids(doc) == [f"{tid}:deadlines:{tid}:routed"]
    # queued once, in the transaction that started the clocks; nothing in the document
    queued = await queue_for(db["clocks"]).find({"key": tid}).to_list(None)
    assert [e["id"] for e in queued] == [f"{tid}:deadlines:{tid}:routed"]
    assert doc[OUTBOX] == []


async def test_actions_before_routing_are_applied_in_order_once(parts: Any, db: Any) -> None:
    handlers, *_ = parts
    tid = uuid.uuid4().hex[:8]
    responded = action(tid, "responded", 5, to_state="in_progress")
    asked = action(tid, "info_requested", 6, to_state="awaiting_reporter")
    await handlers.handle_actions([delivery(responded), delivery(asked)])
    await handlers.handle_actions([delivery(responded)])  # redelivered
    await handlers.handle_received(
        [delivery(events_pb2.ComplaintReceived(meta=meta(tid, "r", 0), title="T", body="B"))]
    )
    await handlers.handle_routed([delivery(routed(tid))])
    doc = await db["clocks"].find_one({"_id": tid})
    assert "_early" not in doc
    assert doc["content"] == {"title": "T", "body": "B"}
    assert [c["state"] for c in doc["clocks"]] == ["met", "running", "running"]
    assert doc["info_pending"] is True
    assert [e["action"] for e in doc["timeline"]] == ["routed", "responded", "info_requested"]
    await handlers.handle_actions([delivery(asked)])  # again: no change
    assert (await db["clocks"].find_one({"_id": tid}))["version"] == doc["version"]


async def test_refused_action_changes_no_clock(parts: Any, db: Any) -> None:
    handlers, *_ = parts
    tid = uuid.uuid4().hex[:8]
    await handlers.handle_routed([delivery(routed(tid))])
    before = await db["clocks"].find_one({"_id": tid})
    await handlers.handle_actions([delivery(action(tid, "info_provided", 5))])
    after = await db["clocks"].find_one({"_id": tid})
    assert after["clocks"] == before["clocks"]
    assert after["timeline"][-1]["action"] == "info_provided_refused"


async def test_two_sweepers_emit_each_transition_once(parts: Any, db: Any) -> None:
    handlers, sweeper, _, clock = parts
    tids = [uuid.uuid4().hex[:8] for _ in range(30)]
    await handlers.handle_routed([delivery(routed(t)) for t in tids])
    other = Sweeper(db["clocks"], sweeper.policy, clock, batch=7)
    emitted: list[str] = []
    for step in (24, 30, 40, 50, 70, 1000):
        clock.set(T0 + timedelta(seconds=step))
        await asyncio.gather(sweeper.sweep_once(), other.sweep_once())
    emitted += [e["id"] for e in await swept_events(db, tids)]
    async for doc in db["clocks"].find({"_id": {"$in": tids}}):
        assert [i for i in outbox_ids(doc) if ":deadlines:" not in i] == []
    assert len(emitted) == len(set(emitted)) == 30 * 9  # 2 warnings, 2 x 3 rungs, 1 escalation
    per_case = sorted(i.split(":", 1)[1] for i in emitted if i.startswith(tids[0]))
    assert per_case == sorted(
        [
            "first_response:warning",
            "first_response:breach",
            "first_response:breach:institution_admins",
            "first_response:breach:national_admins",
            "resolution:warning",
            "resolution:breach",
            "resolution:breach:institution_admins",
            "resolution:breach:national_admins",
            "ombudsman:escalation",
        ]
    )
    doc = await db["clocks"].find_one({"_id": tids[0]})
    assert doc["escalated"] is True


def _counted() -> float:
    from prometheus_client import REGISTRY

    total = 0.0
    for name in (
        "lapor_sla_warnings_total",
        "lapor_sla_breaches_total",
        "lapor_sla_escalations_total",
    ):
        for metric in REGISTRY.collect():
            for sample in metric.samples:
                if sample.name == name:
                    total += sample.value
    return total


async def test_racing_sweepers_count_each_transition_once(parts: Any, db: Any) -> None:
    handlers, sweeper, _, clock = parts
    tids = [uuid.uuid4().hex[:8] for _ in range(40)]
    await handlers.handle_routed([delivery(routed(t)) for t in tids])
    rivals = [Sweeper(db["clocks"], sweeper.policy, clock, batch=b) for b in (5, 11)]
    before = _counted()
    clock.set(T0 + timedelta(seconds=1000))  # everything at once: 9 transitions per report
    await asyncio.gather(sweeper.sweep_once(), *(r.sweep_once() for r in rivals))
    assert _counted() - before == 40 * 9


async def test_one_sweep_moves_every_due_report_batch_after_batch(parts: Any, db: Any) -> None:
    """Batches of 7 written in chunks of 3: all 40 reports, due at the same instant (ties
    across batch borders), move in one sweep, each once."""
    handlers, sweeper, _, clock = parts
    tids = [uuid.uuid4().hex[:8] for _ in range(40)]
    await handlers.handle_routed([delivery(routed(t)) for t in tids])
    small = Sweeper(db["clocks"], sweeper.policy, clock, batch=7, write_chunk=3)
    clock.set(T0 + timedelta(seconds=1000))
    assert await small.sweep_once() >= 40
    emitted = [e["id"] for e in await swept_events(db, tids)]
    assert len(emitted) == len(set(emitted)) == 40 * 9
    assert (
        await db["clocks"].count_documents(
            {"_id": {"$in": tids}, "next_due_at": {"$lte": clock.now()}}
        )
        == 0
    )
    assert await small.sweep_once() == 0


async def test_escalation_carries_the_full_contract(parts: Any, db: Any) -> None:
    handlers, sweeper, _, clock = parts
    tid = uuid.uuid4().hex[:8]
    await handlers.handle_received(
        [
            delivery(
                events_pb2.ComplaintReceived(meta=meta(tid, "r", 0), title="Jalan", body="Rusak")
            )
        ]
    )
    await handlers.handle_routed([delivery(routed(tid, "pemda-51.08/dinas-pu"))])
    clock.set(T0 + timedelta(seconds=1000))
    await sweeper.sweep_once()
    entry = next(e for e in await swept_events(db, [tid]) if e["topic"] == "lapor.escalations")
    esc = events_pb2.OmbudsmanEscalation.FromString(entry["value"])
    assert esc.meta.event_id == f"{tid}:ombudsman:escalation"
    assert (esc.institution.id, esc.unit.id) == ("pemda-51.08", "pemda-51.08/dinas-pu")
    assert (esc.title, esc.body, esc.region_code, esc.topic) == ("Jalan", "Rusak", "51.08", "jalan")
    assert esc.classification == common_pb2.CLASSIFICATION_COMPLAINT
    assert "60 days" in esc.reason
    actions = [t.action for t in esc.timeline]
    assert "routed" in actions and "deadline_breach" in actions and "deadline_escalation" in actions
    assert [d.clock for d in esc.deadlines] == ["first_response", "resolution", "ombudsman"]


async def test_extension_rules_through_the_use_case(parts: Any, db: Any) -> None:
    handlers, _, officers, _ = parts
    tid = uuid.uuid4().hex[:8]
    await handlers.handle_routed([delivery(routed(tid, "pemda-51.08/dinas-pu"))])
    with pytest.raises(NotFound, match="no report"):  # another institution's: as if unknown
        await officers.extend(
            Principal("x", "pemda-52", "officer"),
            ExtendDeadline(tid, "resolution", timedelta(seconds=5), "survey"),
        )
    with pytest.raises(ValidationError) as err:
        await officers.extend(OFFICER, ExtendDeadline(tid, "", timedelta(seconds=60), "survey"))
    assert err.value.violations[0].field == "extension"
    with pytest.raises(ValidationError) as err:
        await officers.extend(OFFICER, ExtendDeadline(tid, "", timedelta(seconds=5), " "))
    assert err.value.violations[0].field == "reason"
    unchanged = await db["clocks"].find_one({"_id": tid})
    assert unchanged["version"] == 1
    case, _ = await officers.extend(
        OFFICER, ExtendDeadline(tid, "", timedelta(seconds=20), "survey")
    )
    assert case.clock("resolution").due_at == T0 + timedelta(seconds=70)
    with pytest.raises(FailedPrecondition, match="extended 1 time"):
        await officers.extend(OFFICER, ExtendDeadline(tid, "", timedelta(seconds=1), "again"))
    doc = await db["clocks"].find_one({"_id": tid})
    extended = doc["timeline"][-1]
    assert extended["action"] == "extended" and extended["actor"] == OFFICER.role
    assert (extended["actor_id"], extended["actor_institution"]) == (
        OFFICER.subject,
        OFFICER.institution,
    )
    assert len([i for i in outbox_ids(doc) if ":deadlines:" in i]) == 2


async def test_report_card_from_stored_cases(parts: Any, db: Any) -> None:
    handlers, sweeper, _, clock = parts
    tids = [uuid.uuid4().hex[:8] for _ in range(3)]
    await handlers.handle_routed([delivery(routed(t, f"pemda-9{tids[0]}")) for t in tids])
    await handlers.handle_actions([delivery(action(tids[0], "responded", 5))])
    await handlers.handle_actions([delivery(action(tids[0], "resolved", 6, to_state="resolved"))])
    confirmed = action(tids[0], "confirmed", 7, to_state="closed", rating=4)  # routing applied it
    await handlers.handle_actions([delivery(confirmed)])
    clock.set(T0 + timedelta(seconds=31))
    await sweeper.sweep_once()
    card = await ReportCards(db["clocks"], clock).card(f"pemda-9{tids[0]}", "2026-03")
    assert (card.received, card.first_responses_within_deadline) == (3, 1)
    assert (card.resolved_within_deadline, card.first_responses_overdue) == (1, 2)
    assert (card.average_satisfaction, card.red_mark) == (4.0, True)


class Recorder:
    def __init__(self) -> None:
        self.ids: list[str] = []

    async def publish_many(self, messages: list[Any]) -> None:
        await asyncio.sleep(0.01)  # let the other relay and the sweep interleave
        self.ids += [m.id for m in messages]


async def test_two_relays_and_a_sweep_lose_nothing(parts: Any, db: Any) -> None:
    handlers, sweeper, _, clock = parts
    tids = [uuid.uuid4().hex[:8] for _ in range(40)]
    await handlers.handle_routed([delivery(routed(t)) for t in tids])
    first, second = Recorder(), Recorder()
    relays = [SlaRelay(db["clocks"], p, batch_size=15, batches=2) for p in (first, second)]

    async def sweep_while_relaying() -> None:
        for step in (24, 30, 40, 50, 70, 1000):
            clock.set(T0 + timedelta(seconds=step))
            await sweeper.sweep_once()
            await asyncio.sleep(0)

    async def relay(r: SlaRelay) -> None:
        for _ in range(200):
            await r.relay_once()
            await asyncio.sleep(0)

    await asyncio.gather(sweep_while_relaying(), relay(relays[0]), relay(relays[1]))
    while await relays[0].relay_once():
        pass
    published = set(first.ids) | set(second.ids)
    expected = {f"{t}:deadlines:{t}:routed" for t in tids} | {
        f"{t}:{s}"
        for t in tids
        for s in (
            "first_response:warning",
            "first_response:breach",
            "first_response:breach:institution_admins",
            "first_response:breach:national_admins",
            "resolution:warning",
            "resolution:breach",
            "resolution:breach:institution_admins",
            "resolution:breach:national_admins",
            "ombudsman:escalation",
        )
    }
    assert published == expected
    assert await db["clocks"].count_documents({"_outbox_pending": True}) == 0
    assert await db[BATCH_OUTBOX].count_documents({"pending": True}) == 0


async def test_report_card_request_rules(parts: Any, db: Any) -> None:
    cards = ReportCards(db["clocks"], parts[3])
    with pytest.raises(ValidationError) as err:
        await cards.card("", "2026-13")
    assert [v.field for v in err.value.violations] == ["institution_id", "period"]
    with pytest.raises(ValidationError):
        await cards.all_cards("March")


async def test_the_escalation_names_the_unit_that_holds_the_report_now(parts: Any, db: Any) -> None:
    """Routed to the verification queue, verified to a government, forwarded to its unit:
    the Ombudsman is told the unit's name, not the queue's."""
    handlers, sweeper, _, clock = parts
    tid = uuid.uuid4().hex[:8]
    await handlers.handle_routed([delivery(routed(tid, "verification-queue"))])
    pemda = common_pb2.Institution(id="pemda-51.08", name="Pemerintah Kabupaten Badung")
    unit = common_pb2.Institution(id="pemda-51.08/dpupr", name="Dinas PUPR Kabupaten Badung")
    await handlers.handle_actions(
        [
            delivery(action(tid, "verified", 5, to_state="assigned", institution=pemda)),
            delivery(
                action(
                    tid,
                    "forwarded",
                    6,
                    to_state="assigned",
                    institution=unit,
                    holder_ancestors=["pemda-51.08"],
                )
            ),
        ]
    )
    clock.set(T0 + timedelta(seconds=1000))
    await sweeper.sweep_once()
    entry = next(e for e in await swept_events(db, [tid]) if e["topic"] == "lapor.escalations")
    esc = events_pb2.OmbudsmanEscalation.FromString(entry["value"])
    assert (esc.unit.id, esc.unit.name) == ("pemda-51.08/dpupr", "Dinas PUPR Kabupaten Badung")
    assert esc.institution.id == "pemda-51.08"


async def test_the_ombudsman_days_and_the_card_month_count_from_receipt(
    parts: Any, db: Any
) -> None:
    """Received 31 January 23:55 WIB, routed 1 February 00:10 (routing behind): the report
    belongs to January's card and the Ombudsman's deadline counts from 23:55; first response
    counts from routing."""
    handlers, *_ = parts
    tid = uuid.uuid4().hex[:8]
    receipt = datetime(2026, 1, 31, 16, 55, tzinfo=UTC)  # 23:55 WIB
    message = routed(tid)
    message.timezone = "Asia/Jakarta"
    message.meta.occurred_at.FromDatetime(receipt + timedelta(minutes=15))
    message.received_at.FromDatetime(receipt)
    await handlers.handle_routed([delivery(message)])
    doc = await db["clocks"].find_one({"_id": tid})
    assert doc["received_at"] == receipt and doc["card"]["period"] == "2026-01"
    starts = {c["name"]: c["started_at"] for c in doc["clocks"]}
    assert starts["ombudsman"] == receipt
    assert starts["first_response"] == receipt + timedelta(minutes=15)
    # An event from before the field: routing's time, as before.
    old_tid = uuid.uuid4().hex[:8]
    old = routed(old_tid)
    old.meta.occurred_at.FromDatetime(receipt + timedelta(minutes=15))
    await handlers.handle_routed([delivery(old)])
    old_doc = await db["clocks"].find_one({"_id": old_tid})
    assert old_doc["received_at"] == receipt + timedelta(minutes=15)


async def test_a_sweep_round_that_finishes_is_marked_for_the_stall_alert(
    parts: Any, db: Any
) -> None:
    """`lapor_sla_sweep_last_success_timestamp_seconds` moves with each round that finishes
    (the LaporSlaSweepStalled alert watches it) and not with one that fails."""
    import time

    from prometheus_client import REGISTRY

    _, sweeper, _, _ = parts

    def last() -> float:
        return REGISTRY.get_sample_value("lapor_sla_sweep_last_success_timestamp_seconds") or 0.0

    async def rounds(until: Any) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(sweeper.run(stop, interval=0.01))
        for _ in range(500):
            if until():
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 10)

    started = time.time()
    await rounds(lambda: last() >= started)
    assert last() >= started
    marked = last()
    calls = 0

    async def failing() -> int:
        nonlocal calls
        calls += 1
        raise RuntimeError("database gone")

    sweeper.sweep_once = failing  # type: ignore[method-assign]
    await rounds(lambda: calls >= 3)
    assert calls >= 3 and last() == marked

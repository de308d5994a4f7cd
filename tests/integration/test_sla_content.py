"""sla keeps a report's title and body (``content``, from ComplaintReceived) only for the
Ombudsman's escalation event, against the real database: the escalation's write drops it
(the event was built from the document read before), so does the action that closes or
archives the case, and a redelivered or late ComplaintReceived does not bring it back to
such a report (counted as "ignored", never retried)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from lapor.v1 import events_pb2

from services.common.metrics import EVENTS_CONSUMED
from services.common.topics import COMPLAINTS_RECEIVED
from services.sla.handlers import SlaHandlers
from services.sla.sweep import HELD_ALL, Sweeper
from tests.integration.test_sla_store import (
    T0,
    action,
    delivery,
    meta,
    parts,
    routed,
    swept_events,
)

__all__ = ["parts"]  # the fixture, shared with test_sla_store


def received(tid: str, title: str = "Jalan rusak", body: str = "Lubang di Jl. Sunset") -> Any:
    message = events_pb2.ComplaintReceived(
        meta=meta(tid, f"{tid}:received", 0), title=title, body=body
    )
    return delivery(message)


def consumed(outcome: str, topic: str = COMPLAINTS_RECEIVED) -> float:
    return EVENTS_CONSUMED.labels(topic=topic, outcome=outcome)._value.get()


async def stored(db: Any, tid: str) -> dict[str, Any]:
    doc = await db["clocks"].find_one({"_id": tid})
    assert doc is not None
    return doc


def escalations(events: list[dict[str, Any]]) -> list[events_pb2.OmbudsmanEscalation]:
    return [
        events_pb2.OmbudsmanEscalation.FromString(e["value"])
        for e in events
        if e["topic"] == "lapor.escalations"
    ]


@pytest.mark.parametrize(("name", "state"), [("confirmed", "closed"), ("archived", "archived")])
async def test_a_closed_or_archived_report_keeps_no_content_and_a_redelivery_adds_none(
    parts: Any, db: Any, name: str, state: str
) -> None:
    handlers, *_ = parts
    tid = uuid.uuid4().hex[:8]
    await handlers.handle_received([received(tid)])
    await handlers.handle_routed([delivery(routed(tid))])
    await handlers.handle_actions([delivery(action(tid, "responded", 5, to_state="in_progress"))])
    content = {"title": "Jalan rusak", "body": "Lubang di Jl. Sunset"}
    assert (await stored(db, tid))["content"] == content  # open: still wanted

    await handlers.handle_actions([delivery(action(tid, name, 6, to_state=state))])
    doc = await stored(db, tid)
    assert doc["case_state"] == state and "content" not in doc

    applied, ignored = consumed("applied"), consumed("ignored")
    await handlers.handle_received([received(tid), received(tid)])  # redelivered, twice
    assert "content" not in await stored(db, tid)
    assert (consumed("applied"), consumed("ignored")) == (applied, ignored + 2)


async def test_the_escalation_carries_the_content_and_its_write_drops_it(
    parts: Any, db: Any
) -> None:
    handlers, sweeper, _, clock = parts
    tid = uuid.uuid4().hex[:8]
    await handlers.handle_received([received(tid, "Jalan", "Rusak")])
    await handlers.handle_routed([delivery(routed(tid))])
    clock.set(T0 + timedelta(seconds=1000))
    await sweeper.sweep_once()

    [esc] = escalations(await swept_events(db, [tid]))
    assert (esc.title, esc.body) == ("Jalan", "Rusak")
    doc = await stored(db, tid)
    assert doc["escalated"] is True and "content" not in doc

    ignored = consumed("ignored")
    await handlers.handle_received([received(tid, "Jalan", "Rusak")])  # a replay of intake
    assert "content" not in await stored(db, tid)
    assert consumed("ignored") == ignored + 1


async def test_content_arriving_after_the_escalation_is_not_kept(parts: Any, db: Any) -> None:
    """ComplaintReceived held back past the Ombudsman's deadline (a broker that lost it, then
    an outbox replay): the escalation went out without title and body, and stays the one
    escalation of the report; the content it no longer needs is not stored."""
    handlers, sweeper, _, clock = parts
    tid = uuid.uuid4().hex[:8]
    await handlers.handle_routed([delivery(routed(tid))])
    clock.set(T0 + timedelta(seconds=1000))
    await sweeper.sweep_once()
    [esc] = escalations(await swept_events(db, [tid]))
    assert (esc.title, esc.body) == ("", "")

    await handlers.handle_received([received(tid)])

    doc = await stored(db, tid)
    assert doc["escalated"] is True and "content" not in doc
    clock.set(T0 + timedelta(seconds=2000))
    await sweeper.sweep_once()
    assert len(escalations(await swept_events(db, [tid]))) == 1


class Gate:
    """The escalation gate (port `services.sla.sweep.EscalationGate`) at a set horizon."""

    def __init__(self, until: datetime) -> None:
        self.until = until
        self.known_unreachable = False

    def horizon(self) -> datetime | None:
        return self.until

    async def refresh(self) -> datetime | None:
        return self.until


async def test_a_held_escalation_keeps_the_content_until_it_goes_out(parts: Any, db: Any) -> None:
    handlers, sweeper, _, clock = parts
    tid = uuid.uuid4().hex[:8]
    gate = Gate(HELD_ALL)
    gated = Sweeper(db["clocks"], sweeper.policy, clock, gate=gate)
    await handlers.handle_received([received(tid, "Jalan", "Rusak")])
    await handlers.handle_routed([delivery(routed(tid))])
    clock.set(T0 + timedelta(seconds=1000))
    await gated.sweep_once()  # warnings and breaches happen, the escalation is held
    doc = await stored(db, tid)
    assert doc["escalated"] is False and doc["content"] == {"title": "Jalan", "body": "Rusak"}
    assert escalations(await swept_events(db, [tid])) == []

    gate.until = clock.now()
    clock.set(T0 + timedelta(seconds=1100))
    await gated.sweep_once()
    [esc] = escalations(await swept_events(db, [tid]))
    assert (esc.title, esc.body) == ("Jalan", "Rusak")
    doc = await stored(db, tid)
    assert doc["escalated"] is True and "content" not in doc


async def test_a_report_not_routed_yet_keeps_the_content_for_its_clocks(
    parts: Any, db: Any
) -> None:
    handlers, *_ = parts
    tid = uuid.uuid4().hex[:8]
    applied = consumed("applied")
    await handlers.handle_received([received(tid, "T", "B")])
    await handlers.handle_received([received(tid, "T", "B")])  # redelivered
    await handlers.handle_routed([delivery(routed(tid))])
    doc = await stored(db, tid)
    assert doc["content"] == {"title": "T", "body": "B"} and doc["version"] == 1
    assert consumed("applied") == applied + 2


class RacedOnce:
    """The clocks collection as the handler sees it, except that on the first bulk write
    another writer holds the report in a state the upsert's filter does not match: the
    server refuses the upsert with a duplicate key, as it does when another upsert created
    the document between the match and the insert (a race no test can time from outside
    the server). The report is open again before the second try."""

    def __init__(self, real: Any, tid: str) -> None:
        self._real = real
        self._tid = tid
        self.writes = 0

    async def bulk_write(self, ops: Any, **kwargs: Any) -> Any:
        self.writes += 1
        if self.writes > 1:
            return await self._real.bulk_write(ops, **kwargs)
        await self._real.update_one({"_id": self._tid}, {"$set": {"escalated": True}})
        try:
            return await self._real.bulk_write(ops, **kwargs)
        finally:
            await self._real.update_one({"_id": self._tid}, {"$set": {"escalated": False}})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


async def test_an_upsert_refused_once_is_tried_once_more(parts: Any, db: Any) -> None:
    handlers, *_ = parts
    tid = uuid.uuid4().hex[:8]
    await handlers.handle_routed([delivery(routed(tid))])
    raced = RacedOnce(db["clocks"], tid)
    racing = SlaHandlers(raced, handlers.rules, handlers.clock)  # type: ignore[arg-type]
    applied, ignored = consumed("applied"), consumed("ignored")

    await racing.handle_received([received(tid, "T", "B")])

    assert raced.writes == 2
    assert (await stored(db, tid))["content"] == {"title": "T", "body": "B"}
    assert (consumed("applied"), consumed("ignored")) == (applied + 1, ignored)


async def test_a_backfill_drops_the_content_older_versions_kept(parts: Any, db: Any) -> None:
    """Reports escalated, closed or archived before sla dropped their content itself lose it
    in the backfill; open ones keep it (the Ombudsman's event may still need it)."""
    from services.sla.handlers import drop_unneeded_content

    handlers, *_ = parts
    tids = [uuid.uuid4().hex[:8] for _ in range(4)]
    for tid in tids:
        await handlers.handle_routed([delivery(routed(tid))])
        await handlers.handle_received([received(tid)])
    escalated, closed, archived, open_ = tids
    # As an older version left them: final or escalated, content still there.
    await db["clocks"].update_one({"_id": escalated}, {"$set": {"escalated": True}})
    await db["clocks"].update_one({"_id": closed}, {"$set": {"case_state": "closed"}})
    await db["clocks"].update_one({"_id": archived}, {"$set": {"case_state": "archived"}})

    assert await drop_unneeded_content(db["clocks"]) == 3
    assert await drop_unneeded_content(db["clocks"]) == 0  # idempotent
    kept = {d["_id"] async for d in db["clocks"].find({"content": {"$exists": True}})}
    assert kept & set(tids) == {open_}

"""The counters behind the open-report and report-card gauges (services/sla/tally.py) stay
equal to a recount of the stored reports through routing, actions, ratings, extensions,
sweeps by racing replicas, redelivered events and replayed actions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from lapor.v1 import events_pb2
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession

from services.common.auth import Principal
from services.common.mongo import TRANSIENT_ERRORS
from services.sla import tally
from services.sla.cards import ReportCards
from services.sla.officers import ExtendDeadline
from services.sla.sweep import Sweeper
from services.sla.tally import (
    TALLIES,
    Counts,
    cas_and_count,
    ensure_indexes,
    from_reports,
    open_key,
    tallies_of,
)
from tests.integration.test_sla_store import T0, action, delivery, meta, parts, routed

__all__ = ["parts"]  # the fixture, shared with test_sla_store


async def stored_counts(db: Any) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    async for doc in db[TALLIES].find({}):
        fields = {
            k: v for k, v in doc.items() if isinstance(v, int) and not k.startswith("_") and v
        }
        if fields:
            out[doc["_id"]] = fields
    return out


async def recount(db: Any) -> dict[str, dict[str, int]]:
    rows = [(d.get("card"), d.get("rating")) async for d in db["clocks"].find({})]
    return from_reports(rows)


def rating(tid: str, value: int, n: int) -> Any:
    """Routing's CaseAction for a confirm it applied, with the reporter's rating."""
    return delivery(
        events_pb2.CaseAction(
            meta=meta(tid, f"{tid}:c{n}", 7), action="confirmed", to_state="closed", rating=value
        )
    )


def gauge(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_counters_follow_every_write_once(parts: Any, db: Any) -> None:
    handlers, sweeper, officers, clock = parts
    inst = f"pemda-9{uuid.uuid4().hex[:6]}"
    tids = [uuid.uuid4().hex[:8] for _ in range(12)]
    unit = f"{inst}/dinas-pu"
    await handlers.handle_routed([delivery(routed(t, unit)) for t in tids])
    await handlers.handle_routed([delivery(routed(t, unit)) for t in tids[:4]])  # redelivered
    assert await stored_counts(db) == await recount(db)
    assert (await stored_counts(db))["open|red|complaint"] == {"n": 12}

    responded = [delivery(action(t, "responded", 5, to_state="in_progress")) for t in tids[:6]]
    resolved = [delivery(action(t, "resolved", 6, to_state="resolved")) for t in tids[:3]]
    await handlers.handle_actions(responded + resolved)
    await handlers.handle_actions(responded[:2] + resolved[:1])  # redelivered: no change
    await handlers.handle_actions([rating(tids[0], 4, 1), rating(tids[1], 2, 2)])
    await handlers.handle_actions([rating(tids[0], 4, 1)])  # redelivered
    await handlers.handle_actions([rating(tids[1], 5, 3)])  # reopened, confirmed again
    refused = events_pb2.CaseAction(  # a confirm routing refused carries no rating
        meta=meta(tids[2], f"{tids[2]}:r", 7),
        action="reporter_action_refused",
        refused_action="confirmed",
        to_state="resolved",
    )
    await handlers.handle_actions([delivery(refused)])
    await officers.extend(
        Principal("o", inst, "officer"),
        ExtendDeadline(tids[7], "", timedelta(seconds=20), "survey"),
    )
    assert await stored_counts(db) == await recount(db)

    rivals = [Sweeper(db["clocks"], sweeper.policy, clock, batch=b) for b in (3, 5)]
    for step in (24, 31, 40, 55, 1000):
        clock.set(T0 + timedelta(seconds=step))
        await asyncio.gather(sweeper.sweep_once(), *(r.sweep_once() for r in rivals))
        assert await stored_counts(db) == await recount(db)
    # A replayed action after the sweeps (e.g. an outbox replay upstream): nothing moves.
    await handlers.handle_actions(responded)
    assert await stored_counts(db) == await recount(db)

    cards = ReportCards(db["clocks"], clock)
    card = await cards.card(inst, "2026-03")
    assert (card.received, card.resolved_within_deadline, card.escalated) == (12, 3, 9)
    assert card.first_responses_within_deadline == 6
    assert card.average_satisfaction == 4.5
    assert [c.institution_id for c in await cards.all_cards("2026-03")].count(inst) == 1

    await cards.refresh_gauges()
    counted = await recount(db)
    for key, fields in counted.items():
        if key.startswith("open|"):
            _, colour, handling = key.split("|")
            assert (
                gauge("lapor_sla_open_reports", colour=colour, handling_class=handling)
                == fields["n"]
            )
    assert gauge("lapor_sla_overdue_reports") == counted.get("overdue", {}).get("n", 0)


async def test_two_reports_creating_the_same_counter_both_count(db: Any, monkeypatch: Any) -> None:
    """Two compare-and-sets of different reports whose transactions both create the same new
    counter document at the same moment: the database refuses one of them (a write conflict
    on SecantusDB), which is run again, so both apply and the counter holds both."""
    cases = db["clocks"]
    await ensure_indexes(tallies_of(cases))
    await cases.insert_many([{"_id": "a", "version": 1}, {"_id": "b", "version": 1}])
    key = open_key("red", f"new-{uuid.uuid4().hex[:6]}")
    counts: Counts = {key: {"n": 1}}
    both_inside = asyncio.Barrier(2)
    calls = 0
    real_apply = tally.apply_counts

    async def apply_together(
        tallies: Any, counts: Counts, session: AsyncClientSession | None
    ) -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:  # both first attempts hold their report's write, then race
            await asyncio.wait_for(both_inside.wait(), 10)
        await real_apply(tallies, counts, session)

    monkeypatch.setattr(tally, "apply_counts", apply_together)
    update = {"$inc": {"version": 1}}
    applied = await asyncio.wait_for(
        asyncio.gather(
            cas_and_count(cases, "a", 1, update, counts),
            cas_and_count(cases, "b", 1, update, counts),
        ),
        30,
    )
    assert applied == [True, True]
    assert calls == 3  # the loser ran once more
    assert (await stored_counts(db))[key] == {"n": 2}
    assert [d["version"] async for d in cases.find({}).sort("_id")] == [2, 2]


async def test_a_counted_write_fails_fast_when_the_database_is_gone(
    db_to_kill: tuple[AsyncMongoClient[Any], Callable[[], None]],
) -> None:
    """A report's compare-and-set with its counters (a transaction) against a database that
    went away raises the driver's transient error within the server-selection timeout, so a
    consumer retries its batch and the sweep its round, instead of the driver retrying the
    transaction for two minutes while they wait. Its own database: this one is killed."""
    client, kill = db_to_kill
    cases = client["it"]["clocks"]
    await ensure_indexes(tallies_of(cases))
    await cases.insert_one({"_id": "r", "version": 1})
    counts: Counts = {open_key("red", "complaint"): {"n": 1}}
    update = {"$inc": {"version": 1}}
    assert await cas_and_count(cases, "r", 1, update, counts)
    kill()
    with pytest.raises(TRANSIENT_ERRORS):
        await asyncio.wait_for(cas_and_count(cases, "r", 2, update, counts), 30)


async def test_a_gauge_refresh_never_shows_the_series_missing(db: Any) -> None:
    """A refresh sets the new values and removes only the series that went away; one that
    fails half-way leaves the last values (it used to clear the gauges first)."""
    from services.common.clock import ManualClock

    cases = db[f"clocks_{uuid.uuid4().hex[:6]}"]
    tallies = tallies_of(cases)
    handling = f"test-{uuid.uuid4().hex[:6]}"
    await tallies.insert_one(
        {
            "_id": f"open|red|{handling}",
            "kind": "open",
            "colour": "red",
            "handling_class": handling,
            "n": 3,
        }
    )
    cards = ReportCards(cases, ManualClock(T0))
    await cards.refresh_gauges()
    assert gauge("lapor_sla_open_reports", colour="red", handling_class=handling) == 3

    async def failing(_period: str) -> list[Any]:
        raise RuntimeError("database gone")

    real = cards.all_cards
    cards.all_cards = failing  # type: ignore[method-assign]
    await tallies.update_one({"_id": f"open|red|{handling}"}, {"$set": {"n": 5}})
    with pytest.raises(RuntimeError):
        await cards.refresh_gauges()
    assert gauge("lapor_sla_open_reports", colour="red", handling_class=handling) == 3
    cards.all_cards = real  # type: ignore[method-assign]

    await tallies.delete_one({"_id": f"open|red|{handling}"})
    await cards.refresh_gauges()
    labels = {"colour": "red", "handling_class": handling}
    assert REGISTRY.get_sample_value("lapor_sla_open_reports", labels) is None  # gone

"""The counters behind the open-report and report-card gauges (services/sla/tally.py) stay
equal to a recount of the stored reports through routing, actions, ratings, extensions,
sweeps by racing replicas, redelivered events and replayed actions."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from lapor.v1 import events_pb2
from prometheus_client import REGISTRY

from services.common.auth import Principal
from services.sla.cards import ReportCards
from services.sla.officers import ExtendDeadline
from services.sla.sweep import Sweeper
from services.sla.tally import TALLIES, from_reports
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

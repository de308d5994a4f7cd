"""What a closed case keeps only for a while goes LAPOR_ROUTING_CLOSED_TRIM_DAYS after it
closed: its published events (the outbox replay's copy) and its text's fingerprint, against
the real database process. The officers' view of the case does not change, a case closed
more recently and an open one keep both, and 0 keeps everything (docs/officers-api.md)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from lapor.v1 import common_pb2, events_pb2
from prometheus_client import REGISTRY

from services.common.clock import ManualClock
from services.common.kafka import Delivery
from services.common.lease import LEASES, Lease
from services.common.outbox import PENDING, PUBLISHED, OutboxRelay, queue_for
from services.common.regions import default_regions
from services.routing.case_store import CaseStore
from services.routing.domain.access import Actor
from services.routing.domain.case import Command, Role
from services.routing.domain.directory import Directory
from services.routing.queries import CaseQueries
from services.routing.retention import TRIM_LEASE, ClosedCaseTrim
from services.routing.views import report_view
from tests.integration.test_lease import hands_over_when_cancelled
from tests.integration.test_routing_early_privacy import raised, received, wired
from tests.integration.test_sla_store import T0
from tests.support import Calls, RecordingPublisher, polled

D = timedelta(days=90)
DIRECTORY = Directory.seed(default_regions())
ADMIN = Actor("admin", "", Role.NATIONAL_ADMIN)


def confirmed(tid: str, n: int = 1) -> Delivery[events_pb2.ReporterAction]:
    message = events_pb2.ReporterAction(
        meta=common_pb2.EventMeta(event_id=f"{tid}:confirmed:{n}", tracking_id=tid),
        action="confirmed",
        rating=5,
    )
    return Delivery(message, tid, 0, 0)


def trimmed_total() -> float:
    return REGISTRY.get_sample_value("lapor_routing_cases_trimmed_total") or 0.0


class Routing:
    """Routing's handlers on the real database, its outbox relayed to a recorder."""

    def __init__(self, db: Any, clock: ManualClock) -> None:
        self.clock = clock
        self.handlers, self.events = wired(db, clock)
        self.cases = db["cases"]
        self.store = CaseStore(self.cases)
        self.publisher = RecordingPublisher()
        self.relay = OutboxRelay([self.cases], self.publisher, queues=[queue_for(self.cases)])

    async def case(self) -> tuple[str, Actor]:
        tid = uuid.uuid4().hex[:10]
        await self.handlers.handle_received([received(tid)])
        case = await self.cases.find_one({"_id": tid})
        return tid, Actor("petugas", case["institution_id"], Role.OFFICER)

    async def act(self, actor: Actor | None, tid: str, command: Command) -> None:
        await self.events.actions.act(actor, tid, command)

    async def resolved(self) -> str:
        tid, officer = await self.case()
        await self.act(officer, tid, Command("accepted", Role.OFFICER))
        await self.act(officer, tid, Command("resolved", Role.OFFICER, text="Sudah diaspal."))
        return tid

    async def views(self) -> dict[str, Any]:
        """Every case as the officers' API shows it to a national admin."""
        page = await CaseQueries(self.store, lambda: DIRECTORY).reports(ADMIN, page_size=100)
        back = await self.store.linked_from([d["_id"] for d in page.docs])
        return {
            d["_id"]: report_view(d, ADMIN, DIRECTORY, [*d.get("similar", []), *back[d["_id"]]])
            for d in page.docs
        }

    async def doc(self, tid: str) -> Any:
        return await self.cases.find_one({"_id": tid})


@pytest.fixture
async def routing(db: Any) -> Routing:
    """Routing's handlers on the test database, its indexes made, the clock at T0."""
    routing = Routing(db, ManualClock(T0))
    await routing.handlers.ensure_indexes()
    return routing


async def test_a_case_closed_longer_ago_than_the_trim_keeps_no_events_or_fingerprint(
    routing: Routing,
) -> None:
    closed, recent = await routing.resolved(), await routing.resolved()
    archived, officer = await routing.case()
    still_open = await routing.resolved()
    routing.clock.advance(timedelta(days=1))
    await routing.act(None, closed, Command("confirmed", Role.REPORTER, rating=5))
    await routing.act(officer, archived, Command("declined", Role.OFFICER, reason="Bukan kami."))
    await routing.act(ADMIN, archived, Command("archived", Role.NATIONAL_ADMIN, reason="Ganda."))
    closed_at = routing.clock.now()
    await routing.relay.relay_once()
    # The archived case's reporter raises its privacy at once, and that event is still
    # waiting in its outbox when the trim comes (a relay held up that long).
    await routing.events.handle_reporter([raised(archived, "confidential")])
    routing.clock.advance(timedelta(days=50))
    await routing.act(None, recent, Command("confirmed", Role.REPORTER, rating=4))
    for tid in (closed, archived, recent, still_open):
        doc = await routing.doc(tid)
        assert doc[PUBLISHED] and doc["fingerprint"], tid
    assert (await routing.doc(closed))["closed_at"] == closed_at
    assert (await routing.doc(archived))["closed_at"] == closed_at
    assert (await routing.doc(recent))["closed_at"] == closed_at + timedelta(days=50)
    assert "closed_at" not in await routing.doc(still_open)
    assert (await routing.doc(recent))["similar"]  # linked as near-duplicates at receipt
    indexes = await routing.cases.index_information()
    assert indexes["closed_at_1"].get("sparse") is True  # the trim reads only cases to trim

    trim = ClosedCaseTrim(routing.cases, routing.clock, D, batch=1)  # a batch per case
    routing.clock.set(closed_at + D - timedelta(minutes=1))
    assert await trim.trim() == 0
    routing.clock.set(closed_at + D + timedelta(minutes=1))
    # The relay would put the archived case's waiting event back into the replay copy after
    # a trim, so that case waits for the round after the relay's.
    assert (await routing.doc(archived))[PENDING] is True
    views = await routing.views()
    before = trimmed_total()

    assert await trim.trim() == 1
    await routing.relay.relay_once()
    assert await trim.trim() == 1
    assert await trim.trim() == 0
    assert trimmed_total() - before == 2
    for tid in (closed, archived):
        doc = await routing.doc(tid)
        assert PUBLISHED not in doc and "fingerprint" not in doc and "closed_at" not in doc
        assert doc["history"] and doc["_applied"]  # the record and the de-duplication stay
    for tid in (recent, still_open):
        doc = await routing.doc(tid)
        assert doc[PUBLISHED] and doc["fingerprint"], tid
    assert await routing.views() == views  # officers see the same reports, links included

    # A replay no longer republishes the trimmed cases' events.
    routing.publisher.sent.clear()
    await routing.relay.replay()
    assert {m.key for m in routing.publisher.sent} == {recent, still_open}


async def test_an_event_published_after_the_trim_is_trimmed_in_its_turn(routing: Routing) -> None:
    tid = await routing.resolved()
    await routing.act(None, tid, Command("confirmed", Role.REPORTER, rating=5))
    await routing.relay.relay_once()
    trim = ClosedCaseTrim(routing.cases, routing.clock, D)
    routing.clock.advance(D + timedelta(days=1))
    assert await trim.trim() == 1

    # The reporter confirms again long after: routing refuses and publishes the refusal.
    late = routing.clock.now()
    await routing.events.handle_reporter([confirmed(tid, 2)])
    await routing.relay.relay_once()
    doc = await routing.doc(tid)
    assert [e["id"] for e in doc[PUBLISHED]] == [f"{tid}:confirmed:2:refused"]
    assert doc["closed_at"] == late
    routing.clock.set(late + D + timedelta(minutes=1))
    assert await trim.trim() == 1
    assert PUBLISHED not in await routing.doc(tid)


async def test_an_event_published_after_the_closure_is_kept_as_long_as_from_the_closure(
    routing: Routing,
) -> None:
    tid = await routing.resolved()
    await routing.act(None, tid, Command("confirmed", Role.REPORTER, rating=5))  # day 0
    closed = routing.clock.now()
    await routing.relay.relay_once()
    trim = ClosedCaseTrim(routing.cases, routing.clock, D)

    # On day 89 the reporter confirms again: routing refuses and publishes the refusal.
    routing.clock.set(closed + timedelta(days=89))
    await routing.events.handle_reporter([confirmed(tid, 2)])
    await routing.relay.relay_once()
    late = routing.clock.now()
    assert (await routing.doc(tid))["closed_at"] == late
    routing.clock.set(closed + timedelta(days=91))
    assert await trim.trim() == 0
    doc = await routing.doc(tid)
    assert f"{tid}:confirmed:2:refused" in [e["id"] for e in doc[PUBLISHED]]
    assert doc["fingerprint"]
    routing.clock.set(late + D - timedelta(minutes=1))
    assert await trim.trim() == 0
    routing.clock.set(late + D + timedelta(minutes=1))  # day 179
    assert await trim.trim() == 1
    doc = await routing.doc(tid)
    assert PUBLISHED not in doc and "fingerprint" not in doc and "closed_at" not in doc


async def test_a_trim_of_0_days_keeps_everything(routing: Routing) -> None:
    tid = await routing.resolved()
    await routing.act(None, tid, Command("confirmed", Role.REPORTER, rating=5))
    await routing.relay.relay_once()
    routing.clock.advance(timedelta(days=3650))
    assert await ClosedCaseTrim(routing.cases, routing.clock, timedelta(0)).trim() == 0
    doc = await routing.doc(tid)
    assert doc[PUBLISHED] and doc["fingerprint"] and doc["closed_at"] == T0


async def test_cases_closed_before_the_upgrade_are_dated_from_their_last_change(
    routing: Routing,
) -> None:
    old, trimmed = await routing.resolved(), await routing.resolved()
    still_open = await routing.resolved()
    routing.clock.advance(timedelta(days=2))
    for tid in (old, trimmed):
        await routing.act(None, tid, Command("confirmed", Role.REPORTER, rating=5))
    await routing.relay.relay_once()
    # As an older version stored them: no closed_at; one trimmed already.
    await routing.cases.update_many({}, {"$unset": {"closed_at": ""}})
    await routing.cases.update_one({"_id": trimmed}, {"$unset": {PUBLISHED: "", "fingerprint": ""}})
    trim = ClosedCaseTrim(routing.cases, routing.clock, D)

    assert await trim.date_undated_closures() == 1
    assert await trim.date_undated_closures() == 0  # idempotent
    doc = await routing.doc(old)
    assert doc["closed_at"] == doc["updated_at"] == T0 + timedelta(days=2)
    assert "closed_at" not in await routing.doc(trimmed)  # nothing left to trim
    assert "closed_at" not in await routing.doc(still_open)
    routing.clock.advance(D + timedelta(minutes=1))
    assert await trim.trim() == 1
    assert PUBLISHED not in await routing.doc(old)


async def test_one_replica_trims_and_another_takes_over_when_it_stops(
    routing: Routing, db: Any
) -> None:
    """Each routing replica runs the trim loop; only the holder of the ``routing-trim`` lease
    trims (every replica scanning the same cases each hour would only repeat its work). The
    holder releases the lease as it stops, and another replica trims at once."""
    first = await routing.resolved()
    await routing.act(None, first, Command("confirmed", Role.REPORTER, rating=5))
    await routing.relay.relay_once()
    routing.clock.advance(D + timedelta(minutes=1))

    def replica(name: str) -> tuple[ClosedCaseTrim, Calls]:
        lease = Lease(db, TRIM_LEASE, routing.clock, timedelta(seconds=10), name, keep_every=0.01)
        trim = ClosedCaseTrim(routing.cases, routing.clock, D, lease=lease)
        return trim, Calls(trim, "trim")

    (a, trims_a), (b, trims_b) = replica("a"), replica("b")
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    task_a = asyncio.create_task(a.run(stop_a))
    assert await polled(lambda: trims_a.count == 1, 1000)
    task_b = asyncio.create_task(b.run(stop_b))
    for _ in range(20):  # b checks the lease every 10 ms meanwhile
        await asyncio.sleep(0.01)
    assert (trims_a.count, trims_b.count) == (1, 0)  # a trimmed at start; b stands by
    assert PUBLISHED not in await routing.doc(first)

    second = await routing.resolved()  # closed on a day D ago as well
    await routing.act(None, second, Command("confirmed", Role.REPORTER, rating=5))
    await routing.relay.relay_once()
    await routing.cases.update_one(
        {"_id": second}, {"$set": {"closed_at": T0}}
    )  # closed as long ago as the first
    stop_a.set()
    await asyncio.wait_for(task_a, 10)
    assert await db[LEASES].find_one({"_id": TRIM_LEASE}) is None  # released
    assert await polled(lambda: trims_b.count == 1, 1000)  # b takes over and trims at once
    stop_b.set()
    await asyncio.wait_for(task_b, 10)
    assert PUBLISHED not in await routing.doc(second)
    assert (trims_a.count, trims_b.count) == (1, 1)


class FailingTrim(ClosedCaseTrim):
    """Its trim fails every time (the database away), counting the attempts."""

    attempts = 0

    async def trim(self) -> int:
        self.attempts += 1
        raise ConnectionError("database unreachable")


async def test_a_failed_trim_waits_for_the_next_interval_and_the_loop_lives_on(
    db: Any,
) -> None:
    clock = ManualClock(T0)
    lease = Lease(db, TRIM_LEASE, clock, timedelta(seconds=10), "a", keep_every=0.01)
    trim = FailingTrim(db["cases"], clock, D, lease=lease)
    stop = asyncio.Event()
    task = asyncio.create_task(trim.run(stop))
    checks = Calls(lease, "held")
    assert await polled(lambda: checks.count >= 20 or task.done(), 1000)  # 20 checks as holder
    stop.set()
    await asyncio.wait_for(task, 10)  # ended by stop, not by the error
    assert trim.attempts == 1  # the next try is an hour later


async def test_a_replica_that_takes_the_lease_back_trims_at_once(db: Any) -> None:
    clock = ManualClock(T0)
    ttl = timedelta(seconds=10)
    a = Lease(db, TRIM_LEASE, clock, ttl, "a", keep_every=0.01)
    b = Lease(db, TRIM_LEASE, clock, ttl, "b")
    trim = FailingTrim(db["cases"], clock, D, lease=a)  # its failure changes nothing here
    answers: list[bool] = []
    held = a.held

    async def recorded() -> bool:
        answers.append(await held())
        return answers[-1]

    a.held = recorded  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(trim.run(stop))
    try:
        assert await polled(lambda: trim.attempts == 1, 1000)  # trims as it takes the lease
        # b took the lease over (a paused past its TTL), and a checks it again.
        until = clock.now() + 2 * ttl
        await db[LEASES].update_one({"_id": TRIM_LEASE}, {"$set": {"holder": "b", "until": until}})
        clock.advance(ttl * 0.6)
        assert await polled(lambda: False in answers, 1000)  # a stands by
        await b.release()  # b stops: a takes the lease back
        assert await polled(lambda: trim.attempts == 2, 1000)  # a new turn trims at once
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_trim_cancelled_at_shutdown_hands_its_lease_over(db: Any) -> None:
    lease = Lease(db, TRIM_LEASE, ManualClock(T0), timedelta(seconds=10), "a", keep_every=0.01)
    trim = ClosedCaseTrim(db["cases"], lease.clock, D, lease=lease)
    await hands_over_when_cancelled(db, lease, trim.run)

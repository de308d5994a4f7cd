"""Which failures of the counters' transaction are run again (services/sla/tally.py
``in_transaction``), against the real database process: the errors are the ones the server
and the driver raise (a real write conflict, real duplicate keys in both shapes, a real
type mismatch, a database that is gone, a commit whose outcome is unknown), and "aborted" or
"committed" is read back from the database.

Each run of the work first counts itself in a ``runs`` document, in the transaction: the
stored count is the number of runs that committed (never more than one)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pymongo import AsyncMongoClient, InsertOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from services.common import outbox
from services.common.mongo import TRANSIENT_ERRORS, write_conflict
from services.sla import tally


class Runs:
    """A transaction's work made of steps, one per run (the last one repeats); records what
    each run raised."""

    def __init__(self, things: Any, *steps: Callable[[AsyncClientSession], Awaitable[None]]):
        self.things = things
        self.steps = steps
        self.count = 0
        self.raised: list[type[BaseException]] = []

    async def __call__(self, session: AsyncClientSession) -> str:
        self.count += 1
        await self.things.update_one({"_id": "runs"}, {"$inc": {"n": 1}}, session=session)
        step = self.steps[min(self.count, len(self.steps)) - 1]
        try:
            await step(session)
        except BaseException as exc:
            self.raised.append(type(exc))
            raise
        return "done"

    async def committed(self) -> int:
        return int((await self.things.find_one({"_id": "runs"}))["n"])


async def setup(db: Any) -> Any:
    things = db["things"]
    await things.insert_one({"_id": "taken"})  # a duplicate key for whoever inserts it again
    await things.insert_one({"_id": "held", "n": 0})
    await things.insert_one({"_id": "runs", "n": 0})
    return things


async def test_the_work_runs_in_a_transaction_and_its_result_is_returned(db: Any) -> None:
    things = await setup(db)
    seen: list[bool] = []

    async def inside(session: AsyncClientSession) -> None:
        seen.append(session.in_transaction)

    runs = Runs(things, inside)
    assert await tally.in_transaction(things, runs) == "done"
    assert seen == [True] and runs.count == 1 and await runs.committed() == 1


async def test_a_conflict_and_a_duplicate_key_in_either_shape_are_run_again(db: Any) -> None:
    """A write conflict with another transaction (run again by the shared helper), then a
    duplicate key from a single insert and from a bulk write (run again by the counters'
    helper): each run before the last is aborted, the last one commits."""
    things = await setup(db)
    client = things.database.client
    async with client.start_session() as holder:
        await holder.start_transaction()
        await things.update_one({"_id": "held"}, {"$inc": {"n": 1}}, session=holder)

        async def conflicting(session: AsyncClientSession) -> None:
            await things.update_one({"_id": "held"}, {"$inc": {"n": 10}}, session=session)

        async def released_then_duplicate(session: AsyncClientSession) -> None:
            if holder.in_transaction:
                await holder.abort_transaction()
            await things.insert_one({"_id": "taken"}, session=session)

        async def duplicates_in_bulk(session: AsyncClientSession) -> None:
            await things.bulk_write(
                [InsertOne({"_id": "taken"}), InsertOne({"_id": "taken"})],
                ordered=False,
                session=session,
            )

        async def works(session: AsyncClientSession) -> None:
            await things.update_one({"_id": "held"}, {"$inc": {"n": 100}}, session=session)

        runs = Runs(things, conflicting, released_then_duplicate, duplicates_in_bulk, works)
        assert await asyncio.wait_for(tally.in_transaction(things, runs), 30) == "done"
    assert runs.raised == [OperationFailure, DuplicateKeyError, BulkWriteError]
    assert runs.count == 4
    assert await runs.committed() == 1  # the three failed runs left nothing
    assert (await things.find_one({"_id": "held"}))["n"] == 100  # the holder aborted


async def test_a_duplicate_key_that_stays_raises_after_a_few_runs(db: Any) -> None:
    things = await setup(db)

    async def duplicate(session: AsyncClientSession) -> None:
        await things.insert_one({"_id": "taken"}, session=session)

    runs = Runs(things, duplicate)
    with pytest.raises(DuplicateKeyError):
        await tally.in_transaction(things, runs)
    assert runs.count == tally.DUPLICATE_ATTEMPTS
    assert await runs.committed() == 0


@pytest.mark.parametrize("shape", ["single", "bulk"])
async def test_other_write_errors_raise_at_once(db: Any, shape: str) -> None:
    """A write the server refuses for another reason than a duplicate key (here: $inc of a
    text field), alone or among the updates of a bulk write (as the counters are written),
    is not run again."""
    things = await setup(db)
    await things.insert_one({"_id": "text", "n": "not a number"})

    async def refused(session: AsyncClientSession) -> None:
        if shape == "single":
            await things.update_one({"_id": "text"}, {"$inc": {"n": 1}}, session=session)
        else:
            await things.bulk_write(
                [
                    UpdateOne({"_id": "held"}, {"$inc": {"n": 1}}),
                    UpdateOne({"_id": "text"}, {"$inc": {"n": 1}}),
                ],
                ordered=False,
                session=session,
            )

    runs = Runs(things, refused)
    with pytest.raises(PyMongoError) as raised:
        await tally.in_transaction(things, runs)
    assert isinstance(raised.value, BulkWriteError) == (shape == "bulk")
    assert not tally._duplicate_key(raised.value) and not write_conflict(raised.value)
    assert runs.count == 1 and await runs.committed() == 0


async def test_a_conflict_that_outlasts_the_patience_raises(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "TRANSACTION_PATIENCE", 0.0)
    things = await setup(db)
    async with things.database.client.start_session() as holder:
        await holder.start_transaction()
        await things.update_one({"_id": "held"}, {"$inc": {"n": 1}}, session=holder)

        async def conflicting(session: AsyncClientSession) -> None:
            await things.update_one({"_id": "held"}, {"$inc": {"n": 10}}, session=session)

        runs = Runs(things, conflicting)
        with pytest.raises(OperationFailure) as raised:
            await tally.in_transaction(things, runs)
        await holder.abort_transaction()
    assert write_conflict(raised.value)
    assert runs.count == 1 and await runs.committed() == 0


async def test_an_unreachable_database_raises_at_once(
    db_to_kill: tuple[AsyncMongoClient[Any], Callable[[], None]],
) -> None:
    """The driver labels a network error inside a transaction TransientTransactionError; the
    helper still does not run the work again (a consumer retries its batch)."""
    client, kill = db_to_kill
    things = client["it"]["things"]
    await things.insert_one({"_id": "held", "n": 0})
    runs: list[int] = []

    async def gone(session: AsyncClientSession) -> str:
        runs.append(1)
        if len(runs) == 1:
            kill()
        await things.update_one({"_id": "held"}, {"$inc": {"n": 1}}, session=session)
        return "done"

    with pytest.raises(TRANSIENT_ERRORS):
        await asyncio.wait_for(tally.in_transaction(things, gone), 30)
    assert runs == [1]


async def test_a_commit_of_unknown_outcome_is_neither_committed_nor_run_again(
    db_to_kill: tuple[AsyncMongoClient[Any], Callable[[], None]],
) -> None:
    """The database goes away after the work's writes, before the commit: the driver's
    commit (and its one retry) fails with the label UnknownTransactionCommitResult, which the
    helper raises without running the work again."""
    client, kill = db_to_kill
    things = client["it"]["things"]
    await things.insert_one({"_id": "held", "n": 0})
    runs: list[int] = []

    async def then_gone(session: AsyncClientSession) -> str:
        runs.append(1)
        await things.update_one({"_id": "held"}, {"$inc": {"n": 1}}, session=session)
        kill()
        return "done"

    with pytest.raises(PyMongoError) as raised:
        await asyncio.wait_for(tally.in_transaction(things, then_gone), 30)
    assert raised.value.has_error_label("UnknownTransactionCommitResult")
    assert runs == [1]

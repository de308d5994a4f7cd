"""The counters' arithmetic (services/sla/tally.py): a report's contribution and the change
a write makes, equal to the report card's own tally; and which failures of the counters'
transaction are run again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
)

from services.common import outbox
from services.sla import tally as tallies
from services.sla.domain.cards import tally
from services.sla.tally import add, change, contribution, from_reports, tally_ops
from tests.unit.test_sla_cards import row


def card(**facts: object) -> dict[str, object]:
    """A stored report's card facts: the report card's row, with what the gauges add."""
    return row(**{"period": "2026-03", "colour": "red", "handling_class": "complaint", **facts})


def test_a_new_report_counts_once_as_open_and_received() -> None:
    assert contribution(card()) == {
        "open|red|complaint": {"n": 1},
        "card|pemda-51.08|2026-03": {"received": 1},
    }
    assert contribution(None) == {}


def test_a_write_moves_only_what_changed() -> None:
    before = card()
    after = card(colour="yellow", first_response_on_time=True)
    assert change(before, None, after, None) == {
        "open|red|complaint": {"n": -1},
        "open|yellow|complaint": {"n": 1},
        "card|pemda-51.08|2026-03": {"first_responses_within_deadline": 1},
    }
    assert change(after, None, after, None) == {}  # a duplicate changes nothing
    assert change(after, None, after, 4) == {
        "card|pemda-51.08|2026-03": {"rating_sum": 4, "ratings": 1}
    }


def test_closing_and_overdue() -> None:
    overdue = card(overdue=True, first_response_overdue=True)
    closed = card(open=False, colour="green", overdue=True)
    assert change(overdue, None, closed, None) == {
        "open|red|complaint": {"n": -1},
        "overdue": {"n": -1},
        "card|pemda-51.08|2026-03": {"overdue_now": -1, "first_responses_overdue": -1},
    }


def test_sums_of_contributions_equal_the_report_cards() -> None:
    rows = [
        (card(verified_on_time=True, first_response_on_time=True, resolved_on_time=True), 5),
        (card(first_response_on_time=False, resolved_on_time=False), 2),
        (card(overdue=True, first_response_overdue=True, escalated=True), None),
        (card(overdue=True, open=False), None),
    ]
    counts = from_reports(rows)
    expected = tally(rows, "2026-03")["pemda-51.08"]
    figures = counts["card|pemda-51.08|2026-03"]
    for name in ("received", "verified_within_deadline", "overdue_now", "escalated"):
        assert figures.get(name, 0) == getattr(expected, name)
    assert figures["rating_sum"] == 7 and figures["ratings"] == 2
    assert counts["open|red|complaint"] == {"n": 3} and counts["overdue"] == {"n": 1}
    ops = {op._filter["_id"]: op._doc for op in tally_ops(add({}, counts))}
    assert ops["open|red|complaint"] == {
        "$inc": {"n": 3},
        "$setOnInsert": {"kind": "open", "colour": "red", "handling_class": "complaint"},
    }
    assert ops["card|pemda-51.08|2026-03"]["$setOnInsert"] == {
        "kind": "card",
        "institution": "pemda-51.08",
        "period": "2026-03",
    }


class FakeSession:
    """Records what the transaction helper does with a session."""

    def __init__(self, log: list[str], commit_error: PyMongoError | None) -> None:
        self.log = log
        self.commit_error = commit_error
        self.in_transaction = False

    async def __aenter__(self) -> FakeSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.in_transaction = False

    async def start_transaction(self) -> None:
        self.in_transaction = True
        self.log.append("start")

    async def commit_transaction(self) -> None:
        self.in_transaction = False
        if self.commit_error is not None:
            self.log.append("commit failed")
            raise self.commit_error
        self.log.append("commit")

    async def abort_transaction(self) -> None:
        self.in_transaction = False
        self.log.append("abort")


class FakeClient:
    def __init__(self, commit_error: PyMongoError | None = None) -> None:
        self.log: list[str] = []
        self.commit_error = commit_error

    def start_session(self) -> FakeSession:
        return FakeSession(self.log, self.commit_error)


class FakeCollection:
    def __init__(self, client: FakeClient) -> None:
        self.database = type("Db", (), {"client": client})()


def conflict() -> OperationFailure:
    """What SecantusDB answers the second of two transactions writing the same document."""
    return OperationFailure(
        "WriteConflict", 112, {"code": 112, "errorLabels": ["TransientTransactionError"]}
    )


def duplicate_in_bulk(*codes: int) -> BulkWriteError:
    return BulkWriteError({"writeErrors": [{"index": i, "code": c} for i, c in enumerate(codes)]})


def failing(*errors: PyMongoError) -> tuple[Callable[[Any], Awaitable[str]], list[int]]:
    """A transaction's work that raises `errors` on its first runs, then returns "done"."""
    runs = [0]

    async def work(session: Any) -> str:
        runs[0] += 1
        if runs[0] <= len(errors):
            raise errors[runs[0] - 1]
        return "done"

    return work, runs


async def run(client: FakeClient, work: Callable[[Any], Awaitable[str]]) -> str:
    return await tallies.in_transaction(FakeCollection(client), work)  # type: ignore[arg-type]


async def test_the_work_runs_in_a_transaction_and_its_result_is_returned() -> None:
    client = FakeClient()
    work, runs = failing()
    assert await run(client, work) == "done"
    assert client.log == ["start", "commit"] and runs == [1]


async def test_a_conflict_and_a_duplicate_key_in_either_shape_are_run_again() -> None:
    client = FakeClient()
    work, runs = failing(
        conflict(), DuplicateKeyError("E11000", 11000), conflict(), duplicate_in_bulk(11000, 11000)
    )
    assert await run(client, work) == "done"
    assert runs == [5]
    assert client.log == ["start", "abort"] * 4 + ["start", "commit"]


async def test_a_duplicate_key_that_stays_raises_after_a_few_runs() -> None:
    client = FakeClient()
    work, runs = failing(*(DuplicateKeyError("E11000", 11000) for _ in range(10)))
    with pytest.raises(DuplicateKeyError):
        await run(client, work)
    assert runs == [tallies.DUPLICATE_ATTEMPTS]
    assert client.log == ["start", "abort"] * tallies.DUPLICATE_ATTEMPTS


async def test_other_write_errors_raise_at_once() -> None:
    for error in (
        duplicate_in_bulk(11000, 121),  # one refused by validation, not a duplicate
        OperationFailure("bad", 2),
        BulkWriteError({"writeErrors": []}),
    ):
        work, runs = failing(error)
        with pytest.raises(type(error)):
            await run(FakeClient(), work)
        assert runs == [1]


async def test_an_unreachable_database_raises_at_once() -> None:
    """Even with the label the driver puts on it in a transaction: the consumer retries."""
    work, runs = failing(AutoReconnect("gone", {"errorLabels": ["TransientTransactionError"]}))
    with pytest.raises(AutoReconnect):
        await run(FakeClient(), work)
    assert runs == [1]


async def test_a_commit_of_unknown_outcome_is_neither_committed_nor_run_again() -> None:
    labels = ["TransientTransactionError", "UnknownTransactionCommitResult"]  # never both
    error = OperationFailure("unknown", 50, {"code": 50, "errorLabels": labels})
    client = FakeClient(commit_error=error)
    work, runs = failing()
    with pytest.raises(OperationFailure):
        await run(client, work)
    assert runs == [1] and client.log == ["start", "commit failed"]


async def test_a_conflict_that_outlasts_the_patience_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbox, "TRANSACTION_PATIENCE", 0.0)
    work, runs = failing(conflict(), conflict())
    with pytest.raises(OperationFailure):
        await run(FakeClient(), work)
    assert runs == [1]

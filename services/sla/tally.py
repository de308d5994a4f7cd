"""Counters behind the open-report and report-card gauges, kept incrementally.

Every write that changes a report's card facts (or its rating) adds the difference between
the report's contribution after and before the write to a few small documents of the
``sla_tallies`` collection, in the same transaction as the report's compare-and-set: a
write that loses its race, a redelivered event or a replayed action changes no report and
so no counter, and a crash loses or keeps both together. Reading a gauge then costs a
handful of documents (one per colour and handling class, one per institution and month),
whatever the number of open reports.

Documents (``_id`` -> fields):

* ``open|<colour>|<handling class>``: ``n`` open reports;
* ``overdue``: ``n`` open reports with a breached running clock;
* ``card|<top institution>|<YYYY-MM>``: the report card's figures for reports received that
  month (``received``, ``verified_within_deadline``, ..., ``rating_sum``, ``ratings``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from services.common import outbox
from services.common.mongo import Doc, duplicate_keys_only
from services.sla.domain.cards import ReportCard

TALLIES = "sla_tallies"
OVERDUE = "overdue"
CARD_FIGURES = (
    "received",
    "verified_within_deadline",
    "first_responses_within_deadline",
    "resolved_within_deadline",
    "overdue_now",
    "first_responses_overdue",
    "escalated",
    "rating_sum",
    "ratings",
)

Counts = dict[str, dict[str, int]]
T = TypeVar("T")


def open_key(colour: str, handling_class: str) -> str:
    return f"open|{colour}|{handling_class}"


def card_key(institution: str, period: str) -> str:
    return f"card|{institution}|{period}"


def contribution(card: Mapping[str, Any] | None, rating: Any = None) -> Counts:
    """What one report adds to the counters (nothing before it has card facts)."""
    if not card:
        return {}
    out: Counts = {}
    if card.get("open", True):
        out[open_key(card["colour"], card["handling_class"])] = {"n": 1}
        if card.get("overdue"):
            out[OVERDUE] = {"n": 1}
    one = ReportCard(card["top_institution"], card["period"])
    one.add(card, rating if isinstance(rating, int) else None)
    figures = {f: int(getattr(one, f)) for f in CARD_FIGURES}
    out[card_key(card["top_institution"], card["period"])] = {f: v for f, v in figures.items() if v}
    return out


def difference(before: Counts, after: Counts) -> Counts:
    """``after - before``, without zero entries."""
    out: Counts = {}
    for key in before.keys() | after.keys():
        fields = before.get(key, {}).keys() | after.get(key, {}).keys()
        diff = {f: after.get(key, {}).get(f, 0) - before.get(key, {}).get(f, 0) for f in fields}
        diff = {f: v for f, v in diff.items() if v}
        if diff:
            out[key] = diff
    return out


def change(
    old_card: Mapping[str, Any] | None,
    old_rating: Any,
    new_card: Mapping[str, Any] | None,
    new_rating: Any,
) -> Counts:
    return difference(contribution(old_card, old_rating), contribution(new_card, new_rating))


def add(total: Counts, more: Counts) -> Counts:
    for key, fields in more.items():
        into = total.setdefault(key, {})
        for f, v in fields.items():
            into[f] = into.get(f, 0) + v
    return total


def _labels(key: str) -> Doc:
    kind, *rest = key.split("|")
    if kind == "open":
        return {"kind": "open", "colour": rest[0], "handling_class": rest[1]}
    if kind == "card":
        return {"kind": "card", "institution": rest[0], "period": rest[1]}
    return {"kind": kind}


def tally_ops(counts: Counts) -> list[UpdateOne]:
    """One ``$inc`` per counter document (created on first use)."""
    return [
        UpdateOne({"_id": key}, {"$inc": fields, "$setOnInsert": _labels(key)}, upsert=True)
        for key, fields in sorted(counts.items())
        if fields
    ]


async def apply_counts(
    tallies: AsyncCollection[Doc], counts: Counts, session: AsyncClientSession | None
) -> None:
    ops = tally_ops(counts)
    if ops:
        await tallies.bulk_write(ops, ordered=True, session=session)


DUPLICATE_ATTEMPTS = 3  # runs of a transaction refused for a duplicate key, in all


def _duplicate_key(exc: PyMongoError) -> bool:
    """Whether a write was refused only for a duplicate key (code 11000): a single write's
    `DuplicateKeyError`, or a bulk write's `BulkWriteError` all of whose errors are one."""
    if isinstance(exc, DuplicateKeyError):
        return True
    return isinstance(exc, BulkWriteError) and duplicate_keys_only(exc)


async def in_transaction(
    collection: AsyncCollection[Doc], work: Callable[[AsyncClientSession], Awaitable[T]]
) -> T:
    """Run ``work`` in one multi-document transaction and return its result: the shared
    `services.common.outbox.in_transaction`, plus a run again after a duplicate key.

    * A write conflict (two writers creating or changing the same counter document at once:
      SecantusDB refuses the second with ``WriteConflict``, label
      ``TransientTransactionError``, for ``update_one`` and ``bulk_write`` upserts alike) is
      run again by the shared helper, with a growing pause, for up to
      ``TRANSACTION_PATIENCE`` (10) seconds; a conflict that lasts longer raises.
    * A database that cannot be reached raises at once (one of
      `services.common.mongo.TRANSIENT_ERRORS`): a consumer retries its batch, the sweep its
      round, an officer's request fails. The driver's ``with_transaction``, used before,
      kept retrying for two minutes while they waited.
    * A duplicate key (a `DuplicateKeyError`, or a `BulkWriteError` whose errors are all
      code 11000, as the counters' ``bulk_write`` would report it) runs the transaction
      again at once, `DUPLICATE_ATTEMPTS` runs in all: a server that reports the loser of
      two upserts creating the same counter document as a duplicate key (instead of a
      conflict) has the winner's document visible by then, and the next run's upsert
      increments it. SecantusDB has not been seen to do so (it reports the conflict); a
      duplicate that stays (a real one) raises after the last run.
    * A commit whose outcome is unknown (label ``UnknownTransactionCommitResult``) raises,
      neither committed again nor run again; ``with_transaction`` committed again for up to
      two minutes. Running ``work`` again after a commit that did apply would be safe for
      `cas_and_count` (its compare-and-set on ``version`` no longer applies) and for the
      routed handler (it re-reads which reports are routed), but not for the sweep's chunk:
      it recognises its wins by its ``swept_by`` token, so a second run would take the
      first run's wins for its own and count them again. So the
      caller's own retry decides, after re-reading what was stored, as after any failed
      write (a lost connection is a transient error: a consumer retries the batch).

    Every run before the last was aborted by the database, so ``work`` is never applied
    twice."""
    client = collection.database.client
    for attempt in range(1, DUPLICATE_ATTEMPTS + 1):
        try:
            return await outbox.in_transaction(client, work)
        except PyMongoError as exc:
            if attempt == DUPLICATE_ATTEMPTS or not _duplicate_key(exc):
                raise
    raise AssertionError("unreachable")


async def cas_and_count(
    cases: AsyncCollection[Doc], tracking_id: str, version: int, update: Doc, counts: Counts
) -> bool:
    """The compare-and-set of one report on its version and, only when it applied, the
    counters' change: one transaction (a plain write when no counter moves)."""
    if not counts:
        result = await cases.update_one({"_id": tracking_id, "version": version}, update)
        return bool(result.modified_count)
    tallies = tallies_of(cases)

    async def work(session: AsyncClientSession) -> bool:
        result = await cases.update_one(
            {"_id": tracking_id, "version": version}, update, session=session
        )
        if result.modified_count:
            await apply_counts(tallies, counts, session)
        return bool(result.modified_count)

    return await in_transaction(cases, work)


def tallies_of(cases: AsyncCollection[Doc]) -> AsyncCollection[Doc]:
    return cases.database[TALLIES]


async def ensure_indexes(tallies: AsyncCollection[Doc]) -> None:
    await tallies.create_index([("kind", 1), ("period", 1)])


def from_reports(rows: Iterable[tuple[Mapping[str, Any] | None, Any]]) -> Counts:
    """The counters of a set of reports computed from scratch (seeding, checks, rebuild)."""
    total: Counts = {}
    for card, rating in rows:
        add(total, contribution(card, rating))
    return total


async def rebuild(cases: AsyncCollection[Doc]) -> int:
    """Recount every counter from the reports (maintenance, with the service stopped: for a
    database written before the counters existed). Returns the number of reports read."""
    total: Counts = {}
    n = 0
    async for doc in cases.find({"card": {"$exists": True}}, {"card": 1, "rating": 1}):
        add(total, contribution(doc["card"], doc.get("rating")))
        n += 1
    tallies = tallies_of(cases)
    await tallies.delete_many({})
    if total:
        await tallies.bulk_write(
            [
                UpdateOne({"_id": k}, {"$set": {**v, **_labels(k)}}, upsert=True)
                for k, v in total.items()
            ]
        )
    return n

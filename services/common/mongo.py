"""MongoDB plumbing shared by the services (PyMongo's async API)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pymongo import AsyncMongoClient, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    NetworkTimeout,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WriteConcernError,
)

from services.common.settings import Secret

log = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    AutoReconnect,
    ConnectionFailure,
    NetworkTimeout,
    ServerSelectionTimeoutError,
    WriteConcernError,
)


def write_conflict(exc: BaseException) -> bool:
    """A transaction the database aborted because another one held the same keys (label
    ``TransientTransactionError``), after `services.common.outbox.in_transaction` stopped
    running it again: running the same work later goes through."""
    return (
        isinstance(exc, PyMongoError)
        and exc.has_error_label("TransientTransactionError")
        and not exc.has_error_label("UnknownTransactionCommitResult")
        and not isinstance(exc, TRANSIENT_ERRORS)
    )


def is_transient(exc: BaseException) -> bool:
    """Whether the same work, tried again later, can succeed: the database could not be
    reached (`TRANSIENT_ERRORS`); the writes were made but the write concern was not
    confirmed in time (a `WriteConcernError`, or a `BulkWriteError` with write-concern
    errors only: w: majority while a secondary lags); a commit's outcome is unknown (label
    ``UnknownTransactionCommitResult``); or a write conflict outlasted the transaction
    helper's patience. The retry finds out what was stored, as idempotent work does.
    Consumers retry these for as long as they last instead of counting them towards
    dead-lettering; gRPC answers them with UNAVAILABLE or ABORTED instead of INTERNAL."""
    if isinstance(exc, BulkWriteError):
        return not exc.details.get("writeErrors") and bool(exc.details.get("writeConcernErrors"))
    return (
        isinstance(exc, TRANSIENT_ERRORS)
        or write_conflict(exc)
        or (isinstance(exc, PyMongoError) and exc.has_error_label("UnknownTransactionCommitResult"))
    )


Doc = dict[str, Any]
APPLIED_KEEP = 200  # event ids remembered per document for de-duplication


WRITE_CONCERN_TIMEOUT_MS = 10_000


def create_client(uri: Secret, app_name: str) -> AsyncMongoClient[Doc]:
    """Write concern majority unless the URI says otherwise (acknowledged = durable), and
    a write-concern timeout of `WRITE_CONCERN_TIMEOUT_MS` unless the URI sets
    ``wtimeoutMS``: while a majority cannot confirm writes (secondaries down or lagging),
    a write fails after that time with a write-concern error (transient: UNAVAILABLE, a
    consumer retries) instead of holding the caller until its own deadline."""
    options: dict[str, Any] = {
        "serverSelectionTimeoutMS": 3000,
        # Monitoring sockets use this timeout too: under heavy write load a short one
        # makes the driver drop healthy connections mid-write.
        "connectTimeoutMS": 10000,
        "tz_aware": True,
        "appname": app_name,
    }
    if "w=" not in uri.reveal():
        options["w"] = "majority"
    if "wtimeoutms=" not in uri.reveal().lower():
        options["wTimeoutMS"] = WRITE_CONCERN_TIMEOUT_MS
    return AsyncMongoClient(uri.reveal(), **options)


async def ping(db: AsyncDatabase[Doc]) -> None:
    await db.command("ping")


def not_applied(event_id: str) -> Doc:
    """The filter condition: the document has not seen `event_id` yet."""
    return {"_applied": {"$ne": event_id}}


#: The highest SlaEvent.clocks_version a document (routing's case, intake's timeline)
#: applied: sla publishes through two outboxes nothing orders, so an older one may come last.
SLA_VERSION = "sla_version"


def not_older_sla_event(version: int) -> Doc:
    """The filter condition for an SLA event of ``clocks_version`` `version`: the document
    applied no newer one (one without ``sla_version`` applied none; equal versions apply).
    Empty for an event without a version (0, published before the field existed)."""
    return {SLA_VERSION: {"$not": {"$gt": version}}} if version > 0 else {}


def raising_sla_version(update: Doc, version: int) -> Doc:
    """A copy of `update` that also raises the document's ``sla_version`` to `version`
    (never lowers it); `update` itself for an event without a version."""
    return {**update, "$max": {SLA_VERSION: version}} if version > 0 else update


def remember_event(update: Doc, event_id: str) -> Doc:
    """A copy of `update` that also records `event_id` among the document's applied events."""
    out = {op: dict(fields) for op, fields in update.items()}
    out.setdefault("$push", {})["_applied"] = {"$each": [event_id], "$slice": -APPLIED_KEEP}
    return out


def once_per_event(
    doc_id: str, event_id: str, update: Doc, condition: Doc | None = None
) -> UpdateOne:
    """`update` for one document unless `event_id` was already applied to it (and only
    while it matches `condition`, when given): the check and the update are one atomic
    document write, so a redelivered event is never applied twice."""
    return UpdateOne(
        {"_id": doc_id, **not_applied(event_id), **(condition or {})},
        remember_event(update, event_id),
    )


async def apply_once(
    collection: AsyncCollection[Doc], doc_id: str, event_id: str, update: Doc
) -> bool:
    """`once_per_event` as a single write. False for a duplicate or a missing document."""
    result = await collection.update_one(
        {"_id": doc_id, **not_applied(event_id)}, remember_event(update, event_id)
    )
    return result.modified_count == 1


def duplicate_keys_only(exc: BulkWriteError) -> bool:
    """Whether a bulk write was refused only for duplicate keys (each write error code
    11000), as opposed to any other failure (which its caller raises)."""
    errors = exc.details.get("writeErrors", [])
    return bool(errors) and all(e.get("code") == 11000 for e in errors)


async def upsert_racing(write: Callable[[], Awaitable[object]]) -> None:
    """Run an upsert that may race another request creating the same document: MongoDB
    answers the loser with a duplicate-key error, and the second try updates the document
    the winner created. A second duplicate-key error is raised."""
    try:
        await write()
    except DuplicateKeyError:
        await write()


_INDEX_NOT_FOUND = 27


async def ensure_ttl_index(
    collection: AsyncCollection[Doc], field: str, seconds: int | None, partial: Doc | None = None
) -> None:
    """Let the database delete each document `seconds` after the date in `field` (its TTL
    monitor runs every minute), only those matching `partial` (a partialFilterExpression)
    when given; `seconds` None: no TTL index on `field`, an existing one is dropped, so a
    retention set to "keep" really keeps.

    ``create_index`` refuses an index on the same key with other options, so an index on
    `field` with another expiry (or none: the plain index of an earlier version) is changed
    in place with collMod; one with another partial filter, or on a server that refuses
    collMod (MongoDB before 5.1 cannot turn a plain index into a TTL one), is dropped and
    created again. Every replica may run this at start at the same time."""
    async for index in await collection.list_indexes():
        if dict(index["key"]) != {field: 1}:
            continue
        expiry = index.get("expireAfterSeconds")
        same_partial = (index.get("partialFilterExpression") or {}) == (partial or {})
        if seconds is None:
            if expiry is not None:
                await _drop_index(collection, index["name"])
                log.info(
                    "TTL index dropped: documents are kept",
                    extra={"collection": collection.name, "index": index["name"]},
                )
            continue
        if expiry == seconds and same_partial:
            continue
        if same_partial:
            try:
                await _retune_ttl(collection, index["name"], seconds)
            except OperationFailure as exc:
                log.warning(
                    "collMod refused; dropping and creating the TTL index",
                    extra={"collection": collection.name, "code": exc.code},
                )
                await _drop_index(collection, index["name"])
        else:
            await _drop_index(collection, index["name"])
        log.info(
            "index now expires documents",
            extra={
                "collection": collection.name,
                "index": index["name"],
                "expire_after_seconds": seconds,
            },
        )
    if seconds is not None:
        options: Doc = {"partialFilterExpression": partial} if partial else {}
        await collection.create_index(field, expireAfterSeconds=seconds, **options)


async def _retune_ttl(collection: AsyncCollection[Doc], name: str, seconds: int) -> None:
    await collection.database.command(
        {"collMod": collection.name, "index": {"name": name, "expireAfterSeconds": seconds}}
    )


async def _drop_index(collection: AsyncCollection[Doc], name: str) -> None:
    try:
        await collection.drop_index(name)
    except OperationFailure as exc:
        if exc.code != _INDEX_NOT_FOUND:  # another replica dropped it first
            raise

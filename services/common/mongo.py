"""MongoDB plumbing shared by the services (PyMongo's async API)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    DuplicateKeyError,
    NetworkTimeout,
    ServerSelectionTimeoutError,
    WriteConcernError,
)

from services.common.settings import Secret

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    AutoReconnect,
    ConnectionFailure,
    NetworkTimeout,
    ServerSelectionTimeoutError,
    WriteConcernError,
)

Doc = dict[str, Any]
APPLIED_KEEP = 200  # event ids remembered per document for de-duplication


def create_client(uri: Secret, app_name: str) -> AsyncMongoClient[Doc]:
    """Write concern majority unless the URI says otherwise (acknowledged = durable)."""
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
    return AsyncMongoClient(uri.reveal(), **options)


async def ping(db: AsyncDatabase[Doc]) -> None:
    await db.command("ping")


async def apply_once(
    collection: AsyncCollection[Doc], doc_id: str, event_id: str, update: Doc
) -> bool:
    """Apply `update` to one document unless `event_id` was already applied to it.

    The check and the update are one atomic document write, so a redelivered event
    is never applied twice. Returns False for a duplicate or a missing document.
    """
    update = {k: dict(v) for k, v in update.items()}
    push = update.setdefault("$push", {})
    push["_applied"] = {"$each": [event_id], "$slice": -APPLIED_KEEP}
    result = await collection.update_one({"_id": doc_id, "_applied": {"$ne": event_id}}, update)
    return result.modified_count == 1


def is_duplicate_key(exc: BaseException) -> bool:
    return isinstance(exc, DuplicateKeyError)

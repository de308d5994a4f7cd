"""Dead letters expire (services/common/deadletter.py) against the real database: the TTL
index on parked_at carries the configured retention, also where an earlier version left a
plain index on that key or another retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.errors import OperationFailure

from services.common import mongo
from services.common.deadletter import DEFAULT_RETENTION_DAYS, DeadLetters

DAY = 86400


async def parked_at_indexes(collection: Any) -> list[dict[str, Any]]:
    return [
        dict(index)
        async for index in await collection.list_indexes()
        if dict(index["key"]) == {"parked_at": 1}
    ]


async def test_a_new_collection_gets_the_ttl_index_with_the_configured_retention(db: Any) -> None:
    collection = db["dead_letters"]
    await DeadLetters(collection, retention_days=7).ensure_indexes()
    [index] = await parked_at_indexes(collection)
    assert index["expireAfterSeconds"] == 7 * DAY


async def test_the_default_retention_is_thirty_days(db: Any) -> None:
    collection = db["dead_letters"]
    await DeadLetters(collection).ensure_indexes()
    [index] = await parked_at_indexes(collection)
    assert index["expireAfterSeconds"] == DEFAULT_RETENTION_DAYS * DAY == 30 * DAY


async def test_the_plain_index_of_earlier_versions_becomes_the_ttl_index(db: Any) -> None:
    collection = db["dead_letters"]
    await collection.create_index("parked_at")  # what earlier versions created
    old = DeadLetters(collection)
    await old.park("lapor.complaints.received", b"\x0a\x01x", "handler failed: KeyError")
    [plain] = await parked_at_indexes(collection)
    assert "expireAfterSeconds" not in plain

    await DeadLetters(collection, retention_days=14).ensure_indexes()

    [index] = await parked_at_indexes(collection)
    assert index["expireAfterSeconds"] == 14 * DAY
    assert index["name"] == plain["name"]
    [letter] = await collection.find({}).to_list()
    assert letter["reason"] == "handler failed: KeyError"  # kept: parked just now
    assert datetime.now(UTC) - letter["parked_at"] < timedelta(minutes=5)


async def test_a_changed_retention_replaces_the_old_one_and_starting_again_changes_nothing(
    db: Any,
) -> None:
    collection = db["dead_letters"]
    await DeadLetters(collection, retention_days=30).ensure_indexes()
    await DeadLetters(collection, retention_days=3).ensure_indexes()
    [index] = await parked_at_indexes(collection)
    assert index["expireAfterSeconds"] == 3 * DAY
    await DeadLetters(collection, retention_days=3).ensure_indexes()
    assert await parked_at_indexes(collection) == [index]


async def test_a_server_refusing_collmod_gets_the_index_dropped_and_created_again(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MongoDB before 5.1 cannot turn a plain index into a TTL index with collMod."""

    async def refuse(collection: Any, name: str, seconds: int) -> None:
        raise OperationFailure("InvalidOptions", 72, {"code": 72, "codeName": "InvalidOptions"})

    collection = db["dead_letters"]
    await collection.create_index("parked_at")
    monkeypatch.setattr(mongo, "_retune_ttl", refuse)
    await DeadLetters(collection, retention_days=10).ensure_indexes()
    [index] = await parked_at_indexes(collection)
    assert index["expireAfterSeconds"] == 10 * DAY


def test_a_retention_under_a_day_is_refused() -> None:
    with pytest.raises(ValueError):
        DeadLetters(None, retention_days=0)  # type: ignore[arg-type]

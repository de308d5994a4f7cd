"""Where messages that cannot be handled are parked for a human, instead of blocking a
partition forever. Only the raw event (no identity is ever on a topic) and the reason.

A parked event can still hold a confidential report's title and body, so dead letters are
not kept forever: a TTL index on ``parked_at`` lets the database delete each one
`retention_days` after it was parked (LAPOR_DEAD_LETTER_RETENTION_DAYS, deploy/README.md
says what to do with them meanwhile)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

from services.common.mongo import Doc

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 30
KEY = "parked_at"
_INDEX_NOT_FOUND = 27


class DeadLetters:
    def __init__(
        self, collection: AsyncCollection[Doc], retention_days: int = DEFAULT_RETENTION_DAYS
    ) -> None:
        if retention_days < 1:
            raise ValueError("dead letters are kept at least one day")
        self._collection = collection
        self.expire_after_seconds = retention_days * 86400

    async def ensure_indexes(self) -> None:
        """The TTL index on ``parked_at``. An index on the same key with other options (the
        plain one of earlier versions, or another retention) is changed in place with
        collMod; a server that refuses that (MongoDB before 5.1 cannot turn a plain index
        into a TTL one) gets the index dropped and created again."""
        seconds = self.expire_after_seconds
        async for index in await self._collection.list_indexes():
            if dict(index["key"]) != {KEY: 1} or index.get("expireAfterSeconds") == seconds:
                continue
            try:
                await self._retune(index["name"], seconds)
            except OperationFailure as exc:
                log.warning(
                    "collMod refused; dropping and creating the dead-letter TTL index",
                    extra={"code": exc.code},
                )
                try:
                    await self._collection.drop_index(index["name"])
                except OperationFailure as dropped:
                    if dropped.code != _INDEX_NOT_FOUND:  # another replica dropped it first
                        raise
            log.info(
                "dead-letter index now expires entries",
                extra={"index": index["name"], "expire_after_seconds": seconds},
            )
        await self._collection.create_index(KEY, expireAfterSeconds=seconds)

    async def _retune(self, name: str, seconds: int) -> None:
        await self._collection.database.command(
            {
                "collMod": self._collection.name,
                "index": {"name": name, "expireAfterSeconds": seconds},
            }
        )

    async def park(self, topic: str, value: bytes | None, reason: str) -> None:
        await self._collection.insert_one(
            {"topic": topic, "value": value, "reason": reason, KEY: datetime.now(UTC)}
        )

"""Where messages that cannot be handled are parked for a human, instead of blocking a
partition forever. Only the raw event (no identity is ever on a topic) and the reason.

A parked event can still hold a confidential report's title and body, so dead letters are
not kept forever: a TTL index on ``parked_at`` lets the database delete each one
`retention_days` after it was parked (LAPOR_DEAD_LETTER_RETENTION_DAYS, deploy/README.md
says what to do with them meanwhile)."""

from __future__ import annotations

from datetime import UTC, datetime

from pymongo.asynchronous.collection import AsyncCollection

from services.common.mongo import Doc, ensure_ttl_index

DEFAULT_RETENTION_DAYS = 30
KEY = "parked_at"


class DeadLetters:
    def __init__(
        self, collection: AsyncCollection[Doc], retention_days: int = DEFAULT_RETENTION_DAYS
    ) -> None:
        if retention_days < 1:
            raise ValueError("dead letters are kept at least one day")
        self._collection = collection
        self.expire_after_seconds = retention_days * 86400

    async def ensure_indexes(self) -> None:
        """The TTL index on ``parked_at``; one on the same key with other options (the plain
        one of earlier versions, or another retention) is changed (`ensure_ttl_index`)."""
        await ensure_ttl_index(self._collection, KEY, self.expire_after_seconds)

    async def park(self, topic: str, value: bytes | None, reason: str) -> None:
        await self._collection.insert_one(
            {"topic": topic, "value": value, "reason": reason, KEY: datetime.now(UTC)}
        )

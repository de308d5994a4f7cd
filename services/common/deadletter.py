"""Where messages that cannot be handled are parked for a human, instead of blocking a
partition forever. Only the raw event (no identity is ever on a topic) and the reason."""

from __future__ import annotations

from datetime import UTC, datetime

from pymongo.asynchronous.collection import AsyncCollection

from services.common.mongo import Doc


class DeadLetters:
    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._collection = collection

    async def ensure_indexes(self) -> None:
        await self._collection.create_index("parked_at")

    async def park(self, topic: str, value: bytes | None, reason: str) -> None:
        await self._collection.insert_one(
            {"topic": topic, "value": value, "reason": reason, "parked_at": datetime.now(UTC)}
        )

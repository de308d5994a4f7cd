"""Notification providers: small plugins behind one interface (SMS, e-mail, push and
webhook providers plug in here). A provider must accept the same notification id twice
without sending twice, or the outside system must de-duplicate on it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from pymongo.asynchronous.collection import AsyncCollection

from services.common.mongo import Doc, ensure_ttl_index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notification:
    id: str
    tracking_id: str
    template: str
    text: str
    created_at: datetime


class NotificationProvider(Protocol):
    name: str

    async def send(self, notification: Notification) -> None: ...


class LogProvider:
    """Writes the notification to the service log (tracking id and template only)."""

    name = "log"

    async def send(self, notification: Notification) -> None:
        log.info(
            "notification",
            extra={"notification_id": notification.id, "template": notification.template},
        )


class CollectionProvider:
    """Delivers into a MongoDB collection: an inbox the reporter's app or a gateway reads.
    With a `retention` (LAPOR_NOTIFY_INBOX_RETENTION_DAYS; None: kept for good) a TTL index
    lets the database delete each message that long after it was delivered; its id is this
    provider's de-duplication, so keep it longer than an event can come back."""

    name = "collection"

    def __init__(
        self, collection: AsyncCollection[Doc], retention: timedelta | None = None
    ) -> None:
        self._collection = collection
        self.retention = retention

    async def ensure_indexes(self) -> None:
        keep = self.retention
        seconds = int(keep.total_seconds()) if keep is not None else None
        await ensure_ttl_index(self._collection, "delivered_at", seconds)

    async def send(self, notification: Notification) -> None:
        await self._collection.update_one(
            {"_id": notification.id},
            {
                "$setOnInsert": {
                    "tracking_id": notification.tracking_id,
                    "template": notification.template,
                    "text": notification.text,
                    "delivered_at": notification.created_at,
                }
            },
            upsert=True,
        )


PROVIDERS = ("log", "collection")

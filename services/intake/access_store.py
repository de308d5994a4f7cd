"""MongoDB adapters of access by verified contact (access_codes.py): pending one-time codes,
access tokens, attempt times per tracking id (and contact), and the code senders (the
``webhook`` one, over HTTP, is in access_webhook.py).

Every collection expires its documents with a TTL index on ``expires_at``; the rules never
rely on the TTL monitor (they compare with the injected clock), it only keeps the
collections small. Nothing here holds a contact in clear: codes and tokens are stored as
hashes, contacts as keyed hashes (with a pending code, in attempt keys, in the development
inbox).
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.common.mongo import Doc, ensure_ttl_index, upsert_racing
from services.intake.access_codes import AccessCodeMessage, AccessSettings, WebhookSettings
from services.intake.access_webhook import WebhookCodeSender

log = logging.getLogger(__name__)

CODES = "access_codes"
TOKENS = "access_tokens"
ATTEMPTS = "access_attempts"
INBOX = "access_code_inbox"
DECOY = "decoy:"  # ids of the decoy writes (a tracking id never starts so)


async def _expire_at_expires_at(collection: AsyncCollection[Doc], after: int = 0) -> None:
    # The shared helper: an index of an earlier version with another period is changed in
    # place, where create_index would refuse it and keep intake from starting.
    await ensure_ttl_index(collection, "expires_at", after)


class MongoAccessCodes:
    """One pending code per report: ``{_id: tracking id, hash, contact_hash, expires_at,
    tries_left}`` (and, once tried, ``taken``: whether the last try was, ``tried``: how many
    were made); ``contact_hash`` is the keyed hash of the contact it was sent to. A code
    stored without one (before it was kept) matches no contact: the reporter asks anew."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._collection = collection

    async def ensure_indexes(self) -> None:
        await _expire_at_expires_at(self._collection)

    async def put(
        self,
        tracking_id: str,
        code_hash: str,
        contact_hash: str,
        expires_at: datetime,
        tries: int,
    ) -> None:
        doc = {
            "hash": code_hash,
            "contact_hash": contact_hash,
            "expires_at": expires_at,
            "tries_left": tries,
        }
        await upsert_racing(
            lambda: self._collection.replace_one({"_id": tracking_id}, doc, upsert=True)
        )

    async def touch(self, tracking_id: str, expires_at: datetime) -> None:
        # The same write as `put` (a replace that upserts one document of the same shape,
        # the same indexes, the same replication wait), to a decoy that no lookup reads and
        # the TTL index removes: a request whose contact did not match must not answer
        # faster than one that did.
        doc = {
            "hash": secrets.token_hex(20),
            "contact_hash": secrets.token_hex(20),
            "expires_at": expires_at,
            "tries_left": 0,
        }
        await upsert_racing(
            lambda: self._collection.replace_one({"_id": f"{DECOY}{tracking_id}"}, doc, upsert=True)
        )

    async def take_attempt(self, tracking_id: str, contact_hash: str, now: datetime) -> str | None:
        # One write to the pending code whatever the contact (an update that always changes
        # it): a try with another contact costs what a try with the code's does, so the
        # answer's timing does not tell whether the contact is the code's. Whether the try
        # is taken is decided in the same write, on the document as it was (parallel tries
        # cannot exceed the budget).
        usable = {
            "$and": [
                {"$eq": ["$contact_hash", {"$literal": contact_hash}]},
                {"$gt": ["$expires_at", {"$literal": now}]},
                {"$gt": ["$tries_left", 0]},
            ]
        }
        doc = await self._collection.find_one_and_update(
            {"_id": tracking_id},
            [
                {
                    "$set": {
                        "taken": usable,
                        "tries_left": {
                            "$cond": [usable, {"$subtract": ["$tries_left", 1]}, "$tries_left"]
                        },
                        "tried": {"$add": [{"$ifNull": ["$tried", 0]}, 1]},
                    }
                }
            ],
            projection={"hash": 1, "taken": 1},
            return_document=ReturnDocument.AFTER,
        )
        return str(doc["hash"]) if doc and doc.get("taken") is True else None

    async def consume(self, tracking_id: str, code_hash: str) -> bool:
        result = await self._collection.delete_one({"_id": tracking_id, "hash": code_hash})
        return result.deleted_count == 1


class MongoAccessTokens:
    """``{_id: sha256 of the token, tracking_id, expires_at}``."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._collection = collection

    async def ensure_indexes(self) -> None:
        await _expire_at_expires_at(self._collection)

    async def issue(self, token_sha256: str, tracking_id: str, expires_at: datetime) -> None:
        await self._collection.insert_one(
            {"_id": token_sha256, "tracking_id": tracking_id, "expires_at": expires_at}
        )

    async def valid(self, token_sha256: str, tracking_id: str, now: datetime) -> bool:
        doc = await self._collection.find_one(
            {"_id": token_sha256, "tracking_id": tracking_id, "expires_at": {"$gt": now}},
            {"_id": 1},
        )
        return doc is not None


class MongoAttemptLog:
    """``{_id: "<kind>:<tracking id>[:<contact's keyed hash>]", at: [times, oldest first],
    expires_at}``: one document per key, appended with ``$push``/``$slice`` (atomic, every
    replica)."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._collection = collection

    async def ensure_indexes(self) -> None:
        await _expire_at_expires_at(self._collection)

    async def times(self, key: str) -> list[datetime]:
        doc = await self._collection.find_one({"_id": key}, {"at": 1})
        return list(doc.get("at", [])) if doc else []

    async def add(self, key: str, at: datetime, keep: int, expires_at: datetime) -> None:
        update = {
            "$push": {"at": {"$each": [at], "$slice": -max(keep, 1)}},
            "$max": {"expires_at": expires_at},
        }
        await upsert_racing(lambda: self._collection.update_one({"_id": key}, update, upsert=True))

    async def claim(
        self, key: str, at: datetime, limit: int, since: datetime, expires_at: datetime
    ) -> bool:
        """The conditional append: the kept times (the last `limit`, oldest first) leave
        room when there are fewer than `limit` of them or the oldest is before `since`."""
        update = {
            "$push": {"at": {"$each": [at], "$slice": -max(limit, 1)}},
            "$max": {"expires_at": expires_at},
        }
        room = {"$or": [{f"at.{max(limit, 1) - 1}": {"$exists": False}}, {"at.0": {"$lt": since}}]}
        for _ in range(2):  # a second look after losing a race to create the key
            result = await self._collection.update_one({"_id": key, **room}, update)
            if result.matched_count:
                return True
            try:  # no such key yet, or no room
                await self._collection.insert_one(
                    {"_id": key, "at": [at], "expires_at": expires_at}
                )
                return True
            except DuplicateKeyError:
                continue  # it exists: decide on it again (another claim may have made room)
        return False


class CollectionCodeSender:
    """Development and tests: writes the code into intake's ``access_code_inbox``, with the
    contact's keyed hash, never the contact. Not for production: anyone who reads the
    database reads the codes."""

    name = "collection"
    KEEP_SECONDS = 86_400  # after the code's expiry

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._collection = collection

    async def ensure_indexes(self) -> None:
        await _expire_at_expires_at(self._collection, self.KEEP_SECONDS)

    async def send(self, message: AccessCodeMessage) -> None:
        await self._collection.insert_one(
            {
                "tracking_id": message.tracking_id,
                "contact_hash": message.contact_hash,
                "code": message.code,
                "expires_at": message.expires_at,
            }
        )


class LogCodeSender:
    """Delivers nothing: logs that a code was made (tracking id and the kind of contact),
    never the code or the contact. For deployments without a gateway yet."""

    name = "log"

    async def ensure_indexes(self) -> None:
        return None

    async def send(self, message: AccessCodeMessage) -> None:
        log.info(
            "access code made (log sender: not delivered)",
            extra={"tracking_id": message.tracking_id, "contact_kind": message.contact.kind},
        )


def code_sender(
    name: str,
    db: AsyncDatabase[Doc],
    *,
    webhook: WebhookSettings | None = None,
    code_ttl: timedelta = AccessSettings.code_ttl,
) -> CollectionCodeSender | LogCodeSender | WebhookCodeSender:
    """The sender named by LAPOR_ACCESS_CODE_SENDER. ``webhook`` (production) POSTs each
    code to an SMS gateway or e-mail relay (access_webhook.py); another delivery plugs in
    here as a class with ``name`` and ``async send(AccessCodeMessage)``
    (``access_codes.CodeSender``) that delivers ``message.code`` to ``message.contact``."""
    if name == "log":
        return LogCodeSender()
    if name == "collection":
        return CollectionCodeSender(db[INBOX])
    if name == "webhook":
        if webhook is None:
            raise ValueError("the webhook sender needs its settings (LAPOR_ACCESS_CODE_WEBHOOK_*)")
        return WebhookCodeSender(webhook, code_ttl)
    raise ValueError(f"unknown access-code sender {name!r}")

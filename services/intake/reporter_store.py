"""MongoDB adapter for the reporter's side: reads of the complaint document, the reporter's
actions stored with their ReporterAction event (outbox) in one conditional write, and the
public listing with its indexes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from lapor.v1 import common_pb2, events_pb2
from pymongo.asynchronous.collection import AsyncCollection

from services.common.mongo import Doc
from services.common.outbox import OUTBOX, PENDING, PUBLISHED, OutboxMessage, outbox_update
from services.common.pbtime import timestamp
from services.common.topics import REPORTER_ACTIONS
from services.intake.listing import PublicQuery
from services.intake.projection import read_view
from services.intake.reporter import ReporterActionRecord
from services.intake.reporter_rules import CaseSnapshot

HIDDEN = {OUTBOX: 0, PENDING: 0, PUBLISHED: 0, "_applied": 0}
LISTED = {
    name: 1
    for name in (
        "title",
        "body",
        "region_code",
        "classification",
        "category",
        "topic",
        "status",
        "state",
        "colour",
        "institution",
        "received_at",
        "privacy",
    )
}
NEWEST_FIRST = [("received_at", -1), ("_id", -1)]


def reporter_action_message(r: ReporterActionRecord) -> OutboxMessage:
    """lapor.v1.ReporterAction: what the reporter did, never who they are."""
    event = events_pb2.ReporterAction(
        meta=common_pb2.EventMeta(
            event_id=r.event_id,
            tracking_id=r.tracking_id,
            occurred_at=timestamp(r.at),
            producer="intake",
        ),
        action=r.action,
        text=r.text,
        rating=r.rating,
    )
    return OutboxMessage(r.event_id, REPORTER_ACTIONS, r.tracking_id, event.SerializeToString())


def _equal_or_missing(value: int) -> Any:
    return {"$in": [0, None]} if value == 0 else value


def public_filter(q: PublicQuery) -> Doc:
    clauses: list[Doc] = [{"privacy": "public"}]
    if q.region_code:
        if "." in q.region_code:
            clauses.append({"region_code": q.region_code})
        else:  # a province: itself and its regencies/cities
            clauses.append({"region_code": {"$regex": f"^{re.escape(q.region_code)}"}})
    if q.classification is not None:
        clauses.append({"classification": q.classification.value})
    if q.category:
        clauses.append({"$or": [{"category": q.category}, {"topic": q.category}]})
    if q.state:
        clauses.append({"state": q.state})
    if q.after is not None:
        t, i = q.after.received_at, q.after.tracking_id
        clauses.append(
            {"$or": [{"received_at": {"$lt": t}}, {"received_at": t, "_id": {"$lt": i}}]}
        )
    return {"$and": clauses}


class MongoReportRepository:
    def __init__(
        self, collection: AsyncCollection[Doc], on_stored: Callable[[], None] | None = None
    ) -> None:
        self._collection = collection
        self._on_stored = on_stored

    async def ensure_indexes(self) -> None:
        for extra in ((), ("region_code",), ("state",), ("classification",)):
            keys = [("privacy", 1), *((k, 1) for k in extra), *NEWEST_FIRST]
            await self._collection.create_index(keys)

    async def get(self, tracking_id: str) -> Doc | None:
        return await read_view(self._collection, tracking_id, HIDDEN)

    async def record_action(
        self, expected: CaseSnapshot, record: ReporterActionRecord, counts_as_rejection: bool
    ) -> bool:
        condition: Doc = {
            "_id": record.tracking_id,
            "state": expected.state,
            "case_seq": _equal_or_missing(expected.case_seq),
            "reporter_seq": {"$ne": expected.case_seq},
        }
        entry = {
            "event_id": record.event_id,
            "action": record.action,
            "text": record.text,
            "rating": record.rating,
            "at": record.at,
        }
        outbox = outbox_update([reporter_action_message(record)])
        update: Doc = {
            "$set": {"reporter_seq": expected.case_seq, **outbox["$set"]},
            "$push": {"my_actions": entry, **outbox["$push"]},
        }
        if counts_as_rejection:
            condition["rejections"] = _equal_or_missing(expected.rejections)
            update["$inc"] = {"rejections": 1}
        result = await self._collection.update_one(condition, update)
        if result.modified_count == 1 and self._on_stored is not None:
            self._on_stored()
        return result.modified_count == 1

    async def list_public(self, query: PublicQuery) -> list[Doc]:
        cursor = (
            self._collection.find(public_filter(query), LISTED)
            .sort(NEWEST_FIRST)
            .limit(query.page_size + 1)
        )
        return await cursor.to_list(query.page_size + 1)

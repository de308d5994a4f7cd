"""The cases collection: one document per report, changed only by compare-and-set on
``version`` together with its history entry and its outbox event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from services.common.mongo import Doc, not_applied, remember_event
from services.common.outbox import (
    OUTBOX,
    PENDING,
    PUBLISHED,
    OutboxMessage,
    ensure_queue,
    outbox_update,
)
from services.common.status import FINAL_STATES, CaseState
from services.routing.domain.case import PRIVACY_RANK, CaseStatus, Outcome

FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)
HIDDEN = {OUTBOX: 0, PUBLISHED: 0, "_applied": 0, "fingerprint": 0, PENDING: 0}
#: When the case was last written in a final state (closed, archived): its closure, or a
#: later write that published an event (a refused reporter action, a privacy raise). The trim
#: of what a closed case keeps only for a while (services/routing/retention.py) counts from it
#: and removes it, so the sparse index holds only the cases still to trim.
CLOSED_AT = "closed_at"


PRIVACY_PREFIX = "PRIVACY_"


def privacy_of(stored: object) -> str:
    """The domain's privacy ("public", ...) of a stored one (the enum's name,
    ``PRIVACY_PUBLIC``, ...); "" when missing or unspecified."""
    if not isinstance(stored, str):
        return ""
    value = stored.removeprefix(PRIVACY_PREFIX).lower()
    return value if value in PRIVACY_RANK else ""


def stored_privacy(privacy: str) -> str:
    return f"{PRIVACY_PREFIX}{privacy.upper()}"


def status_of(doc: Doc) -> CaseStatus:
    return CaseStatus(
        state=CaseState(doc.get("state", CaseState.ASSIGNED)),
        institution_id=doc["institution_id"],
        responded=bool(doc.get("responded")),
        reopen_count=int(doc.get("reopen_count", 0)),
        handling_class=doc.get("handling_class") or "",
        privacy=privacy_of(doc.get("privacy")),
    )


def history_entry(outcome: Outcome, now: datetime) -> Doc:
    command, before, after = outcome.command, outcome.before, outcome.after
    return {
        "at": now,
        "action": command.action,
        "actor": command.role.value,
        "actor_id": command.actor_id,
        "from_state": before.state.value,
        "to_state": after.state.value,
        "institution_id": after.institution_id,
        "text": command.text.strip(),
        "reason": command.reason.strip(),
        "evidence": list(command.evidence),
        "handling_class": command.handling_class,
    }


def closed_since(update: Doc, state: CaseState, now: datetime) -> Doc:
    """`update`, which writes the case in `state`, with ``closed_at`` when that state is final
    (no action leads out of one): the latest such write counts, so the event it publishes is
    kept as long after it as the closure's (a case trimmed already gets the field again)."""
    if state in FINAL_STATES:
        update.setdefault("$max", {})[CLOSED_AT] = now
    return update


def early_privacy_of(cases: AsyncCollection[Doc]) -> AsyncCollection[Doc]:
    """Privacy raised by reporters before routing stored their case (``_id`` tracking id,
    ``rank`` the highest level asked for), applied once the case is stored."""
    return cases.database["early_privacy"]


class CaseStore:
    def __init__(self, cases: AsyncCollection[Doc]) -> None:
        self.cases = cases

    async def ensure_indexes(self) -> None:
        await ensure_queue(self.cases)  # new cases' events wait there (handlers.handle_received)
        await self.cases.create_index(PENDING)
        await self.cases.create_index([("institution_id", 1), ("due_sort", 1)])
        await self.cases.create_index([("state", 1), ("received_at", 1)])
        await self.cases.create_index([("region_code", 1), ("topic", 1), ("received_at", -1)])
        await self.cases.create_index("similar")
        await self.cases.create_index(CLOSED_AT, sparse=True)

    async def get(self, tracking_id: str) -> Doc | None:
        return await self.cases.find_one({"_id": tracking_id})

    async def commit(
        self,
        doc: Doc,
        outcome: Outcome,
        message: OutboxMessage,
        now: datetime,
        applied_event_id: str = "",
    ) -> Doc | None:
        """Store the outcome if nobody changed the case since ``doc`` was read; else None.
        The privacy is written only when the outcome raised it (the version condition
        makes sure it was decided on the stored one)."""
        after = outcome.after
        update: dict[str, dict[str, Any]] = outbox_update([message])
        update["$set"].update(
            {
                "state": after.state.value,
                "institution_id": after.institution_id,
                "responded": after.responded,
                "reopen_count": after.reopen_count,
                "handling_class": after.handling_class,
                "colour": after.colour.value,
                "updated_at": now,
            }
        )
        if after.privacy != outcome.before.privacy:
            update["$set"]["privacy"] = stored_privacy(after.privacy)
        update["$inc"] = {"version": 1}
        update["$push"]["history"] = history_entry(outcome, now)
        closed_since(update, after.state, now)
        query: Doc = {"_id": doc["_id"], "version": doc.get("version", 0)}
        if applied_event_id:
            update = remember_event(update, applied_event_id)
            query.update(not_applied(applied_event_id))
        return await self.cases.find_one_and_update(
            query, update, projection=HIDDEN, return_document=ReturnDocument.AFTER
        )

    async def linked_from(self, ids: list[str]) -> dict[str, list[str]]:
        """For each id, the later cases that named it as a near-duplicate."""
        found: dict[str, list[str]] = {i: [] for i in ids}
        if not ids:
            return found
        async for doc in self.cases.find({"similar": {"$in": ids}}, {"similar": 1}):
            for target in doc.get("similar", []):
                if target in found:
                    found[target].append(doc["_id"])
        return found

    async def holders(self, ids: set[str]) -> dict[str, str]:
        """The institution holding each of `ids` (ids of no stored case left out)."""
        if not ids:
            return {}
        cursor = self.cases.find({"_id": {"$in": sorted(ids)}}, {"institution_id": 1})
        return {d["_id"]: d["institution_id"] async for d in cursor}

    async def find(
        self, query: Doc, sort: list[tuple[str, int]], skip: int, limit: int
    ) -> list[Doc]:
        cursor = self.cases.find(query, HIDDEN).sort(sort).skip(skip).limit(limit)
        return await cursor.to_list(limit)

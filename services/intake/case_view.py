"""The tracking view follows the case: routing's CaseAction events (lapor.cases.actions)
set the report's state, status, colour, institution, reopen count and history.

Idempotent like the other projections: the event id is remembered in the document in the
same atomic update, so a redelivered event changes nothing. History names a role, never an
officer: the actor's personal id is not stored here at all.
"""

from __future__ import annotations

from lapor.v1 import events_pb2
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from services.common.kafka import Delivery
from services.common.metrics import EVENTS_CONSUMED
from services.common.mongo import Doc, once_per_event
from services.common.pbtime import occurred_at
from services.common.status import CaseState, Colour, colour_of
from services.common.topics import CASE_ACTIONS
from services.intake.domain import Status

# ComplaintStatus (common.proto) for each case state, so GetComplaint keeps working.
STATUS_OF_STATE = {
    CaseState.IN_VERIFICATION: Status.IN_VERIFICATION,
    CaseState.DEFERRED: Status.IN_VERIFICATION,
    CaseState.ASSIGNED: Status.ROUTED,
    CaseState.IN_PROGRESS: Status.IN_PROGRESS,
    CaseState.AWAITING_REPORTER: Status.IN_PROGRESS,
    CaseState.RESOLVED: Status.FOLLOWED_UP,
    CaseState.CLOSED: Status.CLOSED,
    CaseState.ARCHIVED: Status.CLOSED,
}
# Actions that count as the institution's first response (red turns yellow).
RESPONSE_ACTIONS = frozenset({"accepted", "responded", "info_requested", "followed_up", "resolved"})
# Actions kept out of the public history (admins' and institutions' internal steps).
INTERNAL_ACTIONS = frozenset({"deferred", "declined", "handling_class_set", "privacy_raised"})
ROLES = frozenset({"officer", "institution_admin", "national_admin", "reporter", "system"})


def case_update(e: events_pb2.CaseAction) -> Doc:
    """The update one CaseAction makes to the tracking view. Pure."""
    state = e.to_state if e.to_state in set(CaseState) else ""
    responded = e.action in RESPONSE_ACTIONS
    update: Doc = {
        "$push": {
            "history": {
                "at": occurred_at(e.meta.occurred_at),
                "action": e.action,
                "actor": e.actor_role if e.actor_role in ROLES else "system",
                "detail": "",  # the note is shown by the reporter API, by audience
                "note": e.public_note,
                "public": e.action not in INTERNAL_ACTIONS,
                "state": state,
            }
        },
        "$max": {"reopen_count": e.reopen_count},
    }
    fields: Doc = {}
    if responded:
        fields["responded"] = True
    if state:
        fields["state"] = state
        fields["status"] = STATUS_OF_STATE[CaseState(state)].value
        fields["colour"] = colour_of(state, responded).value
    if e.institution.id:
        fields["institution"] = {"id": e.institution.id, "name": e.institution.name}
    if fields:
        update["$set"] = fields
    if (state and state != e.from_state) or e.actor_role == "reporter":
        update["$inc"] = {"case_seq": 1}
    return update


class CaseActionProjection:
    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._collection = collection

    async def apply(self, deliveries: list[Delivery[events_pb2.CaseAction]]) -> None:
        ops: list[UpdateOne] = []
        touched: list[str] = []
        for d in deliveries:
            e = d.message
            ops.append(once_per_event(e.meta.tracking_id, e.meta.event_id, case_update(e)))
            touched.append(e.meta.tracking_id)
        if not ops:
            return
        result = await self._collection.bulk_write(ops, ordered=True)
        # An earlier first response keeps the colour yellow in states that would be red
        # (e.g. forwarded back to the admins). Idempotent: a function of the document.
        await self._collection.update_many(
            {"_id": {"$in": touched}, "responded": True, "colour": Colour.RED.value},
            {"$set": {"colour": Colour.YELLOW.value}},
        )
        EVENTS_CONSUMED.labels(topic=CASE_ACTIONS, outcome="applied").inc(result.modified_count)
        EVENTS_CONSUMED.labels(topic=CASE_ACTIONS, outcome="duplicate").inc(
            len(ops) - result.modified_count
        )

"""The tracking view follows the case: routing's CaseAction events (lapor.cases.actions)
set the report's state, status, colour, institution, reopen count and history.

Idempotent like the other projections: the event id is remembered in the document in the
same atomic update, so a redelivered event changes nothing. History names a role, never an
officer: the actor's personal id is not stored here at all.

``reporter_action_refused`` (routing could not apply a reporter's action that intake had
accepted) changes no state: it adds a history entry only the reporter sees, and lets the
reporter act again if that refused action is the one still holding them back (their latest,
with no case action since: ``reporter_seq == case_seq``, see reporter_rules.check_allowed).
That second write is a compare-and-set decided on the stored view, so it is idempotent too:
once the reporter is free (or has acted again) it matches nothing.
"""

from __future__ import annotations

from lapor.v1 import events_pb2
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from services.common.errors import Unavailable
from services.common.kafka import Delivery
from services.common.metrics import EVENTS_CONSUMED
from services.common.mongo import Doc, once_per_event
from services.common.pbtime import occurred_at
from services.common.status import FINAL_STATES, CaseState, Colour, colour_of
from services.common.topics import CASE_ACTIONS
from services.intake.domain import Status
from services.intake.projection import RETENTION_FROM, holder
from services.intake.reporter_rules import EVENT_ACTION

#: The reporter's actions that hold them back until routing applied or refused them.
GATED_ACTIONS = frozenset(EVENT_ACTION.values())

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
REFUSED = "reporter_action_refused"
# How the reporter's refused action is named to them.
REFUSED_WHAT = {
    "info_provided": "additional information",
    "confirmed": "confirmation of the follow-up",
    "rejected": "rejection of the follow-up",
    "privacy_raised": "privacy change",
}
UNBLOCK_ATTEMPTS = 5


def refusal_note(e: events_pb2.CaseAction) -> str:
    """What the reporter reads: which of their actions was not applied, the state the report
    is in now, and routing's reason (an action and a state, or a field rule; never text the
    reporter wrote)."""
    what = REFUSED_WHAT.get(e.refused_action, f"action {e.refused_action or 'unknown'}")
    state = e.to_state or e.from_state or "unknown"
    reason = f" ({e.reason.strip()})" if e.reason.strip() else ""
    if e.refused_action == "privacy_raised":  # intake applied it to what it shows and keeps
        return (
            f"your {what} applies to this report here, but could not be passed on to the "
            f"institution's case: the report is now in state {state}{reason}"
        )
    return (
        f"your {what} could not be applied: the report is now in state {state}{reason}; "
        "you may act again on the report as it is now"
    )


def refusal_update(e: events_pb2.CaseAction) -> Doc:
    """The history entry for a refusal: the reporter's eyes only, no state change. Pure."""
    state = e.to_state if e.to_state in set(CaseState) else ""
    return {
        "$push": {
            "history": {
                "at": occurred_at(e.meta.occurred_at),
                "action": REFUSED,
                "actor": "routing",
                "detail": "",
                "note": refusal_note(e),
                "public": False,
                "state": state,
            }
        },
        "$max": {"reopen_count": e.reopen_count},
    }


def unblock(doc: Doc, e: events_pb2.CaseAction) -> tuple[Doc, Doc] | None:
    """The (filter, update) that lets the reporter act again after routing refused
    ``e.refused_event_id``, or None when that action no longer holds them back: it is not
    their latest (they acted again since), or a case action came after it. A refused
    rejection gives its reopen back. Pure."""
    actions = doc.get("my_actions") or []
    if not actions or actions[-1].get("event_id") != e.refused_event_id:
        return None
    reporter_seq = int(doc.get("reporter_seq", -1))
    case_seq = int(doc.get("case_seq") or 0)
    if reporter_seq != case_seq:
        return None
    condition: Doc = {
        "_id": doc["_id"],
        "reporter_seq": reporter_seq,
        "case_seq": {"$in": [0, None]} if case_seq == 0 else case_seq,
    }
    update: Doc = {"$set": {"reporter_seq": -1}}
    if actions[-1].get("action") == "rejected" and int(doc.get("rejections") or 0) > 0:
        condition["rejections"] = int(doc["rejections"])
        update["$inc"] = {"rejections": -1}
    return condition, update


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
        fields["institution"] = holder(e.institution, e.holder_ancestors)
    if fields:
        update["$set"] = fields
    if state in FINAL_STATES:  # the earliest closure counts (closed and archived are final)
        update["$min"] = {RETENTION_FROM: occurred_at(e.meta.occurred_at)}
    # A state change, or routing applying one of the reporter's gated actions, lets the
    # reporter act again; a privacy raise (the reporter's too, no state change) does not:
    # it would free a reporter whose confirm or reject routing has not applied yet.
    if (state and state != e.from_state) or (
        e.actor_role == "reporter" and e.action in GATED_ACTIONS
    ):
        update["$inc"] = {"case_seq": 1}
    return update


class CaseActionProjection:
    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._collection = collection

    async def apply(self, deliveries: list[Delivery[events_pb2.CaseAction]]) -> None:
        ops: list[UpdateOne] = []
        touched: list[str] = []
        refusals: list[events_pb2.CaseAction] = []
        for d in deliveries:
            e = d.message
            tid, event_id = e.meta.tracking_id, e.meta.event_id
            if e.action == REFUSED:
                refusals.append(e)
                # Only for an action this report recorded: a refusal of anything else (not
                # sent by intake) adds no history line.
                recorded = {"my_actions.event_id": e.refused_event_id}
                ops.append(once_per_event(tid, event_id, refusal_update(e), recorded))
            else:
                ops.append(once_per_event(tid, event_id, case_update(e)))
            touched.append(e.meta.tracking_id)
        if not ops:
            return
        result = await self._collection.bulk_write(ops, ordered=True)
        for e in refusals:  # after the batch: decided on the view with every action applied
            await self._unblock(e)
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

    async def _unblock(self, e: events_pb2.CaseAction) -> None:
        fields = {"my_actions": 1, "reporter_seq": 1, "case_seq": 1, "rejections": 1}
        for _ in range(UNBLOCK_ATTEMPTS):
            doc = await self._collection.find_one({"_id": e.meta.tracking_id}, fields)
            change = None if doc is None else unblock(doc, e)
            if change is None:
                return
            result = await self._collection.update_one(*change)
            if result.modified_count == 1:
                return
        raise Unavailable(f"tracking_id: report {e.meta.tracking_id} is busy; retry")

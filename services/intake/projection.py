"""Keeps each complaint's tracking view current from the other services' events.

The view lives in two documents with the report's tracking id as `_id`:

- the complaint (collection ``complaints``) keeps what listings, filters and access decisions
  read: status, colour, holding institution, topic, overdue, escalated. Few events change
  these, and a write there is dear: the collection carries the public listing's indexes, and
  the embedded database rewrites every index entry of a document it updates.
- its timeline (``complaint_timelines``, no secondary index) takes what most events only add:
  history lines, the deadlines and the notifications sent. It is created by the first event
  that reaches it; readers merge it into the complaint (`with_timeline`).

A timeline update is applied at most once per event id (the id is remembered in the
timeline in the same atomic write), so redelivered events add nothing. The complaint's
fields are not de-duplicated by event id: an event sets values it carries, which a
redelivery sets again unchanged, and where a late or redelivered event could undo what
routing's case actions recorded meanwhile (a ComplaintRouted's status, colour and holder, an
escalation's status), the update is a pipeline that keeps the stored value
(`_unless_case_state`, `_unless_closed`).

SLA events can arrive out of order (sla publishes them through two outboxes nothing orders,
docs/sla.md). The timeline keeps ``sla_version``, the highest ``clocks_version`` applied, and
an SLA event applies to it only if its own is not lower (checked and raised in the same
write); an older one is ignored whole, since a newer state of the clocks superseded it. The
timeline also keeps ``overdue`` (a breach sets it, a ``deadlines_set`` sets it from its
clocks: a breached one), and the complaint's ``overdue``, a listing filter, follows the
timeline's after each batch (`TrackingProjection._follow_overdue`), written only when it
changes. Events without a version (0, published before the field existed) apply without the
check, as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lapor.v1 import common_pb2, events_pb2
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from services.common.kafka import Delivery
from services.common.metrics import EVENTS_CONSUMED
from services.common.mongo import (
    SLA_VERSION,
    Doc,
    duplicate_keys_only,
    not_applied,
    not_older_sla_event,
    raising_sla_version,
    remember_event,
)
from services.common.pbtime import occurred_at
from services.common.status import FINAL_STATES, CaseState, Colour
from services.intake.domain import Status

TIMELINES = "complaint_timelines"


def timelines_of(complaints: AsyncCollection[Doc]) -> AsyncCollection[Doc]:
    return complaints.database[TIMELINES]


def with_timeline(doc: Doc | None, timeline: Doc | None) -> Doc | None:
    """The complaint as its readers see it: its own history (reception, case actions, the
    reporter's actions) with the timeline's, the timeline's deadlines, all notifications."""
    if doc is None or not timeline:
        return doc
    merged = dict(doc)
    merged["history"] = [*doc.get("history", []), *timeline.get("history", [])]
    merged["notifications"] = [*doc.get("notifications", []), *timeline.get("notifications", [])]
    if "deadlines" in timeline:
        merged["deadlines"] = timeline["deadlines"]
    return merged


async def read_view(complaints: AsyncCollection[Doc], tracking_id: str, hidden: Doc) -> Doc | None:
    """One complaint with its timeline merged in (`hidden`: fields left out)."""
    doc = await complaints.find_one({"_id": tracking_id}, hidden)
    if doc is None:
        return None
    timeline = await timelines_of(complaints).find_one({"_id": tracking_id}, {"_applied": 0})
    return with_timeline(doc, timeline)


# SLA_VERSION (services.common.mongo) on a timeline: the highest SlaEvent.clocks_version
# applied to it; on the complaint: the one of the timeline its ``overdue`` was taken from.
OVERDUE = "overdue"


@dataclass(frozen=True)
class ViewChange:
    """What one event changes: the complaint's fields (an update, or an update pipeline
    when a value depends on the stored document) and its timeline (an update, applied only
    while the timeline matches `condition` too, when given). `follow_overdue`: the
    complaint's ``overdue`` is then set to the timeline's."""

    complaint: Doc | list[Doc] | None = None
    timeline: Doc | None = None
    condition: Doc | None = None
    follow_overdue: bool = False


def _history(at: datetime, action: str, actor: str, detail: str) -> Doc:
    return {"at": at, "action": action, "actor": actor, "detail": detail}


def _unless_case_state(value: Any, field: str) -> Doc:
    """Pipeline expression: `value` while the case has no state from routing's CaseActions
    and has not been escalated, else the stored `field`. ComplaintRouted and CaseAction
    travel on different topics, so a late (or redelivered) ComplaintRouted must not put a
    case that was accepted, forwarded, resolved or escalated meanwhile back to "routed"."""
    untouched = {"$and": [{"$eq": [{"$type": "$state"}, "missing"]}, {"$ne": ["$escalated", True]}]}
    return {"$cond": [untouched, {"$literal": value}, f"${field}"]}


#: Case states (recorded from routing's case actions) whose status an escalation keeps:
#: the institution has resolved the report, or it is closed or archived. sla stops the
#: Ombudsman clock at resolution, so an escalation arriving over one of these states was
#: either sent before the resolution (which is the later fact) or decided before sla heard
#: of it; either way the reporter must see the follow-up to confirm or reject it.
SETTLED_STATES = (CaseState.RESOLVED.value, *(s.value for s in FINAL_STATES))
#: The complaint's field holding when the case entered a final state (closed, archived),
#: until the reporter's identity is erased: the identity retention counts from it
#: (store.forget_identities).
RETENTION_FROM = "retention_from"


def _unless_settled(value: Any, field: str) -> Doc:
    """Pipeline expression: `value` unless routing's CaseActions recorded a settled case
    state (`SETTLED_STATES`), else the stored `field`. An OmbudsmanEscalation travels on
    another topic than the case actions, so a late or redelivered one must not turn a
    resolved, closed or archived report back into "escalated". In the other order a case
    action sets the status from its state, so the view ends the same either way."""
    settled = {"$in": [{"$ifNull": ["$state", ""]}, list(SETTLED_STATES)]}
    return {"$cond": [settled, f"${field}", {"$literal": value}]}


def holder(institution: common_pb2.Institution, ancestors: Iterable[str]) -> Doc:
    """The holding institution as the tracking view keeps it: with the ids above it, as
    routing's directory had them, for deciding which officers see the report's evidence."""
    return {"id": institution.id, "name": institution.name, "ancestors": list(ancestors)}


def routed_update(e: events_pb2.ComplaintRouted) -> ViewChange:
    at = occurred_at(e.meta.occurred_at)
    routed = {
        "status": Status.ROUTED.value,
        "colour": Colour.RED.value,
        "institution": holder(e.institution, e.holder_ancestors),
    }
    fields = {name: _unless_case_state(value, name) for name, value in routed.items()}
    if e.topic:  # a public-listing filter, whatever the case's state
        fields["topic"] = {"$literal": e.topic}
    return ViewChange(
        complaint=[{"$set": fields}],
        timeline={
            "$push": {
                "history": _history(at, "routed", "routing", f"to {e.institution.name} ({e.rule})")
            }
        },
    )


def sla_update(e: events_pb2.SlaEvent) -> ViewChange:
    """The timeline's deadlines, overdue flag and history line of one SLA event, applied
    only if no newer one (``clocks_version``) was applied to the timeline; the complaint's
    ``overdue`` follows the timeline's (see the module's docstring)."""
    at = occurred_at(e.meta.occurred_at)
    kind = e.WhichOneof("kind")
    version = e.clocks_version
    update: Doc
    if kind == "deadlines_set":
        deadlines = [
            {
                "clock": d.clock,
                "due_at": d.due_at.ToDatetime(tzinfo=UTC),
                "state": d.state or "running",
            }
            for d in e.deadlines_set.deadlines
        ]
        detail = ", ".join(f"{d['clock']} by {d['due_at']:%Y-%m-%d %H:%M} UTC" for d in deadlines)
        overdue = any(d["state"] == "breached" for d in deadlines)  # as routing's (and sla's)
        update = {
            "$set": {"deadlines": deadlines, OVERDUE: overdue},
            "$push": {"history": _history(at, "deadlines_set", "sla", detail)},
        }
    elif kind == "warning":
        update = {"$push": {"history": _history(at, "deadline_warning", "sla", e.warning.clock)}}
    elif kind == "breached":
        update = {
            "$set": {OVERDUE: True},
            "$push": {"history": _history(at, "deadline_breached", "sla", e.breached.clock)},
        }
    else:
        return ViewChange()
    return ViewChange(
        timeline=raising_sla_version(update, version),
        condition=not_older_sla_event(version) or None,
        follow_overdue=OVERDUE in update.get("$set", {}),
    )


def notification_update(e: events_pb2.NotificationRecorded) -> ViewChange:
    at = occurred_at(e.meta.occurred_at)
    return ViewChange(
        timeline={
            "$push": {
                "notifications": {"template": e.template, "channel": e.channel, "at": at},
                "history": _history(at, "notified", "notify", e.template),
            }
        }
    )


def escalation_update(e: events_pb2.OmbudsmanEscalation) -> ViewChange:
    """The report is flagged escalated (a fact, whatever happened since) and shows the
    status "escalated" unless its case is resolved, closed or archived (`_unless_settled`).
    Only the first time: a redelivered escalation (one report is escalated once) leaves the
    status a case action set since then."""
    at = occurred_at(e.meta.occurred_at)
    first = {"$ne": ["$escalated", True]}
    status = {"$cond": [first, _unless_settled(Status.ESCALATED.value, "status"), "$status"]}
    return ViewChange(
        complaint=[{"$set": {"status": status, "escalated": {"$literal": True}}}],
        timeline={"$push": {"history": _history(at, "escalated", "sla", "handed to Ombudsman RI")}},
    )


class TrackingProjection:
    def __init__(self, complaints: AsyncCollection[Doc]) -> None:
        self._complaints = complaints
        self._timelines = timelines_of(complaints)

    async def apply(self, topic: str, deliveries: list[Delivery[Any]], build: Any) -> None:
        complaint_ops: list[UpdateOne] = []
        timeline_ops: list[tuple[Doc, Doc]] = []
        overdue: list[str] = []
        for d in deliveries:
            change: ViewChange = build(d.message)
            if change.complaint is None and change.timeline is None:
                EVENTS_CONSUMED.labels(topic=topic, outcome="ignored").inc()
                continue
            tracking_id, event_id = d.message.meta.tracking_id, d.message.meta.event_id
            if change.complaint is not None:
                complaint_ops.append(UpdateOne({"_id": tracking_id}, change.complaint))
            if change.timeline is not None:
                timeline_ops.append(
                    (
                        {"_id": tracking_id, **not_applied(event_id), **(change.condition or {})},
                        remember_event(change.timeline, event_id),
                    )
                )
            if change.follow_overdue and tracking_id not in overdue:
                overdue.append(tracking_id)
        if complaint_ops:
            # Not de-duplicated by event id: a redelivery sets the same values again, and
            # the fields routing's case actions also set (status, colour, holder) are kept
            # when the case moved on (pipelines: `_unless_case_state`, `_unless_closed`).
            await self._complaints.bulk_write(complaint_ops, ordered=True)
        applied = await self._apply_timeline(timeline_ops)
        # Also after a redelivery (a crash may have come between the timeline's write and
        # this one): a function of the stored timeline.
        await self._follow_overdue(overdue)
        # "duplicate" counts SLA events older than one applied (ignored) as well.
        EVENTS_CONSUMED.labels(topic=topic, outcome="applied").inc(applied)
        EVENTS_CONSUMED.labels(topic=topic, outcome="duplicate").inc(len(timeline_ops) - applied)

    async def _follow_overdue(self, tracking_ids: list[str]) -> None:
        """Set each complaint's ``overdue`` to its timeline's where they differ: a write of
        the complaint (and its listing indexes) only when the flag changes. The complaint
        remembers the timeline's ``sla_version`` it took the flag from, and a flag read
        from an older timeline (a replica that read before a newer event was applied)
        never overwrites it. A timeline without the flag (only events from before it
        existed) leaves the complaint as it is."""
        if not tracking_ids:
            return
        ops = [
            UpdateOne(
                {
                    "_id": t["_id"],
                    # a complaint without the flag counts as not overdue
                    OVERDUE: {"$ne": True} if t[OVERDUE] else True,
                    SLA_VERSION: {"$not": {"$gt": int(t.get(SLA_VERSION) or 0)}},
                },
                {"$set": {OVERDUE: t[OVERDUE], SLA_VERSION: int(t.get(SLA_VERSION) or 0)}},
            )
            async for t in self._timelines.find(
                {"_id": {"$in": tracking_ids}, OVERDUE: {"$exists": True}},
                {OVERDUE: 1, SLA_VERSION: 1},
            )
        ]
        if ops:
            await self._complaints.bulk_write(ops, ordered=False)

    async def _apply_timeline(self, ops: list[tuple[Doc, Doc]]) -> int:
        """Apply the timeline updates in order, each creating its timeline when it has none
        yet; the number applied (the rest were already applied: redeliveries).

        An update whose event the timeline already holds matches nothing, so its upsert
        tries to create the existing timeline and the database refuses it (duplicate key):
        the same update without upsert then applies it if a concurrent first write had
        just created the timeline, and does nothing for a redelivery. An ordered bulk stops
        at the refusal; the rest continue after it, so each timeline's order holds."""
        applied = 0
        while ops:
            try:
                result = await self._timelines.bulk_write(
                    [UpdateOne(f, u, upsert=True) for f, u in ops], ordered=True
                )
                return applied + result.modified_count + result.upserted_count
            except BulkWriteError as exc:
                if not duplicate_keys_only(exc):  # an ordered bulk stops at its first error
                    raise
                applied += exc.details.get("nModified", 0) + exc.details.get("nUpserted", 0)
                refused = exc.details["writeErrors"][0]["index"]
                again = await self._timelines.update_one(*ops[refused])
                applied += again.modified_count
                ops = ops[refused + 1 :]
        return applied

"""MongoDB adapter for complaints, with group commit.

Concurrent submissions are gathered while the previous write is in flight and stored
with one ``insert_many``: one round trip, one journal write, many complaints. Their
ComplaintReceived events go into the outbox queue (``complaints_outbox``) in the same
transaction, so a complaint is never stored without its event, and the relay publishes them
without rewriting the complaints. A duplicate idempotency scope fails only its own
document; that submission gets the stored original back.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from prometheus_client import Histogram
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from services.common.metrics import LATENCY_BUCKETS
from services.common.mongo import Doc
from services.common.outbox import (
    PENDING,
    PUBLISHED,
    OutboxMessage,
    ensure_queue,
    insert_queued,
    merge_updates,
    outbox_update,
    queued_fields,
)
from services.common.status import FINAL_STATES
from services.intake.abuse import DEDUPE_PREFIX, dedupe_key
from services.intake.channels import (
    FORGOTTEN_SCOPE,
    PLAIN_REFERENCE_SCOPE,
    POST_SCOPE,
    REFERENCE_SCOPE,
    reference_scope,
)
from services.intake.codec import privacy_raised_event, received_event
from services.intake.domain import Complaint, Privacy, Status, colour_for
from services.intake.followup import FIELD as FOLLOW_UP_CODES
from services.intake.handlers import Stored
from services.intake.identity import IdentityCipher
from services.intake.projection import RETENTION_FROM, read_view

log = logging.getLogger(__name__)

BATCH_SIZE = Histogram(
    "lapor_intake_group_commit_size",
    "Complaints stored per group-commit write",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
WRITE_LATENCY = Histogram(
    "lapor_intake_group_commit_seconds",
    "Duration of one group-commit write",
    buckets=LATENCY_BUCKETS,
)


FOLLOW_UP_KEEP = 20  # follow-up code hashes kept per report (a retry adds one)
# When the report received the identity it keeps: present while ``reporter`` is, and after
# its erasure only until the replay copy goes too (`_erase`), so the age backstop (sparse
# index) reads only reports that keep one or are still being erased.
IDENTITY_SINCE = "identity_since"
# Scopes that are keyed hashes of something leading to the reporter (a social-media post, an
# institution system's record): given up with the identity, or after a while if anonymous.
TRACE_SCOPES = (POST_SCOPE, REFERENCE_SCOPE, PLAIN_REFERENCE_SCOPE)
_TRACE = {"$regex": "^(" + "|".join(re.escape(p) for p in TRACE_SCOPES) + ")"}
# The reporter's own file names on the listing (officers and GridFS get the neutral name).
_NAMED_EVIDENCE = {"evidence.name": {"$exists": True}}
_UNNAME_EVIDENCE = {"evidence.$[].name": ""}
# What a report gives up once its erasure is complete: out of the sparse indexes, and without
# the replay copy of what it published.
_ERASED = {RETENTION_FROM: "", IDENTITY_SINCE: "", PUBLISHED: ""}


@dataclass
class _Pending:
    complaint: Complaint
    doc: Doc
    future: asyncio.Future[Stored]
    events: list[OutboxMessage]


class MongoComplaintStore:
    def __init__(
        self,
        collection: AsyncCollection[Doc],
        cipher: IdentityCipher,
        max_batch: int = 512,
        writers: int = 2,
        on_stored: Any = None,
    ) -> None:
        self._collection = collection
        self._cipher = cipher
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._writers = writers
        self._tasks: list[asyncio.Task[None]] = []
        self._on_stored = on_stored

    async def ensure_indexes(self) -> None:
        await self._collection.create_index("idem", unique=True)
        await self._collection.create_index(PENDING)
        await ensure_queue(self._collection)
        await self._collection.create_index([("region_code", 1), ("received_at", -1)])
        await self._collection.create_index(RETENTION_FROM, sparse=True)
        await self._collection.create_index(IDENTITY_SINCE, sparse=True)

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._writer()) for _ in range(self._writers)]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    async def add(self, complaint: Complaint, *legacy_scopes: str) -> Stored:
        """Store `complaint`, or return the report already stored under its scope or a
        dedupe key (duplicate=True), or under one of `legacy_scopes` (the scope an earlier
        intake version gave the same request: see `earlier`)."""
        if legacy_scopes:
            # An insert under the current scope would not collide with a report stored under
            # an older one, so look first: one indexed read, for these channels only.
            existing = await self._same_scope(complaint, legacy_scopes)
            if existing is not None:
                return _stored(existing, same_request=True)
        self.start()
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        events = [received_event(complaint)]
        await self._queue.put(
            _Pending(complaint, self._document(complaint, events), future, events)
        )
        return await future

    async def get(self, tracking_id: str) -> Doc | None:
        return await read_view(self._collection, tracking_id, {"_outbox": 0, "_applied": 0})

    async def add_follow_up_code(self, tracking_id: str, code_hash: str) -> None:
        await self._collection.update_one(
            {"_id": tracking_id},
            {"$push": {FOLLOW_UP_CODES: {"$each": [code_hash], "$slice": -FOLLOW_UP_KEEP}}},
        )

    async def raise_privacy(
        self, tracking_id: str, current: Privacy, wanted: Privacy, at: datetime
    ) -> bool:
        event = outbox_update([privacy_raised_event(tracking_id, wanted, at)])
        attempts: list[tuple[Doc, Doc]] = [({}, {"$set": {"privacy": wanted.value}})]
        if wanted is Privacy.ANONYMOUS:  # anonymous keeps no identity, from now on
            kept: Doc = {"$set": {"privacy": wanted.value, "reachable": False}}
            gone = {"reporter": "", IDENTITY_SINCE: ""}
            # Nor the names the reporter gave their files. `$[]` needs the array: one write
            # for a report without evidence, one for a report with (a listing is never
            # removed, so a report that misses the first is found by the second).
            attempts = [
                ({"evidence": {"$exists": False}}, {**kept, "$unset": gone}),
                ({"evidence": {"$exists": True}}, {**kept, "$unset": {**gone, **_UNNAME_EVIDENCE}}),
            ]
        modified = 0
        for condition, change in attempts:
            result = await self._collection.update_one(
                {"_id": tracking_id, "privacy": current.value, **condition},
                merge_updates(change, event),
            )
            modified = result.modified_count
            if result.matched_count:  # else: changed meanwhile (or the other form)
                break
        if modified and self._on_stored is not None:
            self._on_stored()
        return modified == 1

    async def hash_plain_references(self, reference_key: Callable[[str, str], str]) -> int:
        """Replace the plain institution-system references that reports stored before
        2026-11-23 keep in their idempotency scope by the keyed hash intake keeps now
        (`reference_key(source_system, reference)`), so a retry of such a report still finds
        it and the reference is no longer kept. A backfill (run in the background after
        start; meanwhile `earlier` finds the plain form); idempotent. Returns how many
        reports changed."""

        def hashed(_doc: Doc, value: str) -> str:
            _, _, source, reference = value.split(":", 3)
            return reference_scope(source, reference_key(source, reference))

        changed = 0
        for _pass in range(3):  # a report whose keys changed meanwhile is read again
            found, done = await self._rewrite_scopes({}, (PLAIN_REFERENCE_SCOPE,), hashed)
            changed += done
            if not found:
                break
        return changed

    async def forget_anonymous_scopes(self, received_before: datetime) -> int:
        """Give up the idempotency scope of anonymous reports received before
        `received_before` when it is a keyed hash of something that leads to the reporter (a
        social-media post, an institution system's reference): the scope becomes
        ``forgotten:<tracking id>`` (unique, as the index needs). A retry of such a report
        after that is a new report; the channels' retries come within minutes. Returns how
        many reports changed (one changed meanwhile waits for the next round)."""
        query = {"privacy": Privacy.ANONYMOUS.value, "received_at": {"$lt": received_before}}
        _found, changed = await self._rewrite_scopes(
            query,
            (POST_SCOPE, REFERENCE_SCOPE),
            lambda doc, _value: f"{FORGOTTEN_SCOPE}{doc['_id']}",
        )
        return changed

    async def _rewrite_scopes(
        self, query: Doc, prefixes: tuple[str, ...], rewrite: Callable[[Doc, str], str]
    ) -> tuple[int, int]:
        """Replace each ``idem`` value (the scope, a scalar or the array's first value, and
        the dedupe keys) of the reports matching `query` that starts with one of `prefixes`
        by `rewrite(report, value)`, each report in a write conditioned on the ``idem`` it
        was read with (a report changed meanwhile is left). Returns how many reports were
        found and how many of them changed."""
        pattern = "|".join(re.escape(p) for p in prefixes)
        found = await self._collection.find(
            {**query, "idem": {"$regex": f"^({pattern})"}}, {"idem": 1}
        ).to_list(None)
        changed = 0
        for doc in found:
            values = doc["idem"] if isinstance(doc["idem"], list) else [doc["idem"]]
            kept = [rewrite(doc, v) if v.startswith(prefixes) else v for v in values]
            try:
                result = await self._collection.update_one(
                    {"_id": doc["_id"], "idem": doc["idem"]},
                    {"$set": {"idem": kept if isinstance(doc["idem"], list) else kept[0]}},
                )
            except DuplicateKeyError:
                # Another report holds the new value already (a retry stored twice while
                # old and new intake versions ran side by side): this one gives its scope up
                # rather than stop every intake start on it.
                log.warning(
                    "scope already held by another report; this one's is forgotten",
                    extra={"tracking_id": doc["_id"]},
                )
                forgotten = [
                    f"{FORGOTTEN_SCOPE}{doc['_id']}" if v.startswith(prefixes) else v
                    for v in values
                ]
                result = await self._collection.update_one(
                    {"_id": doc["_id"], "idem": doc["idem"]},
                    {
                        "$set": {
                            "idem": forgotten if isinstance(doc["idem"], list) else forgotten[0]
                        }
                    },
                )
            changed += result.modified_count
        return len(found), changed

    async def forget_identities(self, closed_before: datetime) -> int:
        """Erase the sealed identity of reports whose case reached a final state (closed,
        archived) before `closed_before` (``retention_from``, set from routing's case
        action, removed here): nothing is left that names or reaches the reporter, who keeps
        the follow-up code. The report's published events (``_published``, kept for an
        outbox replay: a copy of its title, body and the reporter's texts) go with it, or in
        a later round if some still wait in its outbox, so an outbox replay after that
        republishes none of them. The sparse index holds only reports still waiting, so each
        round reads no more than those. Returns how many identities were erased; idempotent."""
        return await self._erase({RETENTION_FROM: {"$lt": closed_before}})

    async def forget_stale_identities(self, received_before: datetime) -> int:
        """The backstop: erase, as `forget_identities` does, the sealed identity of reports
        received before `received_before`, whatever their case's state (one that never
        reached a final state, or never had a case). Reads only reports that still keep an
        identity, or whose erasure waits for their outbox (``identity_since``, sparse).
        Returns how many were erased; idempotent."""
        return await self._erase({IDENTITY_SINCE: {"$lt": received_before}})

    async def _erase(self, due: Doc) -> int:
        """Erase the identity of the reports matching `due` and what leads back to the
        reporter with it: the keyed hash of a post or an institution system's reference in
        the scope (it becomes ``forgotten:<tracking id>``, as an anonymous report's does)
        and the names the reporter gave their files; and its published events kept for an
        outbox replay, which then republishes none of them. A report whose scope a
        concurrent write kept is left, still due, for the next round. Returns how many
        identities went (each counted once, in the round that erased it)."""
        # No hints: unhinted, SecantusDB (0.7) looks up the `due` range in its sparse index;
        # hinted, a find reads that whole index (identity_since: every report keeping an
        # identity). Its explain reports a COLLSCAN for these filters all the same.
        named = {**due, "reporter": {"$exists": True}}
        await self._rewrite_scopes(
            named, TRACE_SCOPES, lambda doc, _value: f"{FORGOTTEN_SCOPE}{doc['_id']}"
        )
        erasable = {**named, "idem": {"$not": _TRACE}}
        # The identity and the file names in one write per report (an upload between two
        # writes would list its name on a report that no longer keeps the identity, and
        # `attach` names files only while it does). `$[]` needs the array: two forms.
        erased = 0
        for evidence, names in (({"$exists": True}, _UNNAME_EVIDENCE), ({"$exists": False}, {})):
            result = await self._collection.update_many(
                {**erasable, "evidence": evidence},
                {"$unset": {"reporter": "", **names}, "$set": {"reachable": False}},
            )
            erased += result.modified_count
        # Then every due report without an identity (erased just now or in an earlier round,
        # anonymous, or given up) loses any names older versions listed, and its replay copy
        # once no event of it waits in its outbox: the relay would push those back into the
        # copy after publishing them. Until then it keeps its dates, so it stays due and a
        # later round finds it here again. An anonymous report's scope follows
        # LAPOR_INTAKE_ANONYMOUS_SCOPE_DAYS.
        nameless = {**due, "reporter": {"$exists": False}}
        await self._collection.update_many(
            {**nameless, **_NAMED_EVIDENCE}, {"$unset": _UNNAME_EVIDENCE}
        )
        await self._collection.update_many(
            {**nameless, PENDING: {"$ne": True}}, {"$unset": _ERASED}
        )
        return erased

    async def date_undated_identities(self) -> int:
        """Give reports stored before ``identity_since`` existed, and still keeping an
        identity, that field (their receipt), so the age backstop sees them. A backfill (run
        in the background after start); idempotent. Returns how many reports changed."""
        result = await self._collection.update_many(
            {"reporter": {"$exists": True}, IDENTITY_SINCE: {"$exists": False}},
            [{"$set": {IDENTITY_SINCE: "$received_at"}}],
        )
        return result.modified_count

    async def date_undated_closures(self, now: datetime) -> int:
        """Give reports that reached a final state before ``retention_from`` existed, and
        still keep an identity, that field as of `now`: their retention counts from the
        upgrade, never shorter than it should. A backfill (run in the background after
        start); idempotent. Returns how many reports changed."""
        result = await self._collection.update_many(
            {
                "state": {"$in": [s.value for s in FINAL_STATES]},
                "reporter": {"$exists": True},
                RETENTION_FROM: {"$exists": False},
            },
            {"$set": {RETENTION_FROM: now}},
        )
        return result.modified_count

    async def forget_dedupe_keys(self, before_bucket: int) -> int:
        """Drop the keyed contact hashes of dedupe windows before `before_bucket`."""
        expired = {"$gte": DEDUPE_PREFIX, "$lt": dedupe_key(before_bucket, "")}
        result = await self._collection.update_many({"idem": expired}, {"$pull": {"idem": expired}})
        return result.modified_count

    def _document(self, c: Complaint, events: list[OutboxMessage]) -> Doc:
        doc: Doc = {
            "_id": c.tracking_id,
            "channel": c.channel.value,
            "client": c.client_id,
            "privacy": c.privacy.value,
            "classification": c.classification.value,
            "title": c.title,
            "body": c.body,
            "region_code": c.region_code,
            "category": c.category,
            "named_institution_id": c.named_institution_id,
            "reachable": c.reachable,
            "idem": c.idempotency_scope,
            "fingerprint": c.fingerprint,
            "received_at": c.received_at,
            "status": Status.RECEIVED.value,
            "colour": colour_for(Status.RECEIVED).value,
            "institution": None,
            "deadlines": [],
            "history": [
                {
                    "at": c.received_at,
                    "action": "received",
                    "actor": "intake",
                    "detail": f"via {c.channel.value}",
                }
            ],
            "notifications": [],
            "overdue": False,
            "escalated": False,
            "_applied": [],
            **queued_fields(events),  # the events themselves go to the queue
        }
        if c.follow_up_hash:
            doc[FOLLOW_UP_CODES] = [c.follow_up_hash]
        if c.dedupe_keys:  # one unique index serves idempotency and duplicate detection
            doc["idem"] = [c.idempotency_scope, *c.dedupe_keys]
        if c.reporter is not None:
            sealed = self._cipher.seal(c.reporter, c.tracking_id)
            doc["reporter"] = {"kid": sealed.key_id, "nonce": sealed.nonce, "ct": sealed.ciphertext}
            doc[IDENTITY_SINCE] = c.received_at
        return doc

    async def earlier(self, c: Complaint, *legacy_scopes: str) -> Stored | None:
        """The stored report `c` collides with: same scope (or one of `legacy_scopes`), else
        same dedupe key.

        `legacy_scopes`: where an earlier intake version stored the same request. An
        institution system's reference was kept in plain text before 2026-11-23
        (``institution_system:ref:<source>:<reference>``); during a rolling upgrade an old
        pod still stores that form while new pods look up the keyed hash, and the backfill
        (`hash_plain_references`) hashes it only after an intake's next start."""
        existing = await self._same_scope(c, legacy_scopes)
        same_request = existing is not None
        if existing is None and c.dedupe_keys:
            existing = await self._collection.find_one(
                {"idem": {"$in": list(c.dedupe_keys)}}, _STORED_FIELDS
            )
        if existing is None:
            return None
        return _stored(existing, same_request)

    async def _same_scope(self, c: Complaint, legacy_scopes: tuple[str, ...]) -> Doc | None:
        """The report stored under `c`'s scope, else under one of `legacy_scopes`: one read
        of the unique ``idem`` index."""
        if not legacy_scopes:
            return await self._collection.find_one({"idem": c.idempotency_scope}, _STORED_FIELDS)
        found = await self._collection.find(
            {"idem": {"$in": [*legacy_scopes, c.idempotency_scope]}}, {**_STORED_FIELDS, "idem": 1}
        ).to_list(None)
        # Both (a retry stored twice while old and new versions ran side by side): the one
        # under the current scope, which keeps it when the backfill gives the other's up.
        current = [d for d in found if c.idempotency_scope in _values(d["idem"])]
        return next(iter(current or found), None)

    async def _writer(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            except Exception as exc:  # noqa: BLE001 - every waiter gets the error
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)

    async def _write(self, batch: list[_Pending]) -> None:
        # Submissions racing with the same idempotency scope inside one batch: store the
        # first, hand the others the same answer.
        by_scope: dict[str, _Pending] = {}
        unique: list[_Pending] = []
        followers: list[tuple[_Pending, _Pending]] = []
        for item in batch:
            leader = by_scope.get(item.complaint.idempotency_scope)
            if leader is None:
                by_scope[item.complaint.idempotency_scope] = item
                unique.append(item)
            else:
                followers.append((item, leader))
        BATCH_SIZE.observe(len(unique))
        with WRITE_LATENCY.time():
            failed = await insert_queued(
                self._collection,
                [(i.doc, i.events) for i in unique],
                unique_field="idem",
            )
        if self._on_stored is not None and len(failed) < len(unique):
            self._on_stored()
        # Each answer is worked out before any is handed out, and handed out only to a
        # caller still waiting: a caller that gave up (its deadline passed, it hung up) has
        # a cancelled future, and must not turn the others' stored reports into errors.
        outcomes: dict[int, Stored | BaseException] = {}
        for index, item in enumerate(unique):
            error = failed.get(index)
            outcome: Stored | BaseException
            if error is None:
                c = item.complaint
                outcome = Stored(
                    c.tracking_id, c.received_at, False, c.fingerprint, False, c.client_id
                )
            elif error.get("code") == 11000 and "idem" in (error.get("keyPattern") or {"idem": 1}):
                try:
                    existing = await self.earlier(item.complaint)
                    outcome = existing or RuntimeError("idempotency record vanished")
                except Exception as exc:  # noqa: BLE001 - this caller's answer only
                    outcome = exc
            else:
                outcome = RuntimeError(f"write failed: code {error.get('code')}")
            outcomes[id(item)] = outcome
        for item, leader in followers:
            first = outcomes[id(leader)]
            if isinstance(first, Stored):
                # It raced its leader with the same scope: the same request as the leader's,
                # so the same request as what the leader matched, unless that was only the
                # same text (then neither may get a code).
                same = first.same_request or not first.duplicate
                first = replace(first, duplicate=True, same_request=same)
            outcomes[id(item)] = first
        for item in batch:
            _settle(item.future, outcomes[id(item)])


_STORED_FIELDS = {"received_at": 1, "fingerprint": 1, "client": 1}


def _stored(doc: Doc, same_request: bool) -> Stored:
    """The answer for a submission that found `doc` stored already."""
    return Stored(
        doc["_id"],
        doc["received_at"],
        True,
        doc["fingerprint"],
        same_request,
        doc.get("client", ""),
    )


def _values(idem: str | list[str]) -> list[str]:
    return idem if isinstance(idem, list) else [idem]


def _settle(future: asyncio.Future[Stored], outcome: Stored | BaseException) -> None:
    """Hand `outcome` to a caller still waiting (not to one that gave up)."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)

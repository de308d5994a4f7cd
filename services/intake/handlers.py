"""Intake's use cases, written against ports so they run over fakes in unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from services.common.clock import Clock
from services.common.errors import (
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ValidationError,
    Violation,
    require,
)
from services.common.ids import MalformedTrackingId, parse_tracking_id
from services.intake import channels
from services.intake.abuse import AbuseHasher
from services.intake.access_codes import GuessGuard, refuse_wrong_code
from services.intake.acknowledgement import acknowledgement
from services.intake.channel_auth import ChannelClient, authorize
from services.intake.domain import (
    Channel,
    Complaint,
    Privacy,
    SubmitComplaint,
    fingerprint,
    receive,
    validate,
)
from services.intake.followup import (
    FIELD,
    hash_follow_up_code,
    new_follow_up_code,
    verify_follow_up_code,
)
from services.intake.limits import Hit, NoRateLimiter, RateLimiter, RateLimits
from services.intake.privacy import check_raise

NO_MATCH = "tracking_id, follow_up_code: no report matches this tracking id and follow-up code"


@dataclass(frozen=True)
class Stored:
    tracking_id: str
    received_at: datetime
    duplicate: bool
    fingerprint: str
    # A duplicate of the same request (its idempotency scope: channel and key, post or
    # reference), not only of the same text from the same contact.
    same_request: bool = False
    # The channel client that submitted the stored report ("" for one stored before
    # clients were recorded, or by a trusted in-process caller).
    client_id: str = ""


@dataclass(frozen=True)
class Submitted:
    stored: Stored
    follow_up_code: str
    acknowledgement: str


class ComplaintStore(Protocol):
    async def add(self, complaint: Complaint, *legacy_scopes: str) -> Stored:
        """Store the complaint with its ComplaintReceived event, or return the complaint
        already stored under the same idempotency scope or dedupe key (duplicate=True), or
        under one of `legacy_scopes` (the same request as an earlier version kept it)."""
        ...

    async def earlier(self, complaint: Complaint, *legacy_scopes: str) -> Stored | None:
        """The stored report `complaint` would be a duplicate of (duplicate=True), if any:
        same idempotency scope (or one of `legacy_scopes`) first, else same dedupe key.
        Stores nothing."""
        ...

    async def get(self, tracking_id: str) -> dict[str, Any] | None: ...

    async def add_follow_up_code(self, tracking_id: str, code_hash: str) -> None: ...

    async def raise_privacy(
        self, tracking_id: str, current: Privacy, wanted: Privacy, at: datetime
    ) -> bool:
        """Set the new privacy (dropping the identity for anonymous) with its
        ReporterAction event, if the report still has `current`. False otherwise."""
        ...


@dataclass
class IntakeHandlers:
    store: ComplaintStore
    clock: Clock
    new_tracking_id: Callable[[], str]
    known_region: Callable[[str], bool]
    limiter: RateLimiter = field(default_factory=NoRateLimiter)
    limits: RateLimits = field(default_factory=RateLimits.unlimited)
    hasher: AbuseHasher = field(default_factory=lambda: AbuseHasher(b"unit-tests-only"))
    # The reporter API's wrong-code limit per tracking id (access_codes.GuessGuard), shared
    # with it: None counts nothing (unit tests of other rules).
    guard: GuessGuard | None = None

    async def submit(self, cmd: SubmitComplaint, client: ChannelClient | None = None) -> Stored:
        return (await self.submit_from(cmd, client)).stored

    async def submit_from(self, cmd: SubmitComplaint, client: ChannelClient | None) -> Submitted:
        """`client` is the authenticated channel client (None: a trusted in-process caller)."""
        if client is not None:
            authorize(client, cmd.channel)
        cmd, channel_violations = channels.prepare(cmd)
        require(validate(cmd, self.known_region) + channel_violations)
        now = self.clock.now()
        # As MongoDB keeps it (milliseconds): a retry's answer (read back) gives the same time.
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        code = new_follow_up_code()
        dedupe = self.hasher.dedupe_keys(cmd, fingerprint(cmd), now, self.limits.dedupe_window)
        complaint = receive(
            cmd,
            self.new_tracking_id(),
            now,
            idempotency_scope=channels.idempotency_scope(
                cmd, self._post_key(cmd), self._reference_key(cmd)
            ),
            follow_up_hash=hash_follow_up_code(code),
            dedupe_keys=tuple(dedupe),
            client_id=client.client_id if client is not None else "",
        )
        legacy = _legacy_scopes(cmd)
        try:
            await self.limiter.hit(self._hits(cmd, client))
        except ResourceExhausted:
            # A retry of a report already stored gets its answer, over the limit too.
            earlier = await self.store.earlier(complaint, *legacy)
            if earlier is None:
                raise
            stored = earlier
        else:
            stored = await self.store.add(complaint, *legacy)
        if stored.duplicate and stored.fingerprint != complaint.fingerprint:
            raise ValidationError([Violation(_reused_field(cmd), _REUSED)])
        if stored.duplicate and not (
            stored.same_request and stored.client_id == complaint.client_id
        ):
            # The same text from the same contact: the contact proves nothing on channels
            # where it is typed (a web form). Or the same scope from another channel client:
            # a post id or an institution reference may be public or guessable. Either way
            # this answer names the report and carries no code; the reporter has the first
            # answer's code, or their verified contact.
            code = ""
        elif stored.duplicate:  # a retry of the same request, by the client that sent it
            await self.store.add_follow_up_code(stored.tracking_id, hash_follow_up_code(code))
        ack = acknowledgement(complaint.channel, stored.tracking_id, stored.duplicate)
        return Submitted(stored, code, ack)

    def _hits(self, cmd: SubmitComplaint, client: ChannelClient | None) -> list[Hit]:
        hits = [Hit(self.limits.per_contact, k) for k in self.hasher.contact_keys(cmd.reporter)]
        if client is not None:
            hits.append(Hit(self.limits.per_client, client.client_id))
        return hits

    def _post_key(self, cmd: SubmitComplaint) -> str:
        post = cmd.social
        if post is None:
            return ""
        return self.hasher.digest("post", f"{post.platform.lower()}:{post.post_id.strip()}")

    def _reference_key(self, cmd: SubmitComplaint) -> str:
        origin = cmd.institution
        if origin is None:
            return ""
        return self.hasher.reference_key(origin.source_system, origin.reference)

    async def get(self, raw_tracking_id: str) -> dict[str, Any]:
        tracking_id = _parse(raw_tracking_id)
        doc = await self.store.get(tracking_id)
        if doc is None:
            raise NotFound(f"tracking_id: no report {tracking_id}")
        return doc

    async def raise_privacy(self, raw_tracking_id: str, code: str, wanted: Privacy | None) -> bool:
        """Raise the report's privacy; True when it changed, False when it already was.

        The follow-up code goes through the reporter API's wrong-code limit: the right code
        is always let in; a wrong one (or an unknown tracking id: the same answer, the same
        work) is refused with RESOURCE_EXHAUSTED over the limit, else counted."""
        violations = []
        if wanted is None:
            violations.append(Violation("privacy", f"must be one of {', '.join(Privacy)}"))
        if not code.strip() or len(code) > 64:
            violations.append(Violation("follow_up_code", "must be 1-64 characters"))
        tracking_id = _parse(raw_tracking_id, violations)
        assert wanted is not None
        guard = self.guard
        blocked, doc = await asyncio.gather(
            guard.retry_after(tracking_id) if guard is not None else _none(),
            self.store.get(tracking_id),
        )
        for _attempt in range(3):
            if doc is None or not verify_follow_up_code(doc.get(FIELD, []), code):
                await refuse_wrong_code(guard, tracking_id, blocked, NO_MATCH)
            current = Privacy(doc["privacy"])
            if not check_raise(current, wanted):
                return False
            if await self.store.raise_privacy(tracking_id, current, wanted, self.clock.now()):
                return True
            doc = await self.store.get(tracking_id)  # changed meanwhile: decide again
        raise PermissionDenied(NO_MATCH)  # pragma: no cover - the report vanished meanwhile


async def _none() -> None:
    return None


def _legacy_scopes(cmd: SubmitComplaint) -> tuple[str, ...]:
    """Where an intake before 2026-11-23 stored the same request: an institution system's
    reference in plain text. During a rolling upgrade an old pod may still store that form
    (the backfill `hash_plain_references`, run in the background after an intake's next
    start, hashes it), and a retry reaching a new pod must find it. Looked up, never
    stored."""
    origin = cmd.institution
    if cmd.channel is not Channel.INSTITUTION_SYSTEM or origin is None:
        return ()
    return (f"{channels.PLAIN_REFERENCE_SCOPE}{origin.source_system}:{origin.reference}",)


_REUSED = "was already used for a different report on this channel"


def _reused_field(cmd: SubmitComplaint) -> str:
    if cmd.channel is Channel.INSTITUTION_SYSTEM:
        return "institution_reference.reference"
    if cmd.channel is Channel.SOCIAL_MEDIA and not cmd.idempotency_key:
        return "social_media.post_id"
    return "idempotency_key"


def _parse(raw: str, violations: list[Violation] | None = None) -> str:
    violations = violations or []
    try:
        tracking_id = parse_tracking_id(raw)
    except MalformedTrackingId as exc:
        violations.append(Violation("tracking_id", str(exc)))
        tracking_id = ""
    require(violations)
    return tracking_id

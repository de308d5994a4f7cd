"""The reporter's use cases: public view, own report, add information, confirm or reject
the follow-up, public listing. Written against ports so they run over fakes in unit tests.

A reporter proves ownership with the tracking id and a credential: the follow-up code, or
an access token got by verifying their contact (access_codes.py). A wrong credential and an
unknown tracking id get the same PERMISSION_DENIED, so the answer never tells whether a
report exists; wrong credentials are counted per tracking id (GuessGuard) and, over the
limit, answered RESOURCE_EXHAUSTED. The reporter's action is stored together with its
ReporterAction event (outbox) in one conditional write: only if the case is still in the
state the action was checked against, so two racing actions cannot both pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from services.common.clock import Clock
from services.common.errors import (
    FailedPrecondition,
    NotFound,
    ValidationError,
    Violation,
    require,
)
from services.common.ids import MalformedTrackingId, parse_tracking_id
from services.common.status import REASON_MAX, TEXT_MAX
from services.intake.access_codes import (
    NO_TOKEN_MATCH,
    TOKEN_PREFIX,
    AccessTokenStore,
    GuessGuard,
    is_access_token,
    refuse_wrong_code,
    token_hash,
    token_violations,
)
from services.intake.domain import Contact
from services.intake.listing import Cursor, PublicQuery, encode_token
from services.intake.reporter_rules import (
    COMMENT_MAX,
    EVENT_ACTION,
    CaseSnapshot,
    ReporterCommand,
    allowed_commands,
    check_allowed,
    masked,
    rating_violations,
    text_violations,
)

Doc = dict[str, Any]
NO_MATCH = "tracking_id, follow_up_code: no report matches this tracking id and follow-up code"


@dataclass(frozen=True)
class ReporterActionRecord:
    """What the reporter did; stored on the report and published as lapor.v1.ReporterAction."""

    event_id: str
    tracking_id: str
    action: str  # "info_provided", "confirmed", "rejected"
    text: str
    rating: int
    at: datetime


class ReportRepository(Protocol):
    async def get(self, tracking_id: str) -> Doc | None:
        """The whole stored report (sealed identity and follow-up hash included)."""
        ...

    async def record_action(
        self, expected: CaseSnapshot, record: ReporterActionRecord, counts_as_rejection: bool
    ) -> bool:
        """Store `record` and its event in one write, only if the report still matches
        `expected` (state, case_seq, no reporter action at this case_seq, rejections).
        False when it no longer does."""
        ...

    async def list_public(self, query: PublicQuery) -> list[Doc]:
        """Public reports matching `query`, newest first, after `query.after`, at most
        `query.page_size + 1` (one more tells whether another page exists)."""
        ...


class FollowUpVerifier(Protocol):
    def __call__(self, report: Doc | None, code: str) -> bool:
        """True when `code` is the follow-up code of `report`; False for None (do the same
        work, so an unknown id costs the same time as a wrong code)."""
        ...


@dataclass(frozen=True)
class MyReportData:
    report: Doc
    contact: Contact  # masked
    allowed: list[str]


@dataclass(frozen=True)
class PublicPage:
    reports: list[Doc]
    next_page_token: str


def snapshot(doc: Doc) -> CaseSnapshot:
    return CaseSnapshot(
        state=str(doc.get("state") or ""),
        case_seq=int(doc.get("case_seq") or 0),
        reporter_seq=int(doc.get("reporter_seq", -1)),
        rejections=int(doc.get("rejections") or 0),
    )


def tracking_id_violations(raw: str) -> tuple[str, list[Violation]]:
    try:
        return parse_tracking_id(raw), []
    except MalformedTrackingId as exc:
        return "", [Violation("tracking_id", str(exc))]


def code_violations(code: str) -> list[Violation]:
    if is_access_token(code):
        return token_violations(code)
    if not code.strip():
        return [Violation("follow_up_code", "must not be empty")]
    if len(code) > 64:
        return [Violation("follow_up_code", "must be at most 64 characters")]
    return []


def credential(follow_up_code: str, access_token: str) -> str:
    """The one credential of an own-report request, as the use cases take it: the follow-up
    code, or the access token (recognised by its prefix). Not both."""
    if access_token.strip() and follow_up_code.strip():
        raise ValidationError(
            [Violation("access_token", "give either follow_up_code or access_token, not both")]
        )
    if access_token.strip():
        return access_token.strip() if is_access_token(access_token) else _MALFORMED_TOKEN
    return follow_up_code


_MALFORMED_TOKEN = TOKEN_PREFIX + "?"  # fails token_violations, naming access_token


async def _none() -> None:
    return None


async def _false() -> bool:
    return False


@dataclass
class ReporterHandlers:
    reports: ReportRepository
    verify: FollowUpVerifier
    open_contact: Callable[[Doc], Contact | None]
    clock: Clock
    new_event_id: Callable[[], str]
    max_reopens: int = 2
    guard: GuessGuard | None = None  # None: wrong codes are not counted
    tokens: AccessTokenStore | None = None  # None: access tokens are not accepted

    async def public_view(self, raw_tracking_id: str) -> Doc:
        tracking_id, v = tracking_id_violations(raw_tracking_id)
        require(v)
        doc = await self.reports.get(tracking_id)
        if doc is None:
            raise NotFound(f"tracking_id: no report {tracking_id}")
        return doc

    async def authenticate(
        self, raw_tracking_id: str, code: str, more: list[Violation] | None = None
    ) -> Doc:
        """The report, when `code` is its follow-up code or a valid access token for it.
        Field rules first, so a malformed request never reaches the lookup; then the
        credential: the right one is always let in (it cannot be guessed: see GuessGuard);
        a wrong one, over the limit of wrong codes for this tracking id, is refused with
        RESOURCE_EXHAUSTED, else counted against the tracking id, known or not (the same
        reads, the same work, the same write) and refused."""
        tracking_id, v = tracking_id_violations(raw_tracking_id)
        require(v + code_violations(code) + (more or []))
        token = is_access_token(code)
        guard = self.guard
        blocked, doc, granted = await asyncio.gather(
            guard.retry_after(tracking_id) if guard is not None else _none(),
            self.reports.get(tracking_id),
            self._token_valid(tracking_id, code) if token else _false(),
        )
        ok = granted if token else self.verify(doc, code.strip())
        if ok and doc is not None:
            return doc
        await refuse_wrong_code(guard, tracking_id, blocked, NO_TOKEN_MATCH if token else NO_MATCH)

    async def _token_valid(self, tracking_id: str, token: str) -> bool:
        if self.tokens is None:
            return False
        return await self.tokens.valid(token_hash(token), tracking_id, self.clock.now())

    async def my_report(self, raw_tracking_id: str, code: str) -> MyReportData:
        doc = await self.authenticate(raw_tracking_id, code)
        return MyReportData(
            report=doc,
            contact=masked(self.open_contact(doc)),
            allowed=allowed_commands(snapshot(doc), self.max_reopens),
        )

    async def add_information(
        self, raw_tracking_id: str, code: str, text: str
    ) -> ReporterActionRecord:
        more = text_violations("text", text, TEXT_MAX, required=True)
        return await self._act(
            ReporterCommand.ADD_INFORMATION, raw_tracking_id, code, more, text.strip(), 0
        )

    async def confirm_resolution(
        self, raw_tracking_id: str, code: str, rating: int, comment: str
    ) -> ReporterActionRecord:
        more = rating_violations(rating) + text_violations(
            "comment", comment, COMMENT_MAX, required=False
        )
        return await self._act(
            ReporterCommand.CONFIRM_RESOLUTION, raw_tracking_id, code, more, comment.strip(), rating
        )

    async def reject_resolution(
        self, raw_tracking_id: str, code: str, reason: str
    ) -> ReporterActionRecord:
        more = text_violations("reason", reason, REASON_MAX, required=True)
        return await self._act(
            ReporterCommand.REJECT_RESOLUTION, raw_tracking_id, code, more, reason.strip(), 0
        )

    async def _act(
        self,
        cmd: ReporterCommand,
        raw_tracking_id: str,
        code: str,
        more: list[Violation],
        text: str,
        rating: int,
    ) -> ReporterActionRecord:
        doc = await self.authenticate(raw_tracking_id, code, more)
        case = snapshot(doc)
        check_allowed(cmd, case, self.max_reopens)
        record = ReporterActionRecord(
            event_id=self.new_event_id(),
            tracking_id=doc["_id"],
            action=EVENT_ACTION[cmd],
            text=text,
            rating=rating,
            at=self.clock.now(),
        )
        stored = await self.reports.record_action(
            case, record, counts_as_rejection=cmd is ReporterCommand.REJECT_RESOLUTION
        )
        if not stored:
            # The case moved between the read and the write: say why, from fresh state.
            fresh = await self.reports.get(doc["_id"])
            if fresh is not None:
                check_allowed(cmd, snapshot(fresh), self.max_reopens)
            raise FailedPrecondition(
                f"state: the report changed while {cmd.value} was being stored; look at it "
                "again and retry"
            )
        return record

    async def list_public(self, query: PublicQuery) -> PublicPage:
        docs = await self.reports.list_public(query)
        page, more = docs[: query.page_size], len(docs) > query.page_size
        token = ""
        if more and page:
            last = page[-1]
            token = encode_token(Cursor(last["received_at"], last["_id"]), query)
        return PublicPage(page, token)

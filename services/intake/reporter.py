"""The reporter's use cases: public view, own report, add information, confirm or reject
the follow-up, public listing. Written against ports so they run over fakes in unit tests.

A reporter proves ownership with the tracking id and the follow-up code. A wrong code and
an unknown tracking id get the same PERMISSION_DENIED, so the answer never tells whether a
report exists. The reporter's action is stored together with its ReporterAction event
(outbox) in one conditional write: only if the case is still in the state the action was
checked against, so two racing actions cannot both pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from services.common.clock import Clock
from services.common.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Violation,
    require,
)
from services.common.ids import MalformedTrackingId, parse_tracking_id
from services.intake.domain import Contact
from services.intake.listing import Cursor, PublicQuery, encode_token
from services.intake.reporter_rules import (
    COMMENT_MAX,
    EVENT_ACTION,
    INFO_MAX,
    REASON_MAX,
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
    if not code.strip():
        return [Violation("follow_up_code", "must not be empty")]
    if len(code) > 64:
        return [Violation("follow_up_code", "must be at most 64 characters")]
    return []


@dataclass
class ReporterHandlers:
    reports: ReportRepository
    verify: FollowUpVerifier
    open_contact: Callable[[Doc], Contact | None]
    clock: Clock
    new_event_id: Callable[[], str]
    max_reopens: int = 2

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
        """The report, when the code is its follow-up code. Field rules first, so a
        malformed request never reaches the lookup."""
        tracking_id, v = tracking_id_violations(raw_tracking_id)
        require(v + code_violations(code) + (more or []))
        doc = await self.reports.get(tracking_id)
        if not self.verify(doc, code.strip()) or doc is None:
            raise PermissionDenied(NO_MATCH)
        return doc

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
        more = text_violations("text", text, INFO_MAX, required=True)
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

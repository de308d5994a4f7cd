"""Officers read the reporter's evidence: list a report's files, download one.

Who may: the rule of the officers' API (services/common/scope.py): officers and
institution admins see the evidence of reports held by their institution or a unit below
it, national admins of every report; a report held elsewhere answers NOT_FOUND exactly as an
unknown tracking id does. The holder is the tracking view's ``institution.id`` (kept
current from routing's events), whatever the report's state: an archived or closed
report's evidence stays readable to the institution that last held it.

What they get: the files and their facts (a neutral name, never the reporter's file name:
officer_evidence_names.py; sniffed type, size, SHA-256, upload time), never the reporter's
name or contact. Every download is recorded first (officer's subject,
institution and role, time, report, file): no trace, no file. The bytes come from the store
piece by piece and leave in messages of at most ``MAX_PIECE`` bytes; the digest is checked
on the way and a file that no longer matches it ends the download with an error.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.common.auth import Principal
from services.common.clock import Clock
from services.common.errors import NotFound, Violation, require
from services.common.ids import MalformedTrackingId, parse_tracking_id
from services.common.scope import InstitutionTree, require_visible

log = logging.getLogger(__name__)

MAX_PIECE = 256 * 1024  # bytes of the file per DownloadEvidence message
_EVIDENCE_ID = re.compile(r"[0-9a-f]{24}")  # what the evidence store hands out


@dataclass(frozen=True)
class EvidenceItem:
    evidence_id: str
    file_name: str
    content_type: str
    size_bytes: int
    sha256: str
    uploaded_at: datetime


@dataclass(frozen=True)
class ReportEvidence:
    tracking_id: str
    holder_id: str  # the institution holding the report ("" before routing)
    items: tuple[EvidenceItem, ...]
    holder_ancestors: tuple[str, ...] = ()  # as routing's last event carried them

    @property
    def total_bytes(self) -> int:
        return sum(i.size_bytes for i in self.items)


@dataclass(frozen=True)
class DownloadRecord:
    at: datetime
    subject: str  # the officer (the token's `sub`)
    institution: str
    role: str
    tracking_id: str
    evidence_id: str
    size_bytes: int
    sha256: str


class EvidenceCatalog(Protocol):
    async def report(self, tracking_id: str) -> ReportEvidence | None:
        """The report's holder and listed files; None for an unknown tracking id."""
        ...

    async def open(self, tracking_id: str, evidence_id: str) -> AsyncIterator[bytes] | None:
        """The stored bytes of a file of this report, in the store's pieces (read one by
        one, never the whole file at once); None when no such file is stored."""
        ...


class DownloadLog(Protocol):
    async def record(self, entry: DownloadRecord) -> None: ...


class EvidenceCorrupted(RuntimeError):
    """The stored bytes no longer match the size or digest taken at upload."""


def parse_ids(tracking_id: str, evidence_id: str | None = None) -> str:
    """The canonical tracking id; INVALID_ARGUMENT naming each bad field."""
    violations: list[Violation] = []
    canonical = ""
    if not tracking_id.strip():
        violations.append(Violation("tracking_id", "must not be empty"))
    else:
        try:
            canonical = parse_tracking_id(tracking_id)
        except MalformedTrackingId as exc:
            violations.append(Violation("tracking_id", str(exc)))
    if evidence_id is not None:
        if not evidence_id.strip():
            violations.append(Violation("evidence_id", "must not be empty"))
        elif not _EVIDENCE_ID.fullmatch(evidence_id.strip()):
            violations.append(
                Violation("evidence_id", "must be an evidence_id as ListEvidence gives it")
            )
    require(violations)
    return canonical


@dataclass
class OfficerEvidence:
    catalog: EvidenceCatalog
    downloads: DownloadLog
    tree: InstitutionTree
    clock: Clock

    async def _visible_report(self, who: Principal, tracking_id: str) -> ReportEvidence:
        report = await self.catalog.report(tracking_id)
        if report is None:
            raise NotFound(f"tracking_id: no report {tracking_id!r}")
        require_visible(who, tracking_id, report.holder_id, self.tree, report.holder_ancestors)
        return report

    async def list(self, who: Principal, tracking_id: str) -> ReportEvidence:
        return await self._visible_report(who, parse_ids(tracking_id))

    async def download(
        self, who: Principal, tracking_id: str, evidence_id: str
    ) -> tuple[EvidenceItem, AsyncIterator[bytes]]:
        """The file's facts and its bytes; the download is recorded before any byte."""
        canonical = parse_ids(tracking_id, evidence_id)
        evidence_id = evidence_id.strip()
        report = await self._visible_report(who, canonical)
        item = next((i for i in report.items if i.evidence_id == evidence_id), None)
        content = None if item is None else await self.catalog.open(canonical, evidence_id)
        if item is None or content is None:
            raise NotFound(f"evidence_id: report {canonical} has no evidence {evidence_id!r}")
        await self.downloads.record(
            DownloadRecord(
                at=self.clock.now(),
                subject=who.subject,
                institution=who.institution,
                role=who.role,
                tracking_id=canonical,
                evidence_id=evidence_id,
                size_bytes=item.size_bytes,
                sha256=item.sha256,
            )
        )
        return item, _checked(item, content)


async def _checked(item: EvidenceItem, content: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``content`` in pieces of at most MAX_PIECE bytes, checked against size and digest."""
    digest, size = hashlib.sha256(), 0
    async for chunk in content:
        view = memoryview(chunk)
        while view:
            piece = chunk if len(chunk) <= MAX_PIECE else bytes(view[:MAX_PIECE])  # no copy
            view = view[len(piece) :]
            size += len(piece)
            if size > item.size_bytes:
                break
            digest.update(piece)
            yield piece
        if size > item.size_bytes:
            break
    if size != item.size_bytes or digest.hexdigest() != item.sha256:
        log.error(
            "stored evidence does not match its upload", extra={"evidence_id": item.evidence_id}
        )
        raise EvidenceCorrupted(f"evidence {item.evidence_id} does not match its SHA-256")

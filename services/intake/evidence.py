"""Evidence uploads: who may attach, what may be attached, how much.

The type is sniffed from the first bytes (`filetype`), never trusted from the name or the
declared type: both must agree with the content. Files are streamed into the store while a
SHA-256 digest and the size are computed: each piece is handed to the store as it arrives
(nothing here gathers the file), and the next piece is read only when the store took the
last one. Whatever fails on the way (a rule, the client hanging up, the server stopping)
deletes the partial file, so nothing is half-stored; what a crash leaves behind is found by
the orphan sweep (`evidence_sweep.py`). A call cancelled during the write that lists the
finished file, or whose listing write fails, deletes nothing: that write may still land after
any check, and a report must never list a deleted file, so the file is left listed or to the
sweep.

A report holds at most `max_report_bytes` of evidence and at most `max_files` files: the
listing is an array in the complaint document, and a document may not pass MongoDB's 16 MB,
after which no write to that complaint would succeed. Both are checked before anything is
stored and again, atomically, by the write that lists the file (its filter), so parallel
uploads cannot pass them; a file refused at listing is deleted. One process runs at most
`max_concurrent_uploads` uploads at a time; the next is refused at once (RESOURCE_EXHAUSTED
with a retry delay) before anything is read or stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import filetype  # type: ignore[import-untyped]

from services.common.clock import Clock
from services.common.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    ResourceExhausted,
    ValidationError,
    Violation,
    require,
)
from services.intake.reporter import ReporterHandlers, snapshot
from services.intake.reporter_rules import ReporterCommand, check_allowed

log = logging.getLogger(__name__)

MiB = 1024 * 1024
SNIFF_BYTES = 8192
FILE_NAME_MAX = 200
BUSY_RETRY_SECONDS = 2.0  # the retry delay told to an upload refused for the process's cap

# Allowed content types and the file-name extensions that may carry them.
ALLOWED: dict[str, tuple[str, ...]] = {
    "image/jpeg": ("jpg", "jpeg"),
    "image/png": ("png",),
    "image/webp": ("webp",),
    "image/heic": ("heic", "heif"),
    "application/pdf": ("pdf",),
    "video/mp4": ("mp4",),
    "video/3gpp": ("3gp",),
}
ALIASES = {"image/jpg": "image/jpeg", "image/heif": "image/heic", "video/3gp": "video/3gpp"}
VIDEO = frozenset({"video/mp4", "video/3gpp"})
KNOWN_EXTENSIONS = {ext for exts in ALLOWED.values() for ext in exts}


@dataclass(frozen=True)
class EvidenceLimits:
    max_file_bytes: int = 10 * MiB
    max_video_bytes: int = 25 * MiB
    max_report_bytes: int = 50 * MiB
    max_concurrent_uploads: int = 8  # per intake process
    max_files: int = 20  # per report: keeps the complaint document far below 16 MB
    # A stalled or crawling upload must not hold one of the process's upload slots (nor write
    # chunks after the orphan sweep gave its file up): the longest wait for the next message,
    # and the longest whole upload (at most half the orphan sweep's grace).
    idle_seconds: float = 60.0
    max_upload_seconds: float = 1800.0


@dataclass(frozen=True)
class EvidenceHeader:
    tracking_id: str
    follow_up_code: str
    file_name: str
    content_type: str


@dataclass(frozen=True)
class StoredEvidence:
    evidence_id: str
    file_name: str
    content_type: str
    size_bytes: int
    sha256: str
    uploaded_at: datetime
    report_bytes: int  # all evidence of the report, this file included


class EvidenceFile(Protocol):
    """A file being written to the evidence store."""

    async def write(self, data: bytes) -> None: ...
    async def close(self) -> str:
        """Finish the file; returns its id."""
        ...

    async def abort(self) -> None:
        """Delete everything written so far."""
        ...


# What `EvidenceStore.attach` returns when it does not list the file.
OVER_REPORT_BYTES = -1
REPORT_CLOSED = -2
OVER_REPORT_FILES = -3


class EvidenceStore(Protocol):
    async def create(self, tracking_id: str, file_name: str, content_type: str) -> EvidenceFile:
        """Start a file tagged with its tracking id (found by the orphan sweep until it is
        listed on the report)."""
        ...

    async def attach(
        self,
        tracking_id: str,
        item: StoredEvidence,
        max_report_bytes: int,
        max_files: int | None = None,
    ) -> int:
        """List the file on the report if the report's evidence stays within
        `max_report_bytes` and below `max_files` files (None: no count limit) and the report
        is still open, in one conditional write. Returns the new total of bytes, else
        OVER_REPORT_BYTES, OVER_REPORT_FILES or REPORT_CLOSED."""
        ...

    async def delete(self, evidence_id: str) -> None: ...


def normalise_type(declared: str) -> str:
    value = declared.strip().lower()
    return ALIASES.get(value, value)


def header_violations(h: EvidenceHeader) -> list[Violation]:
    v: list[Violation] = []
    name = h.file_name.strip()
    if not name:
        v.append(Violation("file_name", "must not be empty"))
    elif len(name) > FILE_NAME_MAX:
        v.append(Violation("file_name", f"must be at most {FILE_NAME_MAX} characters"))
    elif any(c in name for c in "/\\") or any(ord(c) < 32 for c in name):
        v.append(
            Violation("file_name", "must be a plain file name (no path, no control characters)")
        )
    if normalise_type(h.content_type) not in ALLOWED:
        v.append(Violation("content_type", f"must be one of {', '.join(ALLOWED)}"))
    return v


def sniff(head: bytes) -> str:
    # filetype looks for 3GP's brand at the wrong offset; an ISO media file has its
    # `ftyp` box at byte 4 and the major brand right after it.
    if head[4:8] == b"ftyp" and head[8:11] in (b"3gp", b"3g2"):
        return "video/3gpp"
    kind = filetype.guess(head)
    return str(kind.mime) if kind is not None else ""


def content_violations(head: bytes, declared: str, file_name: str) -> list[Violation]:
    """The content must be an allowed type, the one declared, and the name's extension (if
    it is one we know) must fit it."""
    if not head:
        return [Violation("content", "must not be empty")]
    sniffed = sniff(head)
    if sniffed not in ALLOWED:
        what = sniffed or "not a recognised file type"
        return [Violation("content", f"is {what}; allowed: {', '.join(ALLOWED)}")]
    if sniffed != normalise_type(declared):
        return [Violation("content", f"is {sniffed}, but content_type declares {declared}")]
    ext = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
    if ext in KNOWN_EXTENSIONS and ext not in ALLOWED[sniffed]:
        return [Violation("file_name", f"extension .{ext} does not fit the content ({sniffed})")]
    return []


def too_big(limit: int, what: str) -> ValidationError:
    return ValidationError([Violation("content", f"{what} must be at most {limit} bytes")])


def too_many_files(limit: int) -> ValidationError:
    """Refused like the report's byte limit (INVALID_ARGUMENT on `content`)."""
    return ValidationError(
        [Violation("content", f"all evidence of one report must be at most {limit} files")]
    )


async def _paced(
    chunks: AsyncIterator[bytes], idle_seconds: float, max_seconds: float
) -> AsyncIterator[bytes]:
    """`chunks`, refused with DEADLINE_EXCEEDED when the next one takes longer than
    `idle_seconds` or the whole upload longer than `max_seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_seconds
    iterator = chunks.__aiter__()
    while True:
        left = deadline - loop.time()
        wait = min(idle_seconds, left)
        try:
            if wait <= 0:
                raise TimeoutError
            async with asyncio.timeout(wait):  # in this task: a cancelled call stays cancelled
                chunk = await iterator.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise DeadlineExceeded(
                f"upload_evidence: no data for {idle_seconds:g} s"
                if wait >= idle_seconds
                else f"upload_evidence: an upload may take at most {max_seconds:g} s"
            ) from None
        yield chunk


@dataclass
class EvidenceHandlers:
    reporter: ReporterHandlers
    store: EvidenceStore
    clock: Clock
    limits: EvidenceLimits

    active: int = field(default=0, init=False)  # uploads running in this process

    async def upload(self, header: EvidenceHeader, chunks: AsyncIterator[bytes]) -> StoredEvidence:
        cap = self.limits.max_concurrent_uploads
        if self.active >= cap:
            raise ResourceExhausted(
                f"upload_evidence: this server takes at most {cap} uploads at a time; "
                f"retry in {BUSY_RETRY_SECONDS:g} s",
                BUSY_RETRY_SECONDS,
            )
        self.active += 1
        try:
            return await self._upload(header, chunks)
        finally:
            self.active -= 1

    async def _upload(self, header: EvidenceHeader, chunks: AsyncIterator[bytes]) -> StoredEvidence:
        chunks = _paced(chunks, self.limits.idle_seconds, self.limits.max_upload_seconds)
        doc = await self.reporter.authenticate(
            header.tracking_id, header.follow_up_code, header_violations(header)
        )
        check_allowed(ReporterCommand.UPLOAD_EVIDENCE, snapshot(doc), self.reporter.max_reopens)
        already = int(doc.get("evidence_bytes") or 0)
        room = self.limits.max_report_bytes - already
        if room <= 0:
            raise too_big(self.limits.max_report_bytes, "all evidence of one report")
        if len(doc.get("evidence") or []) >= self.limits.max_files:
            raise too_many_files(self.limits.max_files)
        head = b""
        async for chunk in chunks:
            head += chunk
            if len(head) >= SNIFF_BYTES:
                break
        content_type = normalise_type(header.content_type)
        file_name = header.file_name.strip()
        require(content_violations(head, header.content_type, file_name))
        file_limit = (
            self.limits.max_video_bytes if content_type in VIDEO else self.limits.max_file_bytes
        )
        limit, what = min(
            (file_limit, f"one {content_type} file"),
            (room, f"all evidence of one report ({already} bytes stored)"),
        )
        stored = await self.store.create(doc["_id"], file_name, content_type)
        try:
            digest, size = hashlib.sha256(), 0
            async for chunk in _prepend(head, chunks):
                size += len(chunk)
                if size > limit:
                    raise too_big(
                        limit if limit == file_limit else self.limits.max_report_bytes, what
                    )
                digest.update(chunk)
                await stored.write(chunk)
            evidence_id = await stored.close()
        except BaseException:
            try:
                await stored.abort()
            except Exception:  # noqa: BLE001 - the original error matters; the sweep cleans up
                log.warning("could not delete a partial evidence file; the orphan sweep will")
            raise
        item = StoredEvidence(
            evidence_id, file_name, content_type, size, digest.hexdigest(), self.clock.now(), 0
        )
        try:
            total = await self.store.attach(
                doc["_id"], item, self.limits.max_report_bytes, self.limits.max_files
            )
        except BaseException:
            # The call ended (the client hung up, the server is stopping) or the listing write
            # failed (a lost connection, a lost reply) while it was under way: it may still
            # reach the database after anything read now, so the file stays, listed or left
            # to the orphan sweep (which deletes it only if its report does not list it after
            # the grace period). Deleting it here could leave a report listing a deleted file.
            log.warning("an evidence listing did not complete; the orphan sweep settles the file")
            raise
        if total < 0:
            try:
                await self.store.delete(evidence_id)
            except Exception:  # noqa: BLE001 - the refusal matters; the sweep deletes the file
                log.warning("could not delete a refused evidence file; the orphan sweep will")
            if total == REPORT_CLOSED:
                raise FailedPrecondition(
                    "state: upload_evidence is not allowed: the report was closed meanwhile"
                )
            if total == OVER_REPORT_FILES:
                raise too_many_files(self.limits.max_files)
            raise too_big(self.limits.max_report_bytes, "all evidence of one report")
        return StoredEvidence(**{**item.__dict__, "report_bytes": total})


async def _prepend(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if head:
        yield head
    async for chunk in rest:
        yield chunk

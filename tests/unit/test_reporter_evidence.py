"""Evidence rules over a fake store: sniffed types, declared-type and name mismatches, size
limits (bytes and files per report), nothing half-stored when an upload fails, pieces handed
on as they arrive, and the per-process cap on concurrent uploads."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.common.clock import ManualClock
from services.common.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    PermissionDenied,
    ResourceExhausted,
    ValidationError,
)
from services.common.ids import new_tracking_id
from services.common.settings import Env
from services.intake.evidence import (
    OVER_REPORT_BYTES,
    OVER_REPORT_FILES,
    EvidenceHandlers,
    EvidenceHeader,
    EvidenceLimits,
    StoredEvidence,
    sniff,
)
from services.intake.reporter import ReporterHandlers
from services.intake.reporter_wiring import ReporterSettings
from tests.unit.test_reporter_usecases import CODE, FakeReports, verify

JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000") + b"\x00" * 300 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 200
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 200
GP3 = b"\x00\x00\x00\x14ftyp3gp4\x00\x00\x02\x003gp4isom" + b"\x00" * 200
EXE = b"MZ\x90\x00" + b"\x00" * 200


class FakeFile:
    def __init__(self, store: FakeStore, name: str) -> None:
        self.store, self.name, self.data, self.state = store, name, b"", "open"
        self.writes: list[int] = []

    async def write(self, data: bytes) -> None:
        self.data += data
        self.writes.append(len(data))
        if self.store.fail_after is not None and len(self.data) > self.store.fail_after:
            raise ConnectionError("database went away")

    async def close(self) -> str:
        self.state = "closed"
        self.store.files[self.name] = self.data
        return self.name

    async def abort(self) -> None:
        self.state = "aborted"
        if self.store.fail_abort:
            raise ConnectionError("database went away during the clean-up")


class FakeStore:
    def __init__(self, reports: FakeReports) -> None:
        self.reports = reports
        self.files: dict[str, bytes] = {}
        self.opened: list[FakeFile] = []
        self.fail_after: int | None = None
        self.fail_abort = False
        self.attach_error: tuple[Exception, bool] | None = None  # (error, listed before it)
        self.before_attach: list[Any] = []  # coroutine functions run first (a race)

    async def create(self, tracking_id: str, file_name: str, content_type: str) -> FakeFile:
        f = FakeFile(self, f"f{len(self.opened)}")
        self.opened.append(f)
        return f

    async def attach(
        self,
        tracking_id: str,
        item: StoredEvidence,
        max_report_bytes: int,
        max_files: int | None = None,
    ) -> int:
        for step in self.before_attach:
            await step()
        doc = self.reports.docs[tracking_id]
        total = doc.get("evidence_bytes", 0) + item.size_bytes
        if max_files is not None and len(doc.get("evidence", [])) >= max_files:
            return OVER_REPORT_FILES
        if total > max_report_bytes:
            return OVER_REPORT_BYTES
        if self.attach_error is not None and not self.attach_error[1]:
            raise self.attach_error[0]
        doc["evidence_bytes"] = total
        doc.setdefault("evidence", []).append(item)
        if self.attach_error is not None:
            raise self.attach_error[0]  # listed, but the reply was lost
        return int(total)

    async def delete(self, evidence_id: str) -> None:
        self.files.pop(evidence_id, None)


@pytest.fixture
def setup() -> tuple[EvidenceHandlers, FakeReports, FakeStore]:
    reports = FakeReports()
    store = FakeStore(reports)
    reporter = ReporterHandlers(reports, verify, lambda d: None, ManualClock(), lambda: "e", 2)
    limits = EvidenceLimits(max_file_bytes=1000, max_video_bytes=2000, max_report_bytes=2500)
    return EvidenceHandlers(reporter, store, ManualClock(), limits), reports, store


async def chunks(data: bytes, size: int = 100) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def header(tid: str, name: str, ctype: str, code: str = CODE) -> EvidenceHeader:
    return EvidenceHeader(tid, code, name, ctype)


def violation(err: Any) -> tuple[str, str]:
    v = err.value.violations[0]
    return v.field, v.rule


def test_sniffing() -> None:
    assert [sniff(b) for b in (JPEG, PNG, PDF, MP4, GP3)] == [
        "image/jpeg",
        "image/png",
        "application/pdf",
        "video/mp4",
        "video/3gpp",
    ]
    assert sniff(EXE) == "application/x-msdownload"
    assert sniff(b"hello") == ""


async def test_accepted_file_is_stored_with_its_digest(setup: Any) -> None:
    h, reports, store = setup
    tid = reports.add()
    stored = await h.upload(header(tid, "jalan.jpg", "image/jpg"), chunks(JPEG))
    assert stored.content_type == "image/jpeg"
    assert stored.sha256 == hashlib.sha256(JPEG).hexdigest()
    assert stored.size_bytes == len(JPEG) == stored.report_bytes
    assert store.files[stored.evidence_id] == JPEG


@pytest.mark.parametrize(
    ("data", "name", "declared", "field", "rule"),
    [
        (EXE, "foto.jpg", "image/jpeg", "content", "is application/x-msdownload"),
        (b"just text", "foto.jpg", "image/jpeg", "content", "not a recognised file type"),
        (PNG, "foto.jpg", "image/jpeg", "content", "is image/png, but content_type declares"),
        (JPEG, "foto.pdf", "image/jpeg", "file_name", "extension .pdf does not fit"),
        (b"", "foto.jpg", "image/jpeg", "content", "must not be empty"),
        (JPEG, "foto.exe", "application/x-msdownload", "content_type", "must be one of"),
        (JPEG, "../etc/passwd", "image/jpeg", "file_name", "plain file name"),
    ],
)
async def test_refused_content(
    setup: Any, data: bytes, name: str, declared: str, field: str, rule: str
) -> None:
    h, reports, store = setup
    tid = reports.add()
    with pytest.raises(ValidationError) as err:
        await h.upload(header(tid, name, declared), chunks(data))
    got_field, got_rule = violation(err)
    assert got_field == field and rule in got_rule
    assert store.opened == []  # refused before anything was written


async def test_oversize_file_is_refused_and_its_partial_deleted(setup: Any) -> None:
    h, reports, store = setup
    tid = reports.add()
    big = PDF + b"%" * 2000
    with pytest.raises(ValidationError) as err:
        await h.upload(header(tid, "surat.pdf", "application/pdf"), chunks(big))
    assert violation(err) == ("content", "one application/pdf file must be at most 1000 bytes")
    assert [f.state for f in store.opened] == ["aborted"] and store.files == {}
    video = MP4 + b"\x00" * 1500  # over the file limit, within the video limit
    assert (await h.upload(header(tid, "v.mp4", "video/mp4"), chunks(video))).size_bytes == len(
        video
    )


async def test_report_limit_counts_what_is_already_stored(setup: Any) -> None:
    h, reports, store = setup
    tid = reports.add(evidence_bytes=2000)
    with pytest.raises(ValidationError) as err:
        await h.upload(header(tid, "b.pdf", "application/pdf"), chunks(PDF + b"%" * 600))
    assert "all evidence of one report" in violation(err)[1]
    assert store.files == {}
    reports.docs[tid]["evidence_bytes"] = 2500
    with pytest.raises(ValidationError):
        await h.upload(header(tid, "c.pdf", "application/pdf"), chunks(PDF))
    assert len(store.opened) == 1


async def test_a_failing_write_leaves_nothing(setup: Any) -> None:
    h, reports, store = setup
    tid = reports.add()
    store.fail_after = 150
    with pytest.raises(ConnectionError):
        await h.upload(header(tid, "a.jpg", "image/jpeg"), chunks(JPEG))
    assert [f.state for f in store.opened] == ["aborted"]
    assert "evidence" not in reports.docs[tid]


async def test_owner_only_and_not_after_closing(setup: Any) -> None:
    h, reports, _ = setup
    tid = reports.add(state="closed")
    with pytest.raises(PermissionDenied):
        await h.upload(header(tid, "a.jpg", "image/jpeg", code="WRONG"), chunks(JPEG))
    with pytest.raises(PermissionDenied):
        await h.upload(header(new_tracking_id(), "a.jpg", "image/jpeg"), chunks(JPEG))
    with pytest.raises(FailedPrecondition, match="upload_evidence"):
        await h.upload(header(tid, "a.jpg", "image/jpeg"), chunks(JPEG))


async def test_bytes_read_for_sniffing_are_stored_once_and_in_order(setup: Any) -> None:
    h, reports, store = setup
    h.limits = EvidenceLimits(max_file_bytes=50_000, max_report_bytes=50_000)
    tid = reports.add()
    data = PDF + bytes(range(256)) * 80  # the sniffed head spans several chunks
    stored = await h.upload(header(tid, "surat.pdf", "application/pdf"), chunks(data, 3000))
    assert store.files[stored.evidence_id] == data
    assert stored.sha256 == hashlib.sha256(data).hexdigest()


async def test_pieces_are_handed_to_the_store_as_they_arrive(setup: Any) -> None:
    """Nothing gathers the file: each piece reaches the store before the next one is read,
    and no write is larger than one piece (the sniffed head aside, itself one piece here)."""
    h, reports, store = setup
    h.limits = EvidenceLimits(max_file_bytes=10 * 1024 * 1024, max_report_bytes=10 * 1024 * 1024)
    tid = reports.add()
    piece = 64 * 1024
    data = PDF + b"%" * (40 * piece)
    behind: list[int] = []

    async def watched() -> AsyncIterator[bytes]:
        for i in range(0, len(data), piece):
            if i >= 2 * piece:  # the sniffed head is one piece: the store has all before i
                behind.append(i - len(store.opened[0].data))
            yield data[i : i + piece]

    stored = await h.upload(header(tid, "surat.pdf", "application/pdf"), watched())
    assert store.files[stored.evidence_id] == data
    assert behind and set(behind) == {0}
    assert max(store.opened[0].writes) == piece


async def test_uploads_beyond_the_cap_are_refused_with_a_retry_delay(setup: Any) -> None:
    h, reports, store = setup
    h.limits = EvidenceLimits(max_file_bytes=1000, max_concurrent_uploads=2)
    tid = reports.add()
    release = asyncio.Event()
    started = [asyncio.Event(), asyncio.Event()]

    async def held(i: int) -> AsyncIterator[bytes]:
        yield JPEG[:100]
        started[i].set()
        await release.wait()
        yield JPEG[100:]

    running = [
        asyncio.create_task(h.upload(header(tid, f"{i}.jpg", "image/jpeg"), held(i)))
        for i in range(2)
    ]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 5)
    with pytest.raises(ResourceExhausted) as err:
        await h.upload(header(tid, "c.jpg", "image/jpeg"), chunks(JPEG))
    assert str(err.value).startswith("upload_evidence: ") and "at most 2 uploads" in str(err)
    assert err.value.retry_after_seconds > 0
    assert store.opened == []  # the refused upload read and stored nothing
    release.set()
    assert len(await asyncio.gather(*running)) == 2
    assert h.active == 0
    assert (await h.upload(header(tid, "c.jpg", "image/jpeg"), chunks(JPEG))).size_bytes


async def test_failed_uploads_free_their_slot(setup: Any) -> None:
    h, reports, store = setup
    h.limits = EvidenceLimits(max_file_bytes=1000, max_concurrent_uploads=1)
    tid = reports.add()
    for _ in range(3):
        with pytest.raises(ValidationError):
            await h.upload(header(tid, "a.jpg", "image/jpeg"), chunks(EXE))
    with pytest.raises(PermissionDenied):
        await h.upload(header(tid, "a.jpg", "image/jpeg", code="WRONG"), chunks(JPEG))
    assert h.active == 0
    assert (await h.upload(header(tid, "a.jpg", "image/jpeg"), chunks(JPEG))).size_bytes


async def test_a_failing_clean_up_does_not_hide_the_error(setup: Any) -> None:
    h, reports, store = setup
    tid = reports.add()
    store.fail_after, store.fail_abort = 150, True
    with pytest.raises(ConnectionError, match="database went away$"):
        await h.upload(header(tid, "a.jpg", "image/jpeg"), chunks(JPEG))
    assert [f.state for f in store.opened] == ["aborted"]


@pytest.mark.parametrize("listed_before_error", [False, True])
async def test_a_failing_listing_leaves_the_file_to_the_orphan_sweep(
    setup: Any, listed_before_error: bool
) -> None:
    """The listing write's outcome is unknown (a lost reply, a lost connection: the write
    may still land after any read): the file is not deleted here, whatever a read says now;
    the orphan sweep deletes it later only if the report does not list it."""
    h, reports, store = setup
    tid = reports.add()
    store.attach_error = (ConnectionError("reply lost"), listed_before_error)
    with pytest.raises(ConnectionError):
        await h.upload(header(tid, "a.jpg", "image/jpeg"), chunks(JPEG))
    assert "f0" in store.files


async def test_file_limit_refuses_before_anything_is_stored(setup: Any) -> None:
    h, reports, store = setup
    h.limits = EvidenceLimits(max_file_bytes=1000, max_report_bytes=100_000, max_files=3)
    tid = reports.add()
    for i in range(3):
        await h.upload(header(tid, f"{i}.jpg", "image/jpeg"), chunks(JPEG))
    with pytest.raises(ValidationError) as err:
        await h.upload(header(tid, "d.jpg", "image/jpeg"), chunks(JPEG))
    assert violation(err) == ("content", "all evidence of one report must be at most 3 files")
    assert len(store.opened) == 3  # refused before a file was started
    assert len(reports.docs[tid]["evidence"]) == 3 and len(store.files) == 3


async def test_file_limit_reached_meanwhile_deletes_the_stored_file(setup: Any) -> None:
    """Another upload took the last place between the check and the listing: the listing
    write refuses, the stored file is deleted, the error is the same as the early one."""
    h, reports, store = setup
    h.limits = EvidenceLimits(max_file_bytes=1000, max_report_bytes=100_000, max_files=2)
    tid = reports.add()
    await h.upload(header(tid, "a.jpg", "image/jpeg"), chunks(JPEG))

    async def someone_else_lists_one() -> None:
        store.before_attach.clear()
        reports.docs[tid]["evidence"].append("listed by another upload")

    store.before_attach.append(someone_else_lists_one)
    with pytest.raises(ValidationError) as err:
        await h.upload(header(tid, "b.jpg", "image/jpeg"), chunks(JPEG))
    assert violation(err) == ("content", "all evidence of one report must be at most 2 files")
    assert [f.state for f in store.opened] == ["closed", "closed"]
    assert list(store.files) == ["f0"]  # the refused one's file deleted


def test_the_default_file_limit_keeps_the_document_small() -> None:
    assert EvidenceLimits().max_files == 20


async def stalling(data: bytes, after: int, pause: float) -> AsyncIterator[bytes]:
    """`data` in pieces of 100 bytes, waiting `pause` seconds after the first `after` bytes."""
    for i in range(0, len(data), 100):
        if i == after:
            await asyncio.sleep(pause)
        yield data[i : i + 100]


async def test_a_stalled_upload_is_cut_off_its_partial_deleted_and_its_slot_freed(
    setup: Any,
) -> None:
    h, reports, store = setup
    h.limits = EvidenceLimits(
        max_file_bytes=50_000, max_report_bytes=50_000, max_concurrent_uploads=1, idle_seconds=0.05
    )
    tid = reports.add()
    with pytest.raises(DeadlineExceeded, match="no data for 0.05 s"):  # while sniffing
        await h.upload(header(tid, "a.jpg", "image/jpeg"), stalling(JPEG, 200, 5.0))
    assert store.opened == [] and h.active == 0
    big = JPEG + b"\x00" * 20_000
    with pytest.raises(DeadlineExceeded, match="no data for 0.05 s"):  # while storing
        await h.upload(header(tid, "a.jpg", "image/jpeg"), stalling(big, 12_000, 5.0))
    assert [f.state for f in store.opened] == ["aborted"] and store.files == {}
    assert h.active == 0
    assert (await h.upload(header(tid, "a.jpg", "image/jpeg"), chunks(JPEG))).size_bytes


async def test_a_crawling_upload_is_cut_off_at_its_longest_time(setup: Any) -> None:
    """Each piece within the idle time, the whole over the longest upload time."""

    async def crawling() -> AsyncIterator[bytes]:
        for i in range(0, len(JPEG), 100):
            await asyncio.sleep(0.02)
            yield JPEG[i : i + 100]

    h, reports, store = setup
    h.limits = EvidenceLimits(max_file_bytes=1000, idle_seconds=1.0, max_upload_seconds=0.05)
    tid = reports.add()
    with pytest.raises(DeadlineExceeded, match="at most 0.05 s"):
        await h.upload(header(tid, "a.jpg", "image/jpeg"), crawling())
    assert store.files == {} and h.active == 0


def test_the_longest_upload_stays_below_half_the_orphan_grace() -> None:
    settings = ReporterSettings.from_env(Env({"LAPOR_EVIDENCE_ORPHAN_GRACE_SECONDS": "600"}))
    assert settings.evidence.max_upload_seconds == 300
    default = ReporterSettings.from_env(Env({}))
    assert (default.evidence.max_upload_seconds, default.evidence.idle_seconds) == (1800, 60)

"""Evidence rules over a fake store: sniffed types, declared-type and name mismatches, size
limits, and nothing half-stored when an upload fails."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.common.clock import ManualClock
from services.common.errors import FailedPrecondition, PermissionDenied, ValidationError
from services.common.ids import new_tracking_id
from services.intake.evidence import (
    EvidenceHandlers,
    EvidenceHeader,
    EvidenceLimits,
    StoredEvidence,
    sniff,
)
from services.intake.reporter import ReporterHandlers
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

    async def write(self, data: bytes) -> None:
        self.data += data
        if self.store.fail_after is not None and len(self.data) > self.store.fail_after:
            raise ConnectionError("database went away")

    async def close(self) -> str:
        self.state = "closed"
        self.store.files[self.name] = self.data
        return self.name

    async def abort(self) -> None:
        self.state = "aborted"


class FakeStore:
    def __init__(self, reports: FakeReports) -> None:
        self.reports = reports
        self.files: dict[str, bytes] = {}
        self.opened: list[FakeFile] = []
        self.fail_after: int | None = None

    def create(self, tracking_id: str, file_name: str, content_type: str) -> FakeFile:
        f = FakeFile(self, f"f{len(self.opened)}")
        self.opened.append(f)
        return f

    async def attach(self, tracking_id: str, item: StoredEvidence, max_report_bytes: int) -> int:
        doc = self.reports.docs[tracking_id]
        total = doc.get("evidence_bytes", 0) + item.size_bytes
        if total > max_report_bytes:
            return -1
        doc["evidence_bytes"] = total
        doc.setdefault("evidence", []).append(item)
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

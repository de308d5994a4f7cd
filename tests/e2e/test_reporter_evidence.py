"""Evidence uploads over gRPC (client streaming) against the running services, with small
limits set through the environment: accepted JPEG and PDF stored in GridFS with their
SHA-256, refused types, mismatches and oversize files leaving nothing behind, the limit on
files per report, the cap on concurrent uploads, and the orphan sweep cleaning up after an intake killed mid-upload."""

from __future__ import annotations

import hashlib
import random
import signal
import struct
import threading
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gridfs
import grpc
import pytest
from bson import ObjectId
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from lapor.v1 import common_pb2, intake_pb2, reporter_pb2, reporter_pb2_grpc
from pymongo import MongoClient

from services.stack.supervisor import Stack
from tests.e2e.conftest import start_stack
from tests.support import eventually, intake_stub, refused, submit_request

LIMITS = {
    "LAPOR_EVIDENCE_MAX_FILE_BYTES": "200000",
    "LAPOR_EVIDENCE_MAX_VIDEO_BYTES": "300000",
    "LAPOR_EVIDENCE_MAX_REPORT_BYTES": "400000",
    "LAPOR_EVIDENCE_MAX_CONCURRENT_UPLOADS": "2",
    "LAPOR_EVIDENCE_MAX_FILES": "3",  # no other test here puts more on one report
    # Longer than any upload here takes; short enough to watch the sweep work.
    "LAPOR_EVIDENCE_ORPHAN_GRACE_SECONDS": "8",
    "LAPOR_EVIDENCE_SWEEP_INTERVAL_SECONDS": "0.5",
}


def tiny_jpeg() -> bytes:
    """A baseline JPEG's segments: SOI, JFIF APP0, a quantisation table, a 1x1 frame, EOI."""
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = b"\x00" + bytes(range(1, 65))
    sof = b"\x08\x00\x01\x00\x01\x01\x01\x11\x00"

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body

    return b"\xff\xd8" + segment(0xE0, app0) + segment(0xDB, dqt) + segment(0xC0, sof) + b"\xff\xd9"


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )


def tiny_pdf(padding: int = 0) -> bytes:
    """A one-page PDF with a correct cross-reference table."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ]
    out = b"%PDF-1.4\n%" + b"x" * padding + b"\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (
        f"trailer << /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out


@pytest.fixture(scope="module")
def evidence_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(Path(tmp_path_factory.mktemp("evidence")), env={"intake": LIMITS})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def clients(evidence_stack: Stack) -> Iterator[tuple[Any, Any, Any]]:
    address = evidence_stack.services["intake"].grpc_address
    channel, intake = intake_stub(address)
    plain = grpc.insecure_channel(address)
    mongo: MongoClient = MongoClient(evidence_stack.mongodb_uri, tz_aware=True)  # type: ignore[type-arg]
    with channel, plain:
        yield intake, reporter_pb2_grpc.ReporterServiceStub(plain), mongo["lapor_intake"]
    mongo.close()


def new_report(intake: Any) -> tuple[str, str]:
    """A confidential report with its reporter's identity: the names the reporter gives files
    are listed for them while the report keeps it (a report without one lists none)."""
    reply = intake.SubmitComplaint(
        submit_request(
            privacy=common_pb2.PRIVACY_CONFIDENTIAL,
            # a number of its own: the same reporter with the same text gets the first report
            reporter=intake_pb2.ReporterContact(
                name="Ni Made Sari", phone=f"+62812{random.randrange(10**7, 10**8)}"
            ),
        ),
        timeout=10,
    )
    return reply.tracking_id, reply.follow_up_code


def upload(
    reporter: Any, tid: str, code: str, name: str, ctype: str, data: bytes, chunk: int = 16384
) -> reporter_pb2.EvidenceReceipt:
    def chunks() -> Iterator[reporter_pb2.EvidenceChunk]:
        yield reporter_pb2.EvidenceChunk(
            header=reporter_pb2.EvidenceHeader(
                tracking_id=tid, follow_up_code=code, file_name=name, content_type=ctype
            )
        )
        for i in range(0, len(data), chunk):
            yield reporter_pb2.EvidenceChunk(data=data[i : i + chunk])

    return reporter.UploadEvidence(chunks(), timeout=20)


def stored_files(db: Any, tid: str) -> int:
    return int(db["evidence.files"].count_documents({"metadata.tracking_id": tid}))


def test_jpeg_and_pdf_are_stored_with_their_digest(clients: Any) -> None:
    intake, reporter, db = clients
    tid, code = new_report(intake)
    jpeg, pdf = tiny_jpeg(), tiny_pdf()
    a = upload(reporter, tid, code, "jalan rusak.jpg", "image/jpeg", jpeg, chunk=10)
    b = upload(reporter, tid, code, "surat.pdf", "application/pdf", pdf)
    assert (a.evidence.content_type, b.evidence.content_type) == ("image/jpeg", "application/pdf")
    assert a.evidence.sha256 == hashlib.sha256(jpeg).hexdigest()
    assert b.evidence.sha256 == hashlib.sha256(pdf).hexdigest()
    assert b.report_evidence_bytes == len(jpeg) + len(pdf)
    report = reporter.GetMyReport(
        reporter_pb2.GetMyReportRequest(tracking_id=tid, follow_up_code=code), timeout=5
    )
    listed = {(e.file_name, e.content_type, e.size_bytes, e.sha256) for e in report.evidence}
    assert listed == {
        ("jalan rusak.jpg", "image/jpeg", len(jpeg), a.evidence.sha256),
        ("surat.pdf", "application/pdf", len(pdf), b.evidence.sha256),
    }
    bucket = gridfs.GridFSBucket(db, bucket_name="evidence")
    stored = bucket.open_download_stream(ObjectId(b.evidence.evidence_id)).read()
    assert hashlib.sha256(stored).hexdigest() == b.evidence.sha256
    public = reporter.GetPublicView(reporter_pb2.GetPublicViewRequest(tracking_id=tid), timeout=5)
    assert b"surat.pdf" not in public.SerializeToString()


@pytest.mark.parametrize(
    ("name", "declared", "data", "field", "rule"),
    [
        ("foto.jpg", "image/jpeg", b"MZ\x90\x00" + b"\x00" * 300, "content", "x-msdownload"),
        ("foto.jpg", "image/jpeg", b"hanya teks biasa" * 10, "content", "not a recognised"),
        ("foto.jpg", "image/jpeg", tiny_png(), "content", "is image/png, but content_type"),
        ("foto.pdf", "image/jpeg", tiny_jpeg(), "file_name", "extension .pdf"),
        ("laporan.docx", "application/msword", tiny_pdf(), "content_type", "must be one of"),
        ("surat.pdf", "application/pdf", tiny_pdf(250_000), "content", "at most 200000 bytes"),
    ],
)
def test_refused_files_leave_nothing(
    clients: Any, name: str, declared: str, data: bytes, field: str, rule: str
) -> None:
    intake, reporter, db = clients
    tid, code = new_report(intake)
    chunks_before = db["evidence.chunks"].count_documents({})
    err = refused(lambda: upload(reporter, tid, code, name, declared, data))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith(f"{field}: ") and rule in err.details()
    assert stored_files(db, tid) == 0
    assert db["evidence.chunks"].count_documents({}) == chunks_before
    assert "evidence" not in db["complaints"].find_one({"_id": tid})


def test_report_limit_and_ownership(clients: Any) -> None:
    intake, reporter, db = clients
    tid, code = new_report(intake)
    for i in range(2):
        upload(reporter, tid, code, f"s{i}.pdf", "application/pdf", tiny_pdf(150_000))
    err = refused(
        lambda: upload(reporter, tid, code, "s3.pdf", "application/pdf", tiny_pdf(150_000))
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "all evidence of one report" in err.details()
    assert stored_files(db, tid) == 2
    wrong = refused(
        lambda: upload(reporter, tid, "AAAA-BBBB-CCCC", "a.jpg", "image/jpeg", tiny_jpeg())
    )
    assert wrong.code() == grpc.StatusCode.PERMISSION_DENIED

    def no_header() -> Iterator[reporter_pb2.EvidenceChunk]:
        yield reporter_pb2.EvidenceChunk(data=tiny_jpeg())

    headless = refused(lambda: reporter.UploadEvidence(no_header(), timeout=10))
    assert headless.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert headless.details().startswith("header: ")


def test_file_limit_per_report(clients: Any) -> None:
    intake, reporter, db = clients
    tid, code = new_report(intake)
    for i in range(3):
        upload(reporter, tid, code, f"f{i}.jpg", "image/jpeg", tiny_jpeg())
    chunks_before = db["evidence.chunks"].count_documents({})
    err = refused(lambda: upload(reporter, tid, code, "f3.jpg", "image/jpeg", tiny_jpeg()))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "content: all evidence of one report must be at most 3 files"
    assert stored_files(db, tid) == 3
    assert db["evidence.chunks"].count_documents({}) == chunks_before
    assert len(db["complaints"].find_one({"_id": tid})["evidence"]) == 3


def test_a_client_hanging_up_mid_upload_leaves_nothing(clients: Any) -> None:
    intake, reporter, db = clients
    tid, code = new_report(intake)
    sent_enough, finish = threading.Event(), threading.Event()
    mp4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 16360

    def chunks() -> Iterator[reporter_pb2.EvidenceChunk]:
        yield reporter_pb2.EvidenceChunk(
            header=reporter_pb2.EvidenceHeader(
                tracking_id=tid, follow_up_code=code, file_name="v.mp4", content_type="video/mp4"
            )
        )
        yield reporter_pb2.EvidenceChunk(data=mp4)
        for _ in range(10):
            yield reporter_pb2.EvidenceChunk(data=b"\x00" * 16384)
        sent_enough.set()
        finish.wait(30)  # then the stream would end normally, were it not cancelled

    call = reporter.UploadEvidence.future(chunks(), timeout=60)
    assert sent_enough.wait(30)
    call.cancel()
    finish.set()
    assert call.cancelled()
    # A later upload to the same report goes through; the cut one left nothing.
    receipt = upload(reporter, tid, code, "foto.jpg", "image/jpeg", tiny_jpeg())
    assert receipt.report_evidence_bytes == len(tiny_jpeg())
    # Chunks go to GridFS while an upload runs; the server deletes them when it sees the
    # cancellation, which reaches it asynchronously.
    eventually(lambda: stored_files(db, tid) == 1, timeout=10, what="the partial file deleted")
    listed = db["complaints"].find_one({"_id": tid})["evidence"]
    assert [e["name"] for e in listed] == ["foto.jpg"]


def held_upload(
    reporter: Any,
    tid: str,
    code: str,
    data: bytes,
    release: threading.Event,
    name: str = "s.pdf",
    ctype: str = "application/pdf",
) -> grpc.Future:
    """An upload that sends `data`, then waits for `release` before it ends."""

    def chunks() -> Iterator[reporter_pb2.EvidenceChunk]:
        yield reporter_pb2.EvidenceChunk(
            header=reporter_pb2.EvidenceHeader(
                tracking_id=tid, follow_up_code=code, file_name=name, content_type=ctype
            )
        )
        yield reporter_pb2.EvidenceChunk(data=data)
        release.wait(30)

    return reporter.UploadEvidence.future(chunks(), timeout=60)


def test_uploads_beyond_the_cap_get_resource_exhausted_with_a_retry_delay(clients: Any) -> None:
    intake, reporter, db = clients
    tid, code = new_report(intake)
    release = threading.Event()
    pdf = tiny_pdf(20_000)  # past the sniffed head: the server has started each file
    running = [held_upload(reporter, tid, code, pdf, release) for _ in range(2)]
    try:
        eventually(lambda: stored_files(db, tid) == 2, timeout=15, what="two running uploads")
        other, other_code = new_report(intake)
        err = refused(
            lambda: upload(reporter, other, other_code, "a.jpg", "image/jpeg", tiny_jpeg())
        )
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (
            err.details().startswith("upload_evidence: ") and "at most 2 uploads" in err.details()
        )
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
        assert status is not None
        info = error_details_pb2.RetryInfo()
        assert any(d.Unpack(info) for d in status.details)
        assert info.retry_delay.ToMilliseconds() > 0
        assert stored_files(db, other) == 0
    finally:
        release.set()
    receipts = [r.result(timeout=30) for r in running]
    assert {r.evidence.size_bytes for r in receipts} == {len(pdf)}
    # The slots are free again.
    assert upload(reporter, other, other_code, "a.jpg", "image/jpeg", tiny_jpeg()).evidence.sha256


def pending_chunks(db: Any, tid: str) -> int:
    files = db["evidence.files"].find({"metadata.tracking_id": tid, "metadata.pending": True})
    return int(
        db["evidence.chunks"].count_documents({"files_id": {"$in": [f["_id"] for f in files]}})
    )


def orphans_deleted(stack: Stack) -> float:
    port = stack.services["intake"].ports["metrics"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    for line in text.splitlines():
        if line.startswith("lapor_intake_evidence_orphans_deleted_total "):
            return float(line.split()[1])
    return 0.0


def test_intake_killed_mid_upload_leaves_an_orphan_the_sweep_deletes(
    evidence_stack: Stack, clients: Any
) -> None:
    """Last in this module: it restarts intake."""
    intake, reporter, db = clients
    tid, code = new_report(intake)
    kept = upload(reporter, tid, code, "surat.pdf", "application/pdf", tiny_pdf())
    release = threading.Event()
    video = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 280_000
    # A full GridFS chunk and more, then the stream waits.
    cut = held_upload(reporter, tid, code, video, release, "v.mp4", "video/mp4")
    try:
        eventually(
            lambda: pending_chunks(db, tid), timeout=15, what="the upload's first chunk in GridFS"
        )
        evidence_stack.stop_service("intake", signal.SIGKILL)
    finally:
        release.set()
    with pytest.raises(grpc.RpcError):
        cut.result(timeout=30)
    orphan = db["evidence.files"].find_one({"metadata.tracking_id": tid, "metadata.pending": True})
    assert orphan is not None  # what the killed process left
    evidence_stack.start_service("intake")
    evidence_stack.wait_serving(("intake",), timeout=90)
    eventually(
        lambda: db["evidence.files"].find_one({"_id": orphan["_id"]}) is None,
        timeout=60,
        what="the orphan swept",
    )
    assert db["evidence.chunks"].count_documents({"files_id": orphan["_id"]}) == 0
    assert orphans_deleted(evidence_stack) >= 1
    assert stored_files(db, tid) == 1
    report = reporter.GetMyReport(
        reporter_pb2.GetMyReportRequest(tracking_id=tid, follow_up_code=code), timeout=5
    )
    assert [e.evidence_id for e in report.evidence] == [kept.evidence.evidence_id]
    bucket = gridfs.GridFSBucket(db, bucket_name="evidence")
    stored = bucket.open_download_stream(ObjectId(kept.evidence.evidence_id)).read()
    assert hashlib.sha256(stored).hexdigest() == kept.evidence.sha256

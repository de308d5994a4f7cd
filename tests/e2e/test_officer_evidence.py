"""Officers read the reporter's evidence over gRPC (lapor.v1.EvidenceService, served by
intake) against the running services: a reporter uploads a photo and a multi-chunk PDF, the
report is routed, the holding institution's officer lists and downloads them (bytes and
SHA-256 equal), another institution's officer gets NOT_FOUND, a national admin reads them,
tokens and ids are checked, every download is in the audit collection, and the reporter's
identity is in none of the answers: not even in the file names, which the reporter chose
(``KTP_Ni_Luh_Ayu_...jpg``) and only the reporter sees back; officers get
``lampiran-<evidence id>.<ext>``."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from lapor.v1 import (
    common_pb2,
    evidence_pb2,
    evidence_pb2_grpc,
    intake_pb2,
    officer_pb2,
    reporter_pb2,
    reporter_pb2_grpc,
    sla_pb2,
    sla_pb2_grpc,
)
from pymongo import MongoClient

from services.common.auth import issue_token
from services.intake.officer_evidence import MAX_PIECE
from services.stack.supervisor import Stack
from tests.e2e.conftest import SECRETS
from tests.e2e.officer_support import Officers, code_of
from tests.e2e.test_reporter_evidence import tiny_jpeg, tiny_pdf, upload
from tests.support import eventually, intake_stub, marker, submit_request

NAME, PHONE, EMAIL = "Ni Luh Ayu Sekarwati", "+6281234509876", "ayu.sekar@example.id"
POTHOLE = {
    "title": "Jalan berlubang di Jalan Cipto",
    "body": "Jalan Cipto rusak parah dan berlubang besar, sudah dua motor jatuh minggu ini.",
    "region_code": "51.08",
}
FOREIGN = "pemda-51.71/dpupr"
UNKNOWN_TID = "PD9Z-5S2Z-JY0"
# What the reporter named their files: their name and number, as people do.
PHOTO_NAME = "KTP_Ni_Luh_Ayu_Sekarwati_081234509876.jpg"
PDF_NAME = "Surat_Kuasa_Sekarwati.pdf"
NAME_PARTS = (PHOTO_NAME, PDF_NAME, "KTP_", "Sekarwati", "Ni_Luh", "Surat_Kuasa")


def bearer(institution: str, role: str = "officer", subject: str = "", ttl: int = 3600) -> Any:
    token = issue_token(
        SECRETS["jwt_key"],
        SECRETS["jwt_issuer"],
        subject or f"{role}-{marker()}",
        institution,
        role,
        ttl_seconds=ttl,
        now=time.time() - 7200 if ttl < 0 else None,
    )
    return (("authorization", f"Bearer {token}"),)


class Case:
    def __init__(
        self, tracking_id: str, holder: str, files: dict[str, bytes], exts: dict[str, str]
    ) -> None:
        self.tracking_id = tracking_id
        self.holder = holder
        self.files = files  # evidence id -> bytes uploaded
        self.exts = exts  # evidence id -> the extension of its sniffed type

    def officer_name(self, evidence_id: str) -> str:
        return f"lampiran-{evidence_id}.{self.exts[evidence_id]}"


@pytest.fixture(scope="module")
def evidence(stack: Stack) -> Iterator[Any]:
    channel = grpc.insecure_channel(stack.services["intake"].grpc_address)
    with channel:
        yield evidence_pb2_grpc.EvidenceServiceStub(channel)


@pytest.fixture(scope="module")
def case(stack: Stack) -> Case:
    channel, intake = intake_stub(stack.services["intake"].grpc_address)
    with channel:
        reply = intake.SubmitComplaint(
            submit_request(
                privacy=common_pb2.PRIVACY_CONFIDENTIAL,
                reporter=intake_pb2.ReporterContact(name=NAME, phone=PHONE, email=EMAIL),
                **POTHOLE,
            ),
            timeout=10,
        )
    files: dict[str, bytes] = {}
    exts: dict[str, str] = {}
    with grpc.insecure_channel(stack.services["intake"].grpc_address) as plain:
        reporter = reporter_pb2_grpc.ReporterServiceStub(plain)
        for name, ctype, ext, data in (
            (PHOTO_NAME, "image/jpeg", "jpg", tiny_jpeg()),
            (PDF_NAME, "application/pdf", "pdf", tiny_pdf(600_000)),  # three GridFS chunks
        ):
            receipt = upload(reporter, reply.tracking_id, reply.follow_up_code, name, ctype, data)
            assert receipt.evidence.file_name == name  # the reporter sees their own name
            files[receipt.evidence.evidence_id] = data
            exts[receipt.evidence.evidence_id] = ext
        mine = reporter.GetMyReport(
            reporter_pb2.GetMyReportRequest(
                tracking_id=reply.tracking_id, follow_up_code=reply.follow_up_code
            ),
            timeout=5,
        )
        assert [e.file_name for e in mine.evidence] == [PHOTO_NAME, PDF_NAME]
    with Officers(stack) as api:
        holder = api.routed(reply.tracking_id).institution.id
    assert holder.startswith("pemda-51.08/")
    return Case(reply.tracking_id, holder, files, exts)


def list_as(evidence: Any, tracking_id: str, metadata: Any) -> evidence_pb2.ListEvidenceResponse:
    return evidence.ListEvidence(  # type: ignore[no-any-return]
        evidence_pb2.ListEvidenceRequest(tracking_id=tracking_id), metadata=metadata, timeout=5
    )


def download(
    evidence: Any, tracking_id: str, evidence_id: str, metadata: Any
) -> list[evidence_pb2.EvidenceDownloadChunk]:
    request = evidence_pb2.DownloadEvidenceRequest(tracking_id=tracking_id, evidence_id=evidence_id)
    return list(evidence.DownloadEvidence(request, metadata=metadata, timeout=10))


def holder_listing(evidence: Any, case: Case) -> evidence_pb2.ListEvidenceResponse:
    """Once intake's tracking view knows where routing sent the report."""

    def look() -> evidence_pb2.ListEvidenceResponse | None:
        try:
            return list_as(evidence, case.tracking_id, bearer(case.holder))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                return None
            raise

    return eventually(look, what=f"intake to learn the holder of {case.tracking_id}")


def test_the_holding_institution_lists_and_downloads_the_reporters_files(
    evidence: Any,
    case: Case,
    mongo: MongoClient,  # type: ignore[type-arg]
) -> None:
    listing = holder_listing(evidence, case)
    assert listing.tracking_id == case.tracking_id
    assert {e.evidence_id: (e.size_bytes, e.sha256) for e in listing.evidence} == {
        i: (len(d), hashlib.sha256(d).hexdigest()) for i, d in case.files.items()
    }
    assert [e.content_type for e in listing.evidence] == ["image/jpeg", "application/pdf"]
    assert [e.file_name for e in listing.evidence] == [case.officer_name(i) for i in case.files]
    assert listing.evidence_bytes == sum(len(d) for d in case.files.values())

    subject = f"nip-{marker()}"
    for evidence_id, data in case.files.items():
        first, *rest = download(
            evidence, case.tracking_id, evidence_id, bearer(case.holder, subject=subject)
        )
        assert first.WhichOneof("part") == "evidence"
        assert first.evidence.evidence_id == evidence_id
        assert first.evidence.file_name == case.officer_name(evidence_id)
        assert all(m.WhichOneof("part") == "data" for m in rest)
        assert all(0 < len(m.data) <= MAX_PIECE for m in rest)
        received = b"".join(m.data for m in rest)
        assert received == data
        assert hashlib.sha256(received).hexdigest() == first.evidence.sha256
        if len(data) > MAX_PIECE:
            assert len(rest) >= 3  # streamed in pieces, not in one message

    records = list(
        mongo["lapor_intake"]["evidence_downloads"].find({"subject": subject}, {"_id": 0})
    )
    assert {(r["tracking_id"], r["evidence_id"]) for r in records} == {
        (case.tracking_id, i) for i in case.files
    }
    assert {(r["institution"], r["role"]) for r in records} == {(case.holder, "officer")}
    assert all(r["at"] is not None for r in records)
    assert not [p for p in NAME_PARTS for r in records if p in repr(r)]  # the audit neither


def test_the_government_above_and_national_admins_read_it_others_get_not_found(
    evidence: Any, case: Case
) -> None:
    holder_listing(evidence, case)
    evidence_id, data = next(iter(case.files.items()))
    government = case.holder.split("/")[0]
    for metadata in (bearer(government, "institution_admin"), bearer("national", "national_admin")):
        assert len(list_as(evidence, case.tracking_id, metadata).evidence) == len(case.files)
        chunks = download(evidence, case.tracking_id, evidence_id, metadata)
        assert b"".join(m.data for m in chunks[1:]) == data

    foreign = bearer(FOREIGN)
    sibling = bearer("pemda-51.08/disdukcapil" if "disdukcapil" not in case.holder else FOREIGN)
    for metadata in (foreign, sibling, bearer(FOREIGN.split("/")[0], "institution_admin")):
        assert (
            code_of(lambda m=metadata: list_as(evidence, case.tracking_id, m))  # type: ignore[misc]
            == grpc.StatusCode.NOT_FOUND
        )
        assert (
            code_of(lambda m=metadata: download(evidence, case.tracking_id, evidence_id, m))  # type: ignore[misc]
            == grpc.StatusCode.NOT_FOUND
        )
    # The same answer as for a report that does not exist.
    with pytest.raises(grpc.RpcError) as theirs:
        list_as(evidence, case.tracking_id, foreign)
    with pytest.raises(grpc.RpcError) as nobody:
        list_as(evidence, UNKNOWN_TID, foreign)
    assert theirs.value.details().replace(case.tracking_id, "X") == nobody.value.details().replace(  # type: ignore[attr-defined]
        UNKNOWN_TID, "X"
    )
    admin = bearer("national", "national_admin")
    assert code_of(lambda: list_as(evidence, UNKNOWN_TID, admin)) == grpc.StatusCode.NOT_FOUND
    other_file = "65f0c0ffee0000000000ffff"
    assert (
        code_of(lambda: download(evidence, case.tracking_id, other_file, admin))
        == grpc.StatusCode.NOT_FOUND
    )


def test_tokens_are_required(evidence: Any, case: Case) -> None:
    evidence_id = next(iter(case.files))
    for metadata in (
        (),
        (("authorization", "Bearer not-a-jwt"),),
        bearer(case.holder, ttl=-1),  # expired two hours ago
        (("authorization", "Bearer " + bearer(case.holder)[0][1].split()[1] + "x"),),
    ):
        assert (
            code_of(lambda m=metadata: list_as(evidence, case.tracking_id, m))  # type: ignore[misc]
            == grpc.StatusCode.UNAUTHENTICATED
        )
        assert (
            code_of(lambda m=metadata: download(evidence, case.tracking_id, evidence_id, m))  # type: ignore[misc]
            == grpc.StatusCode.UNAUTHENTICATED
        )


def test_bad_ids_are_invalid_arguments_naming_each_field(evidence: Any, case: Case) -> None:
    with pytest.raises(grpc.RpcError) as err:
        download(evidence, "nonsense", "../etc/passwd", bearer(case.holder))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    status = rpc_status.from_call(err.value)  # type: ignore[arg-type]
    assert status is not None
    fields = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    assert fields == ["tracking_id", "evidence_id"]


def test_the_reporters_identity_is_in_no_answer(evidence: Any, case: Case) -> None:
    admin = bearer("national", "national_admin")
    answers = [list_as(evidence, case.tracking_id, admin).SerializeToString()]
    for evidence_id in case.files:
        answers += [
            m.SerializeToString() for m in download(evidence, case.tracking_id, evidence_id, admin)
        ]
    everything = b"".join(answers)
    for secret in (NAME, PHONE, PHONE.lstrip("+"), "081234509876", EMAIL, *NAME_PARTS):
        assert secret.encode() not in everything


def test_a_unit_added_at_run_time_reads_what_is_forwarded_to_it(
    stack: Stack, evidence: Any
) -> None:
    """Intake and sla never load routing's edited directory: the ids above the holder travel
    on routing's events, so an officer of a unit created through the admin API sees the
    evidence and the clocks of a report forwarded to it; its sibling still does not."""
    channel, intake = intake_stub(stack.services["intake"].grpc_address)
    with channel:
        reply = intake.SubmitComplaint(submit_request(**POTHOLE), timeout=10)
    with grpc.insecure_channel(stack.services["intake"].grpc_address) as plain:
        reporter = reporter_pb2_grpc.ReporterServiceStub(plain)
        receipt = upload(
            reporter, reply.tracking_id, reply.follow_up_code, "a.jpg", "image/jpeg", tiny_jpeg()
        )
    tid = reply.tracking_id
    with Officers(stack) as api:
        report = api.routed(tid)
        holder = report.institution.id
        new_unit, sibling = f"{holder}/seksi-jalan-{marker()}", f"{holder}/seksi-lain-{marker()}"
        for unit in (new_unit, sibling):
            api.admin.UpsertInstitution(
                officer_pb2.UpsertInstitutionRequest(
                    institution=officer_pb2.InstitutionRecord(
                        id=unit, name=unit, kind="unit", parent_id=holder, region_code="51.08"
                    )
                ),
                metadata=bearer("national", "national_admin"),
                timeout=5,
            )
        forwarded = api.officer.Forward(
            officer_pb2.ForwardRequest(
                tracking_id=tid, expected_version=report.version, institution_id=new_unit
            ),
            metadata=bearer(holder),
            timeout=5,
        )
        assert forwarded.institution.id == new_unit

    def listed() -> evidence_pb2.ListEvidenceResponse | None:
        try:
            return list_as(evidence, tid, bearer(new_unit))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                return None
            raise

    listing = eventually(listed, what="intake to learn of the new unit")
    assert [e.evidence_id for e in listing.evidence] == [receipt.evidence.evidence_id]
    chunks = download(evidence, tid, receipt.evidence.evidence_id, bearer(new_unit))
    assert b"".join(m.data for m in chunks[1:]) == tiny_jpeg()
    assert len(list_as(evidence, tid, bearer(holder)).evidence) == 1  # the unit above it
    assert code_of(lambda: list_as(evidence, tid, bearer(sibling))) == grpc.StatusCode.NOT_FOUND

    with grpc.insecure_channel(stack.services["sla"].grpc_address) as sla_channel:
        sla = sla_pb2_grpc.SlaServiceStub(sla_channel)

        def clocks(who: str) -> sla_pb2.ReportStatus:
            return sla.GetReportStatus(  # type: ignore[no-any-return]
                sla_pb2.GetReportStatusRequest(tracking_id=tid), metadata=bearer(who), timeout=5
            )

        def held_by_new_unit() -> sla_pb2.ReportStatus | None:
            try:
                status = clocks(new_unit)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                    return None
                raise
            return status if status.institution.id == new_unit else None

        eventually(held_by_new_unit, what="sla to learn of the new unit")
        assert code_of(lambda: clocks(sibling)) == grpc.StatusCode.NOT_FOUND

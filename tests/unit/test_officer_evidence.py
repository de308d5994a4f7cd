"""Officers reading the reporter's evidence (services/intake/officer_evidence.py): who may see
which report's files, what is refused how, the download audit, and the checked streaming;
with in-memory fakes of the catalog and the audit log, and the shared scope rule
(services/common/scope.py) over a small directory. And the name officers get for a file
(services/intake/officer_evidence_names.py): never the one the reporter gave it, in the
gRPC answers (officer_evidence_api.py), the catalog's items (officer_evidence_store.py), the
audit or the logs."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lapor.v1 import evidence_pb2

from services.common import scope
from services.common.auth import Principal
from services.common.clock import ManualClock
from services.common.errors import NotFound, ValidationError
from services.common.ids import new_tracking_id
from services.intake.evidence import ALLOWED
from services.intake.officer_evidence import (
    MAX_PIECE,
    DownloadRecord,
    EvidenceCorrupted,
    EvidenceItem,
    OfficerEvidence,
    ReportEvidence,
)
from services.intake.officer_evidence_api import EvidenceServicer
from services.intake.officer_evidence_names import officer_file_name
from services.intake.officer_evidence_store import MongoEvidenceCatalog
from services.routing.domain.access import Actor
from services.routing.domain.case import Role
from services.routing.domain.directory import Directory, Institution

UNIT = "pemda-51.08/dpupr"
SIBLING = "pemda-51.08/disdukcapil"
GOVERNMENT = "pemda-51.08"
FOREIGN = "pemda-51.71/dpupr"
FILE_ID = "65f0c0ffee0000000000a001"
OTHER_FILE_ID = "65f0c0ffee0000000000a002"
# What a reporter may well call the photo of their ID card: their name and number.
REPORTERS_NAME = "KTP_Budi_Santoso_0812345.jpg"
REPORTERS_WORDS = ("KTP_", "Budi", "Santoso", "0812345", REPORTERS_NAME)


def directory() -> Directory:
    def gov(code: str) -> Institution:
        return Institution(f"pemda-{code}", f"Pemerintah {code}", "regency", None, code, ())

    def unit(code: str, slug: str) -> Institution:
        return Institution(f"pemda-{code}/{slug}", slug, "unit", f"pemda-{code}", code, ())

    return Directory(
        [
            gov("51.08"),
            unit("51.08", "dpupr"),
            unit("51.08", "disdukcapil"),
            gov("51.71"),
            unit("51.71", "dpupr"),
            Institution("nasional-pln", "PLN", "soe", None, None, ()),
        ]
    )


class FakeCatalog:
    def __init__(self) -> None:
        self.reports: dict[str, ReportEvidence] = {}
        self.files: dict[tuple[str, str], list[bytes]] = {}
        self.opened: list[str] = []

    def add(self, holder: str, files: dict[str, list[bytes]]) -> str:
        tracking_id = new_tracking_id()
        at = datetime(2026, 11, 2, 9, tzinfo=UTC)
        items = []
        for number, (evidence_id, pieces) in enumerate(files.items()):
            data = b"".join(pieces)
            items.append(
                EvidenceItem(
                    evidence_id,
                    REPORTERS_NAME.replace(".jpg", f"-{number}.jpg"),  # as the reporter named it
                    "image/jpeg",
                    len(data),
                    hashlib.sha256(data).hexdigest(),
                    at + timedelta(minutes=number),
                )
            )
            self.files[(tracking_id, evidence_id)] = pieces
        self.reports[tracking_id] = ReportEvidence(tracking_id, holder, tuple(items))
        return tracking_id

    async def report(self, tracking_id: str) -> ReportEvidence | None:
        return self.reports.get(tracking_id)

    async def open(self, tracking_id: str, evidence_id: str) -> AsyncIterator[bytes] | None:
        pieces = self.files.get((tracking_id, evidence_id))
        if pieces is None:
            return None
        self.opened.append(evidence_id)

        async def stream() -> AsyncIterator[bytes]:
            for piece in pieces:
                yield piece

        return stream()


class FakeLog:
    def __init__(self, fail: bool = False) -> None:
        self.entries: list[DownloadRecord] = []
        self.fail = fail

    async def record(self, entry: DownloadRecord) -> None:
        if self.fail:
            raise ConnectionError("audit collection unreachable")
        self.entries.append(entry)


def officer(institution: str, role: str = "officer", subject: str = "nip-1971") -> Principal:
    return Principal(subject, institution, role)


ADMIN = officer("national", "national_admin", "admin-7")
PHOTO = [b"\xff\xd8" + b"a" * 1000, b"b" * 500]


@pytest.fixture
def catalog() -> FakeCatalog:
    return FakeCatalog()


@pytest.fixture
def log() -> FakeLog:
    return FakeLog()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 23, 8, 30, tzinfo=UTC))


@pytest.fixture
def evidence(catalog: FakeCatalog, log: FakeLog, clock: ManualClock) -> OfficerEvidence:
    return OfficerEvidence(catalog, log, directory(), clock)


async def read_all(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [piece async for piece in stream]


# --- who sees what --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "sees"),
    [
        (officer(UNIT), True),  # the holder
        (officer(UNIT, "institution_admin"), True),
        (officer(GOVERNMENT), True),  # the government above the unit
        (officer(GOVERNMENT, "institution_admin"), True),
        (ADMIN, True),
        (officer(SIBLING), False),  # another unit of the same government
        (officer(FOREIGN), False),  # another regency
        (officer("pemda-51.71", "institution_admin"), False),
        (officer("nasional-pln"), False),
        (officer("pemda-99.99/nowhere"), False),  # unknown to the directory: nothing
    ],
)
async def test_the_holder_and_those_above_it_see_the_evidence_others_get_not_found(
    evidence: OfficerEvidence, catalog: FakeCatalog, log: FakeLog, who: Principal, sees: bool
) -> None:
    tracking_id = catalog.add(UNIT, {FILE_ID: PHOTO})
    if sees:
        listed = await evidence.list(who, tracking_id)
        assert [i.evidence_id for i in listed.items] == [FILE_ID]
        item, stream = await evidence.download(who, tracking_id, FILE_ID)
        assert b"".join(await read_all(stream)) == b"".join(PHOTO)
        assert len(log.entries) == 1
        return
    unknown = new_tracking_id()
    with pytest.raises(NotFound) as foreign:
        await evidence.list(who, tracking_id)
    with pytest.raises(NotFound) as missing:
        await evidence.list(who, unknown)
    # Word for word the answer for an unknown id: nothing says the report exists.
    assert str(foreign.value) == str(missing.value).replace(unknown, tracking_id)
    with pytest.raises(NotFound, match="tracking_id"):
        await evidence.download(who, tracking_id, FILE_ID)
    assert log.entries == []
    assert catalog.opened == []


async def test_a_report_not_yet_routed_is_seen_by_national_admins_only(
    evidence: OfficerEvidence, catalog: FakeCatalog
) -> None:
    tracking_id = catalog.add("", {FILE_ID: PHOTO})
    assert len((await evidence.list(ADMIN, tracking_id)).items) == 1
    for who in (officer(UNIT), officer(GOVERNMENT, "institution_admin")):
        with pytest.raises(NotFound):
            await evidence.list(who, tracking_id)


def test_routing_and_intake_share_one_rule() -> None:
    """Routing's access functions are the common rule: same answers for the same people."""
    from services.routing.domain import access

    tree = directory()
    holders = [UNIT, SIBLING, GOVERNMENT, FOREIGN, "nasional-pln", "verification-queue", ""]
    for institution in [UNIT, GOVERNMENT, FOREIGN, "nasional-pln", "pemda-99.99"]:
        for role in Role:
            if role in (Role.REPORTER, Role.SYSTEM):
                continue
            actor = Actor("x", institution, role)
            principal = Principal("x", institution, role.value)
            for holder in holders:
                assert access.can_see(actor, holder, tree) == scope.can_see(
                    principal, holder, tree
                ), (institution, role, holder)
    assert set(scope.visible_institutions(officer(GOVERNMENT), tree) or []) == {
        GOVERNMENT,
        UNIT,
        SIBLING,
    }
    assert scope.visible_institutions(ADMIN, tree) is None


# --- the download ---------------------------------------------------------------------------


async def test_a_download_is_recorded_before_any_byte_with_the_officer_and_the_clock(
    evidence: OfficerEvidence, catalog: FakeCatalog, log: FakeLog, clock: ManualClock
) -> None:
    tracking_id = catalog.add(UNIT, {FILE_ID: PHOTO, OTHER_FILE_ID: [b"%PDF-1.4 tiny"]})
    item, stream = await evidence.download(officer(UNIT, subject="nip-42"), tracking_id, FILE_ID)
    assert len(log.entries) == 1  # recorded although nothing was read yet
    assert log.entries[0] == DownloadRecord(
        at=clock.now(),
        subject="nip-42",
        institution=UNIT,
        role="officer",
        tracking_id=tracking_id,
        evidence_id=FILE_ID,
        size_bytes=item.size_bytes,
        sha256=item.sha256,
    )
    assert await read_all(stream) == PHOTO
    clock.advance(timedelta(minutes=5))
    _, other = await evidence.download(ADMIN, tracking_id, OTHER_FILE_ID)
    assert b"".join(await read_all(other)) == b"%PDF-1.4 tiny"
    assert [(e.subject, e.evidence_id, e.at) for e in log.entries] == [
        ("nip-42", FILE_ID, datetime(2026, 11, 23, 8, 30, tzinfo=UTC)),
        ("admin-7", OTHER_FILE_ID, datetime(2026, 11, 23, 8, 35, tzinfo=UTC)),
    ]


async def test_no_trace_no_file(catalog: FakeCatalog, clock: ManualClock) -> None:
    evidence = OfficerEvidence(catalog, FakeLog(fail=True), directory(), clock)
    tracking_id = catalog.add(UNIT, {FILE_ID: PHOTO})
    with pytest.raises(ConnectionError):
        await evidence.download(officer(UNIT), tracking_id, FILE_ID)


async def test_unknown_or_foreign_evidence_ids_are_not_found(
    evidence: OfficerEvidence, catalog: FakeCatalog, log: FakeLog
) -> None:
    mine = catalog.add(UNIT, {FILE_ID: PHOTO})
    theirs = catalog.add(UNIT, {OTHER_FILE_ID: PHOTO})
    with pytest.raises(NotFound, match="evidence_id"):
        await evidence.download(officer(UNIT), mine, OTHER_FILE_ID)  # another report's file
    with pytest.raises(NotFound, match="evidence_id"):
        await evidence.download(ADMIN, theirs, "65f0c0ffee0000000000ffff")
    # Listed but gone from the store (deleted underneath): not found either.
    del catalog.files[(mine, FILE_ID)]
    with pytest.raises(NotFound, match="evidence_id"):
        await evidence.download(officer(UNIT), mine, FILE_ID)
    assert log.entries == []


async def test_bad_ids_name_each_field(evidence: OfficerEvidence) -> None:
    with pytest.raises(ValidationError) as empty:
        await evidence.download(officer(UNIT), " ", "")
    assert [v.field for v in empty.value.violations] == ["tracking_id", "evidence_id"]
    with pytest.raises(ValidationError) as bad:
        await evidence.download(officer(UNIT), "7K3M-9QX2-DAB", "../../etc/passwd")
    assert [v.field for v in bad.value.violations] == ["tracking_id", "evidence_id"]
    with pytest.raises(ValidationError) as listing:
        await evidence.list(ADMIN, "not a tracking id")
    assert [v.field for v in listing.value.violations] == ["tracking_id"]


async def test_tracking_ids_are_read_forgivingly(
    evidence: OfficerEvidence, catalog: FakeCatalog
) -> None:
    tracking_id = catalog.add(UNIT, {FILE_ID: PHOTO})
    sloppy = tracking_id.replace("-", " ").lower()
    assert (await evidence.list(officer(UNIT), sloppy)).tracking_id == tracking_id


async def test_large_store_pieces_leave_in_messages_of_at_most_256_kib(
    evidence: OfficerEvidence, catalog: FakeCatalog
) -> None:
    big = [bytes([n]) * (MAX_PIECE * 2 + 7) for n in range(3)]
    tracking_id = catalog.add(UNIT, {FILE_ID: big})
    _, stream = await evidence.download(officer(UNIT), tracking_id, FILE_ID)
    pieces = await read_all(stream)
    assert max(len(p) for p in pieces) == MAX_PIECE
    assert len(pieces) == 9
    assert b"".join(pieces) == b"".join(big)


@pytest.mark.parametrize(
    "stored",
    [
        [b"\xff\xd8" + b"a" * 1000, b"B" * 500],  # a changed byte
        [b"\xff\xd8" + b"a" * 1000],  # cut short
        [*PHOTO, b"more"],  # longer than uploaded
    ],
)
async def test_bytes_that_no_longer_match_the_upload_end_the_download_with_an_error(
    evidence: OfficerEvidence, catalog: FakeCatalog, stored: list[bytes]
) -> None:
    tracking_id = catalog.add(UNIT, {FILE_ID: PHOTO})
    catalog.files[(tracking_id, FILE_ID)] = stored
    _, stream = await evidence.download(officer(UNIT), tracking_id, FILE_ID)
    with pytest.raises(EvidenceCorrupted):
        await read_all(stream)


# --- the name officers get ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "extension"),
    [
        ("image/jpeg", "jpg"),
        ("image/png", "png"),
        ("image/webp", "webp"),
        ("image/heic", "heic"),
        ("application/pdf", "pdf"),
        ("video/mp4", "mp4"),
        ("video/3gpp", "3gp"),
        (" Image/JPG ", "jpg"),  # read as intake reads a declared type
        ("application/x-msdownload", "bin"),  # not an allowed type: a damaged listing
        ("", "bin"),
    ],
)
def test_officers_get_a_name_made_of_the_evidence_id_and_the_sniffed_type(
    content_type: str, extension: str
) -> None:
    assert officer_file_name(FILE_ID, content_type) == f"lampiran-{FILE_ID}.{extension}"


def test_every_allowed_type_has_its_own_extension_and_the_name_stays_plain() -> None:
    names = {t: officer_file_name(FILE_ID, t) for t in ALLOWED}
    assert len(set(names.values())) == len(ALLOWED)
    for content_type, name in names.items():
        assert name.rsplit(".", 1)[1] in ALLOWED[content_type]  # one intake itself accepts
    # Whatever a damaged listing holds, only hex digits, the hyphen and the dot come out.
    assert officer_file_name("../../KTP Budi\\x", "image/png") == "lampiran-bd.png"
    assert officer_file_name("", "image/png") == "lampiran-0.png"


class FakeVerifier:
    def __init__(self, who: Principal) -> None:
        self.who = who

    def from_metadata(self, metadata: Any) -> Principal:
        return self.who


class FakeContext:
    def __init__(self) -> None:
        self.written: list[evidence_pb2.EvidenceDownloadChunk] = []

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", "Bearer x"),)

    async def write(self, message: evidence_pb2.EvidenceDownloadChunk) -> None:
        self.written.append(message)


def _leaks(text: str) -> list[str]:
    return [word for word in REPORTERS_WORDS if word.lower() in text.lower()]


async def test_the_reporters_file_name_is_in_no_answer_no_audit_and_no_log(
    evidence: OfficerEvidence,
    catalog: FakeCatalog,
    log: FakeLog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Even from a catalog that hands over the reporter's names, officers get neutral ones."""
    tracking_id = catalog.add(UNIT, {FILE_ID: PHOTO, OTHER_FILE_ID: [b"%PDF-1.4 tiny"]})
    catalog.files[(tracking_id, OTHER_FILE_ID)] = [b"%PDF-1.4 changed"]  # logs an error
    servicer = EvidenceServicer(FakeVerifier(officer(UNIT)), evidence)  # type: ignore[arg-type]
    caplog.set_level(logging.DEBUG)

    listing = await servicer.ListEvidence(
        evidence_pb2.ListEvidenceRequest(tracking_id=tracking_id),
        FakeContext(),  # type: ignore[arg-type]
    )
    assert [e.file_name for e in listing.evidence] == [
        f"lampiran-{FILE_ID}.jpg",
        f"lampiran-{OTHER_FILE_ID}.jpg",  # the type listed, whatever the bytes
    ]
    downloaded = FakeContext()
    await servicer.DownloadEvidence(
        evidence_pb2.DownloadEvidenceRequest(tracking_id=tracking_id, evidence_id=FILE_ID),
        downloaded,  # type: ignore[arg-type]
    )
    first, *data = downloaded.written
    assert first.evidence == listing.evidence[0]
    assert b"".join(m.data for m in data) == b"".join(PHOTO)
    _, corrupted = await evidence.download(officer(UNIT), tracking_id, OTHER_FILE_ID)
    with pytest.raises(EvidenceCorrupted):
        await read_all(corrupted)

    answers = listing.SerializeToString() + b"".join(
        m.SerializeToString() for m in downloaded.written
    )
    assert _leaks(answers.decode("latin-1")) == []
    assert _leaks(repr(log.entries)) == [] and len(log.entries) == 2
    assert caplog.records, "the corrupted file was logged"
    assert _leaks(" ".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)) == []


class FakeComplaints:
    """Answers with the whole document, as if the projection were ignored."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.projections: list[dict[str, Any]] = []

    async def find_one(self, query: dict[str, Any], projection: dict[str, Any]) -> dict[str, Any]:
        self.projections.append(projection)
        return self.doc


async def test_the_catalog_never_reads_the_reporters_file_name() -> None:
    at = datetime(2026, 11, 2, 9, tzinfo=UTC)
    complaints = FakeComplaints(
        {
            "_id": "7K3M-9QX2-DAC",
            "institution": {"id": UNIT},
            "reporter": {"sealed": "not for officers"},
            "evidence": [
                {
                    "id": FILE_ID,
                    "name": REPORTERS_NAME,
                    "type": "image/jpeg",
                    "size": 9,
                    "sha256": "ab",
                    "at": at,
                },
                {
                    "id": OTHER_FILE_ID,
                    "name": "surat_budi.pdf",
                    "type": "application/pdf",
                    "size": 3,
                    "sha256": "cd",
                    "at": at,
                },
            ],
        }
    )
    catalog = MongoEvidenceCatalog({"evidence.files": None, "evidence.chunks": None}, complaints)  # type: ignore[arg-type]
    report = await catalog.report("7K3M-9QX2-DAC")
    assert report is not None
    assert [i.file_name for i in report.items] == [
        f"lampiran-{FILE_ID}.jpg",
        f"lampiran-{OTHER_FILE_ID}.pdf",
    ]
    (projection,) = complaints.projections
    assert "evidence" not in projection and "evidence.name" not in projection
    assert not any(k.startswith("reporter") for k in projection)
    assert all(v == 1 for v in projection.values())  # an inclusion: nothing else comes back

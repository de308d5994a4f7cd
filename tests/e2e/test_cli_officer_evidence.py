"""`lapor officer evidence list|get` run as a process against the running services: a
reporter uploads a photo and a multi-chunk PDF, the holding institution's officer lists and
downloads them through the CLI (bytes and SHA-256 equal the upload), an existing file is
kept unless --force, another institution's officer gets NOT_FOUND, and intake's address
comes from --intake, LAPOR_INTAKE_ADDR or data/stack.json. The reporter named the files after
themselves; the officer sees and saves them as ``lampiran-<evidence id>.<ext>`` only."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from lapor.v1 import intake_pb2, reporter_pb2_grpc
from pymongo import MongoClient

from services.stack.supervisor import Stack, free_port
from tests.e2e.conftest import SECRETS
from tests.e2e.officer_support import Officers
from tests.e2e.test_cli_officer import Cli, cli
from tests.e2e.test_reporter_evidence import tiny_jpeg, tiny_pdf, upload
from tests.support import eventually, intake_stub, marker, submit_request

__all__ = ["cli"]  # the fixture, shared with test_cli_officer

FOREIGN = "pemda-51.71/dpupr"
HEADER = ["EVIDENCE ID", "FILE NAME", "CONTENT TYPE", "SIZE", "SHA-256", "UPLOADED AT"]
# What the reporter named their files: their name and number.
PHOTO_NAME = "KTP_Ni_Luh_Ayu_0812345098.jpg"
PDF_NAME = "Surat_Ni_Luh_Ayu.pdf"
NAME_PARTS = (PHOTO_NAME, PDF_NAME, "KTP_", "Ni_Luh", "Luh_Ayu", "0812345098")


@dataclass(frozen=True)
class File:
    evidence_id: str
    name: str  # the reporter's
    content_type: str
    extension: str  # of the sniffed type
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def officer_name(self) -> str:
        return f"lampiran-{self.evidence_id}.{self.extension}"


@dataclass(frozen=True)
class Case:
    tracking_id: str
    holder: str
    photo: File
    pdf: File


@pytest.fixture(scope="module")
def case(stack: Stack, cli: Cli) -> Case:
    address = stack.services["intake"].grpc_address
    channel, intake = intake_stub(address)
    with channel:
        reply = intake.SubmitComplaint(
            submit_request(
                title=f"Jalan berlubang {marker()}",
                body="Jalan Cipto rusak parah dan berlubang besar, dua motor jatuh minggu ini.",
                region_code="51.08",
                reporter=intake_pb2.ReporterContact(name="Ni Luh Ayu", phone="+6281234509876"),
            ),
            timeout=10,
        )
    files = []
    with grpc.insecure_channel(address) as plain:
        reporter = reporter_pb2_grpc.ReporterServiceStub(plain)
        for name, ctype, ext, data in (
            (PHOTO_NAME, "image/jpeg", "jpg", tiny_jpeg()),
            (PDF_NAME, "application/pdf", "pdf", tiny_pdf(600_000)),  # several 256 KiB pieces
        ):
            receipt = upload(reporter, reply.tracking_id, reply.follow_up_code, name, ctype, data)
            assert receipt.evidence.file_name == name  # the reporter sees their own name
            files.append(File(receipt.evidence.evidence_id, name, ctype, ext, data))
    with Officers(stack) as api:
        holder = api.routed(reply.tracking_id).institution.id
    assert holder.startswith("pemda-51.08/")
    found = Case(reply.tracking_id, holder, *files)

    def visible() -> bool:  # intake learns the holder from routing's events
        return (
            cli("officer", "evidence", "list", found.tracking_id, "--dev-as", holder).returncode
            == 0
        )

    eventually(visible, what=f"intake to learn the holder of {found.tracking_id}")
    return found


def _field(output: str, label: str) -> str:
    match = re.search(rf"^{label}\s*: (.*)$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def _saved(output: str, file: File, path: str) -> None:
    assert _field(output, "Saved to") == path
    assert _field(output, "Size") == f"{len(file.data)} bytes"
    assert _field(output, "SHA-256").split()[0] == file.sha256
    assert _field(output, "File").startswith(f"{file.officer_name} (")
    assert file.evidence_id in _field(output, "File")
    _no_reporters_name(output)


def _no_reporters_name(*texts: str) -> None:
    assert [p for p in NAME_PARTS for t in texts if p in t] == []


def test_the_holder_lists_and_downloads_through_the_cli(
    cli: Cli, case: Case, tmp_path: Path
) -> None:
    me = ("--dev-as", case.holder)
    result = cli("officer", "evidence", "list", case.tracking_id, *me)
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert re.split(r"\s{2,}", header) == HEADER
    rows = [re.split(r"\s{2,}", line) for line in lines]
    assert [row[:5] for row in rows] == [
        [f.evidence_id, f.officer_name, f.content_type, str(len(f.data)), f.sha256[:12]]
        for f in (case.photo, case.pdf)
    ]
    _no_reporters_name(result.stdout, result.stderr)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", row[5]) for row in rows), rows
    total = len(case.photo.data) + len(case.pdf.data)
    assert result.stderr == f"2 files, {total} bytes in all\n"

    # Default target: intake's neutral name, in the current directory.
    work = tmp_path / "work"
    work.mkdir()
    got = cli.ok("officer", "evidence", "get", case.tracking_id, case.photo.evidence_id, *me, cwd=work)  # fmt: skip
    _saved(got, case.photo, case.photo.officer_name)
    assert (work / case.photo.officer_name).read_bytes() == case.photo.data
    # Options before the subcommands, and an explicit file.
    out = tmp_path / "laporan.pdf"
    got = cli.ok(
        "officer", *me, "evidence", "get", case.tracking_id, case.pdf.evidence_id, "--out", str(out),
        cwd=work,
    )  # fmt: skip
    _saved(got, case.pdf, str(out))
    assert hashlib.sha256(out.read_bytes()).hexdigest() == case.pdf.sha256
    assert out.read_bytes() == case.pdf.data
    # An existing directory receives intake's name.
    folder = tmp_path / "folder"
    folder.mkdir()
    got = cli.ok("officer", "evidence", "get", case.tracking_id, case.pdf.evidence_id, "--out", str(folder), *me)  # fmt: skip
    _saved(got, case.pdf, str(folder / case.pdf.officer_name))
    assert (folder / case.pdf.officer_name).read_bytes() == case.pdf.data
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["folder", "laporan.pdf", case.photo.officer_name, case.pdf.officer_name, "work"]
    )


def test_an_existing_file_is_kept_unless_force(
    cli: Cli,
    case: Case,
    tmp_path: Path,
    mongo: MongoClient,  # type: ignore[type-arg]
) -> None:
    me = ("--dev-as", case.holder)
    get = ("officer", "evidence", "get", case.tracking_id, case.photo.evidence_id, *me)
    audit = mongo["lapor_intake"]["evidence_downloads"]
    recorded = audit.count_documents({"evidence_id": case.photo.evidence_id})
    mine = tmp_path / case.photo.officer_name
    mine.write_bytes(b"my own photo")
    refused = cli.refused(*get, cwd=tmp_path)
    assert refused.startswith(f"error: {mine.name} exists") and "--force" in refused, refused
    other = tmp_path / "other.jpg"
    other.write_bytes(b"another")
    refused = cli.refused(*get, "--out", str(other), cwd=tmp_path)
    assert refused.startswith(f"error: {other} exists") and "--force" in refused, refused
    assert mine.read_bytes() == b"my own photo" and other.read_bytes() == b"another"
    # Refused before asking: intake recorded no download.
    assert audit.count_documents({"evidence_id": case.photo.evidence_id}) == recorded

    _saved(cli.ok(*get, "--force", cwd=tmp_path), case.photo, mine.name)
    assert mine.read_bytes() == case.photo.data
    _saved(cli.ok(*get, "--out", str(other), "--force"), case.photo, str(other))
    assert other.read_bytes() == case.photo.data
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [mine.name, "other.jpg"]
    )  # no .part


def test_another_institutions_officer_gets_not_found(cli: Cli, case: Case, tmp_path: Path) -> None:
    # The holder sees the report (the case fixture waited for it); others do not.
    for credentials in (
        ("--dev-as", FOREIGN),
        ("--dev-as", "pemda-51.71", "--role", "institution_admin"),
    ):
        listed = cli("officer", "evidence", "list", case.tracking_id, *credentials)
        assert listed.returncode != 0 and listed.stdout == ""
        assert listed.stderr.startswith("error: NOT_FOUND: tracking_id: "), listed.stderr
        got = cli(
            "officer", "evidence", "get", case.tracking_id, case.photo.evidence_id, *credentials,
            cwd=tmp_path,
        )  # fmt: skip
        assert got.returncode != 0 and got.stdout == ""
        assert got.stderr.startswith("error: NOT_FOUND: tracking_id: "), got.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written

    # The holder asking for a file the report does not have.
    missing = cli.refused(
        "officer", "evidence", "get", case.tracking_id, "65f0c0ffee0000000000ffff",
        "--dev-as", case.holder, cwd=tmp_path,
    )  # fmt: skip
    assert missing.startswith("error: NOT_FOUND: evidence_id: "), missing
    bad = cli.refused(
        "officer", "evidence", "get", case.tracking_id, "nope", "--dev-as", case.holder
    )
    assert bad.startswith("error: INVALID_ARGUMENT: "), bad
    assert list(tmp_path.iterdir()) == []


def test_intakes_address_from_flag_environment_or_stack_json(
    stack: Stack, cli: Cli, case: Case, tmp_path: Path
) -> None:
    intake = stack.services["intake"].grpc_address
    down = f"127.0.0.1:{free_port()}"
    listing = ("officer", "evidence", "list", case.tracking_id, "--dev-as", case.holder)

    # data/stack.json (the fixture's) is overridden by LAPOR_INTAKE_ADDR ...
    refused = cli.refused(*listing, env={"LAPOR_INTAKE_ADDR": down})
    assert refused.startswith("error: UNAVAILABLE: ")
    assert f"(is intake running at {down}?)" in refused
    # ... which --intake overrides, after the subcommand or before `officer`.
    env = {"LAPOR_INTAKE_ADDR": down}
    assert case.photo.evidence_id in cli.ok(*listing, "--intake", intake, env=env)
    assert case.photo.evidence_id in cli.ok("--intake", intake, *listing, env=env)

    # Without a stack.json (only the development secret for --dev-as).
    bare = tmp_path / "data"
    bare.mkdir()
    (bare / "secrets.json").write_text(json.dumps(SECRETS))
    elsewhere = Cli(bare)
    assert case.pdf.evidence_id in elsewhere.ok(*listing, env={"LAPOR_INTAKE_ADDR": intake})
    assert elsewhere.refused(*listing, "--intake", down).startswith("error: UNAVAILABLE: ")

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "secrets.json").write_text(json.dumps(SECRETS))
    (broken / "stack.json").write_text(json.dumps({"routing_grpc": "127.0.0.1:1"}))
    unreadable = Cli(broken).refused(*listing)
    assert unreadable.startswith("error: cannot read intake's address from "), unreadable

"""`lapor officer evidence get` writing a DownloadEvidence stream (services/cli/
officer_evidence.py): the target path from intake's neutral name (never the reporter's), no
overwriting without --force, and no file left behind when the bytes do not match the metadata
or the stream breaks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from lapor.v1 import evidence_pb2, reporter_pb2

from services.cli.connection import CliError
from services.cli.officer_evidence import print_listing, safe_file_name, save
from services.intake.officer_evidence_names import officer_file_name

DATA = b"%PDF-1.4 " + bytes(range(256)) * 40
EVIDENCE_ID = "65f0c0ffee0000000000aaaa"
NAME = officer_file_name(EVIDENCE_ID, "application/pdf")  # what intake sends officers


def stream(
    data: bytes = DATA,
    *,
    name: str = NAME,
    size: int | None = None,
    sha256: str | None = None,
    piece: int = 1000,
) -> list[evidence_pb2.EvidenceDownloadChunk]:
    meta = reporter_pb2.Evidence(
        evidence_id=EVIDENCE_ID,
        file_name=name,
        content_type="application/pdf",
        size_bytes=len(data) if size is None else size,
        sha256=hashlib.sha256(data).hexdigest() if sha256 is None else sha256,
    )
    return [evidence_pb2.EvidenceDownloadChunk(evidence=meta)] + [
        evidence_pb2.EvidenceDownloadChunk(data=data[i : i + piece])
        for i in range(0, len(data), piece)
    ]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_intakes_neutral_name_in_the_current_directory(tmp_path: Path) -> None:
    saved = save(stream(), None, False)
    assert saved.path == Path(NAME) == Path(f"lampiran-{EVIDENCE_ID}.pdf")
    assert (saved.size, saved.sha256) == (len(DATA), hashlib.sha256(DATA).hexdigest())
    assert (tmp_path / NAME).read_bytes() == DATA
    (tmp_path / "bukti").mkdir()  # an existing directory receives the same name
    assert save(stream(), str(tmp_path / "bukti"), False).path == tmp_path / "bukti" / NAME


def test_the_listing_shows_intakes_names(capsys: pytest.CaptureFixture[str]) -> None:
    first = stream()[0].evidence
    print_listing(evidence_pb2.ListEvidenceResponse(evidence=[first], evidence_bytes=len(DATA)))
    out = capsys.readouterr().out
    assert NAME in out.splitlines()[1]


# Intake's names are plain; a server sending anything else still cannot place the file elsewhere.
@pytest.mark.parametrize(
    ("stored", "plain"),
    [
        ("../../etc/passwd", "passwd"),
        ("/tmp/x/foto.jpg", "foto.jpg"),
        ("C:\\Users\\ayu\\foto.jpg", "foto.jpg"),
        ("..foto.jpg", "..foto.jpg"),
    ],
)
def test_a_path_in_the_stored_name_is_reduced_to_its_last_part(
    tmp_path: Path, stored: str, plain: str
) -> None:
    assert safe_file_name(stored) == plain
    saved = save(stream(name=stored), None, False)
    assert saved.path == Path(plain)
    assert [p.name for p in tmp_path.iterdir()] == [plain]


@pytest.mark.parametrize("stored", ["", "  ", ".", "..", "a/..", "foto/", "x\x1b[2J.jpg", "a\x00b"])
def test_unusable_stored_names_are_refused(tmp_path: Path, stored: str) -> None:
    with pytest.raises(CliError, match="--out PATH"):
        save(stream(name=stored), None, False)
    assert list(tmp_path.iterdir()) == []
    out = tmp_path / "chosen.pdf"  # an explicit file does not need the stored name
    assert save(stream(name=stored), str(out), False).path == out
    assert out.read_bytes() == DATA


def test_an_existing_file_is_kept_unless_force(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"mine")
    with pytest.raises(CliError, match=rf"{NAME} exists; pass --force"):
        save(stream(), None, False)
    assert (tmp_path / NAME).read_bytes() == b"mine"
    save(stream(), None, True)
    assert (tmp_path / NAME).read_bytes() == DATA
    assert [p.name for p in tmp_path.iterdir()] == [NAME]


@pytest.mark.parametrize(
    "wrong",
    [
        {"sha256": hashlib.sha256(b"other").hexdigest()},
        {"size": len(DATA) + 1},
        {"size": len(DATA) - 1},  # more bytes than announced: stopped early
    ],
)
@pytest.mark.parametrize("force", [False, True])
def test_a_mismatch_deletes_the_partial_file(
    tmp_path: Path, wrong: dict[str, object], force: bool
) -> None:
    with pytest.raises(CliError, match=r"was deleted"):
        save(stream(**wrong), str(tmp_path / "out.pdf"), force)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_a_forced_download_that_fails_leaves_the_existing_file(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"mine")
    with pytest.raises(CliError, match="does not match"):
        save(stream(sha256="0" * 64), None, True)
    assert [p.name for p in tmp_path.iterdir()] == [NAME]
    assert (tmp_path / NAME).read_bytes() == b"mine"


def test_an_error_in_the_middle_of_the_stream_deletes_the_partial_file(tmp_path: Path) -> None:
    class Broken(Exception):
        pass

    def broken() -> Iterator[evidence_pb2.EvidenceDownloadChunk]:
        first, second, *_ = stream()
        yield first
        yield second
        raise Broken

    for force in (False, True):
        with pytest.raises(Broken):
            save(broken(), None, force)
        assert list(tmp_path.iterdir()) == []


def test_the_metadata_must_come_first_and_only_once(tmp_path: Path) -> None:
    first, *data = stream()
    with pytest.raises(CliError, match="metadata first"):
        save(data, None, False)
    with pytest.raises(CliError, match="metadata first"):
        save([], None, False)
    with pytest.raises(CliError, match="twice"):
        save([first, data[0], first, *data[1:]], None, False)
    assert list(tmp_path.iterdir()) == []

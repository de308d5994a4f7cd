"""`lapor officer evidence get` writing a DownloadEvidence stream (services/cli/
officer_evidence.py): the target path from the stored name, no overwriting without --force,
and no file left behind when the bytes do not match the metadata or the stream breaks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from lapor.v1 import evidence_pb2, reporter_pb2

from services.cli.connection import CliError
from services.cli.officer_evidence import safe_file_name, save

DATA = b"%PDF-1.4 " + bytes(range(256)) * 40


def stream(
    data: bytes = DATA,
    *,
    name: str = "surat.pdf",
    size: int | None = None,
    sha256: str | None = None,
    piece: int = 1000,
) -> list[evidence_pb2.EvidenceDownloadChunk]:
    meta = reporter_pb2.Evidence(
        evidence_id="65f0c0ffee0000000000aaaa",
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


def test_the_stored_name_in_the_current_directory(tmp_path: Path) -> None:
    saved = save(stream(), None, False)
    assert saved.path == Path("surat.pdf")
    assert (saved.size, saved.sha256) == (len(DATA), hashlib.sha256(DATA).hexdigest())
    assert (tmp_path / "surat.pdf").read_bytes() == DATA


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
    (tmp_path / "surat.pdf").write_bytes(b"mine")
    with pytest.raises(CliError, match=r"surat.pdf exists; pass --force"):
        save(stream(), None, False)
    assert (tmp_path / "surat.pdf").read_bytes() == b"mine"
    save(stream(), None, True)
    assert (tmp_path / "surat.pdf").read_bytes() == DATA
    assert [p.name for p in tmp_path.iterdir()] == ["surat.pdf"]


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
    (tmp_path / "surat.pdf").write_bytes(b"mine")
    with pytest.raises(CliError, match="does not match"):
        save(stream(sha256="0" * 64), None, True)
    assert [p.name for p in tmp_path.iterdir()] == ["surat.pdf"]
    assert (tmp_path / "surat.pdf").read_bytes() == b"mine"


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

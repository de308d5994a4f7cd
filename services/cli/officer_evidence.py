"""`lapor officer evidence`: the reporter's files, from intake's EvidenceService
(protos/lapor/v1/evidence.proto, docs/officers-api.md "Evidence from the reporter").

    lapor officer evidence list TRACKING_ID
    lapor officer evidence get TRACKING_ID EVIDENCE_ID [--out PATH] [--force]

`get` writes only to the path it was given (or, by default, the file name intake gives, reduced
to its last component, in the current directory), never over an existing file without --force,
and keeps the file only when its size and SHA-256 equal the metadata intake sent first. That
name is intake's neutral one, `lampiran-<evidence id>.<extension of the sniffed type>`
(services/intake/officer_evidence_names.py): officers never get the name the reporter gave the
file, which may carry who they are.
Credentials and errors as every `lapor officer` subcommand (services/cli/officer.py).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
from lapor.v1 import evidence_pb2, evidence_pb2_grpc, reporter_pb2

from services.cli.connection import CliError

SHA_PREFIX = 12  # hex characters of the digest shown by `list`
LIST_TIMEOUT_SECONDS = 10
DOWNLOAD_TIMEOUT_SECONDS = 600  # the whole stream: a short video over a slow link


def add_parser(cmds: Any, connection_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register `evidence list|get` on `lapor officer`'s subcommands."""
    evidence = cmds.add_parser(
        "evidence",
        help="the reporter's files (from intake): list, get",
        description="The files the reporter attached, from intake's EvidenceService, with "
        "the same credentials as the other subcommands. Intake's address: --intake, "
        "LAPOR_INTAKE_ADDR, data/stack.json, else 127.0.0.1:50051.",
    )
    connection_options(evidence)
    sub = evidence.add_subparsers(dest="evidence_command", required=True, metavar="COMMAND")

    ls = sub.add_parser(
        "list",
        help="the report's files, oldest first",
        description="The report's files, oldest first: evidence id, file name (intake's "
        "neutral lampiran-<evidence id>.<ext>, never the reporter's), content type (sniffed by "
        "intake), size in bytes, the start of the SHA-256, uploaded at.",
    )
    ls.add_argument("tracking_id")
    connection_options(ls)

    get = sub.add_parser(
        "get",
        help="download one file, checking its size and SHA-256",
        description="Download one file (every download is recorded by intake). It is kept "
        "only if its size and SHA-256 equal what intake recorded at upload; otherwise the "
        "partial file is deleted and the command exits 2.",
    )
    get.add_argument("tracking_id")
    get.add_argument("evidence_id", help="as `evidence list` shows it")
    get.add_argument(
        "--out",
        metavar="PATH",
        default=None,
        help="where to write the file; an existing directory receives intake's file name "
        "(default: intake's file name, lampiran-<evidence id>.<ext>, in the current directory)",
    )
    get.add_argument("--force", action="store_true", help="overwrite an existing file")
    connection_options(get)


# --- list --------------------------------------------------------------------------------


def _printable(text: str) -> str:
    """Text from the server on the terminal: no control or format characters."""
    return "".join("?" if unicodedata.category(ch).startswith("C") else ch for ch in text)


def _fmt(ts: Any) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    return str(ts.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC"))


def _cell(text: str, width: int = 40) -> str:
    text = " ".join(_printable(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def print_listing(reply: evidence_pb2.ListEvidenceResponse) -> None:
    if not reply.evidence:
        print("no evidence")
        return
    header = ("EVIDENCE ID", "FILE NAME", "CONTENT TYPE", "SIZE", "SHA-256", "UPLOADED AT")
    rows = [
        (
            e.evidence_id,
            _cell(e.file_name) or "-",
            _cell(e.content_type) or "-",
            str(e.size_bytes),
            e.sha256[:SHA_PREFIX] or "-",
            _fmt(e.uploaded_at),
        )
        for e in reply.evidence
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
    count = len(reply.evidence)
    print(
        f"{count} file{'' if count == 1 else 's'}, {reply.evidence_bytes} bytes in all",
        file=sys.stderr,
    )


# --- get ---------------------------------------------------------------------------------


def safe_file_name(stored: str) -> str:
    """The name intake gave reduced to its last path component (either separator), refusing
    what cannot be a plain file name here: empty, `.`, `..`, control characters. Intake's
    names are plain already; this guards against a server that sends something else."""
    name = os.path.basename(stored.replace("\\", "/")).strip()
    if not name or set(name) == {"."} or _printable(name) != name:
        raise CliError(
            f"the file name intake gave, {_printable(stored)!r}, cannot be used as a file "
            "name here; give --out PATH"
        )
    return name


def target_path(out: str | None, stored_name: str) -> Path:
    if out is None:
        return Path(safe_file_name(stored_name))
    path = Path(out)
    if path.is_dir():
        return path / safe_file_name(stored_name)
    return path


@dataclass(frozen=True)
class Saved:
    path: Path
    size: int
    sha256: str
    evidence: reporter_pb2.Evidence


def _exists_message(path: Path) -> str:
    return f"{path} exists; pass --force to overwrite it, or --out PATH"


def save(
    chunks: Iterable[evidence_pb2.EvidenceDownloadChunk], out: str | None, force: bool
) -> Saved:
    """Write a DownloadEvidence stream (metadata first, then bytes) to the target path.

    Without `force` the target is created exclusively (an existing file or symlink is
    refused before any byte is written); with `force` the bytes go to a temporary file next
    to it that replaces the target only once complete and checked, so a failed download
    leaves an existing file as it was. Whatever goes wrong (size or SHA-256 mismatch, an
    error in the middle of the stream, an interrupt), the partial file is deleted."""
    stream: Iterator[evidence_pb2.EvidenceDownloadChunk] = iter(chunks)
    first = next(stream, None)
    if first is None or first.WhichOneof("part") != "evidence":
        raise CliError("intake did not send the file's metadata first")
    meta = first.evidence
    path = target_path(out, meta.file_name)
    written = path
    try:
        if force:
            fd, temporary = tempfile.mkstemp(
                dir=path.parent, prefix=f".{path.name}.", suffix=".part"
            )
            written = Path(temporary)
            file: IO[bytes] = os.fdopen(fd, "wb")
        else:
            file = open(path, "xb")  # noqa: SIM115 - closed below, deleted on failure
    except FileExistsError:
        raise CliError(_exists_message(path)) from None
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None

    digest, size = hashlib.sha256(), 0
    try:
        with file:
            for chunk in stream:
                if chunk.WhichOneof("part") != "data":
                    raise CliError("intake sent the file's metadata twice; the file was deleted")
                size += len(chunk.data)
                if size > meta.size_bytes:  # do not let a wrong answer fill the disk
                    raise CliError(
                        f"intake sent more than the {meta.size_bytes} bytes the metadata "
                        f"announced; the partial file {path} was deleted"
                    )
                digest.update(chunk.data)
                file.write(chunk.data)
        got = digest.hexdigest()
        if size != meta.size_bytes or got != meta.sha256.lower():
            raise CliError(
                f"the file received does not match its metadata: {size} bytes, SHA-256 {got}; "
                f"expected {meta.size_bytes} bytes, SHA-256 {meta.sha256}. "
                f"The partial file {path} was deleted"
            )
        if written != path:
            os.replace(written, path)
    except BaseException as exc:
        written.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return Saved(path, size, got, meta)


def _refuse_early(
    stub: evidence_pb2_grpc.EvidenceServiceStub, args: argparse.Namespace, metadata: Any
) -> None:
    """A target that cannot be written is refused before the download is asked for: intake
    records every download, and a refused one should not be among them. When the target's
    name is intake's, it is learnt from the listing first."""
    if args.force:
        return
    out: str | None = args.out
    if out is not None and not Path(out).is_dir():
        path = Path(out)
        if path.exists() or path.is_symlink():
            raise CliError(_exists_message(path))
        if not path.parent.is_dir():
            raise CliError(f"cannot write {path}: no directory {path.parent}")
        return
    reply = stub.ListEvidence(
        evidence_pb2.ListEvidenceRequest(tracking_id=args.tracking_id),
        metadata=metadata,
        timeout=LIST_TIMEOUT_SECONDS,
    )
    for item in reply.evidence:
        if item.evidence_id == args.evidence_id:
            path = target_path(out, item.file_name)
            if path.exists() or path.is_symlink():
                raise CliError(_exists_message(path))
    # Not listed: DownloadEvidence answers NOT_FOUND itself.


def call(args: argparse.Namespace, channel: grpc.Channel, metadata: Any) -> None:
    stub = evidence_pb2_grpc.EvidenceServiceStub(channel)
    if args.evidence_command == "list":
        reply = stub.ListEvidence(
            evidence_pb2.ListEvidenceRequest(tracking_id=args.tracking_id),
            metadata=metadata,
            timeout=LIST_TIMEOUT_SECONDS,
        )
        print_listing(reply)
        return
    _refuse_early(stub, args, metadata)
    stream = stub.DownloadEvidence(
        evidence_pb2.DownloadEvidenceRequest(
            tracking_id=args.tracking_id, evidence_id=args.evidence_id
        ),
        metadata=metadata,
        timeout=DOWNLOAD_TIMEOUT_SECONDS,
    )
    try:
        saved = save(stream, args.out, args.force)
    finally:
        stream.cancel()  # a no-op once the stream is complete
    e = saved.evidence
    print(f"Saved to    : {saved.path}")
    print(f"File        : {_printable(e.file_name)} ({e.content_type}), evidence {e.evidence_id}")
    print(f"Size        : {saved.size} bytes")
    print(f"SHA-256     : {saved.sha256} (equal to intake's record)")

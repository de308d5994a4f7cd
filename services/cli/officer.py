"""`lapor officer`: institution officers and admins handle reports through routing's
OfficerService and AdminService (protos/lapor/v1/officer.proto, docs/officers-api.md).

    lapor officer list [--status S] [--colour C] [--overdue] [--topic T]
                       [--page-size N] [--page-token X]
    lapor officer show TRACKING_ID
    lapor officer accept|forward|decline|respond|request-info|set-class|follow-up|resolve ...
    lapor officer queue|verify|defer|not-authority|archive ...        (national admins)
    lapor officer evidence list TRACKING_ID                           (intake's EvidenceService)
    lapor officer evidence get TRACKING_ID EVIDENCE_ID [--out PATH] [--force]

Every call carries `authorization: Bearer <JWT>`: from --token or LAPOR_OFFICER_TOKEN; or,
on the embedded development stack only, minted by --dev-as INSTITUTION [--role R] from
data/secrets.json. Routing's address comes from --routing, LAPOR_ROUTING_ADDR or
data/stack.json; intake's (for `evidence`, services/cli/officer_evidence.py) from --intake,
LAPOR_INTAKE_ADDR or data/stack.json. A refused call prints `error: CODE: message` on stderr
and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import grpc
from lapor.v1 import common_pb2, officer_pb2, officer_pb2_grpc

from services.cli import officer_evidence
from services.cli.connection import (
    CliError,
    data_dir,
    intake_address,
    open_channel,
    routing_address,
)

ROLES = ("officer", "institution_admin", "national_admin")
STATES = (
    "in_verification", "deferred", "assigned", "in_progress", "awaiting_reporter", "resolved",
    "closed", "archived",
)  # fmt: skip
HANDLING_CLASSES = ("information_request", "complaint", "dispute", "field_inspection")
COLOURS = {
    "red": common_pb2.STATUS_COLOUR_RED,
    "yellow": common_pb2.STATUS_COLOUR_YELLOW,
    "green": common_pb2.STATUS_COLOUR_GREEN,
}
DEV_SUBJECT = "dev-cli"
DEV_TOKEN_TTL_SECONDS = 600

# The state machine's action names (Report.allowed_actions, history) -> this command's
# subcommands, so `show` can say what to type next.
SUBCOMMAND_OF_ACTION = {
    "accepted": "accept",
    "forwarded": "forward",
    "declined": "decline",
    "responded": "respond",
    "info_requested": "request-info",
    "handling_class_set": "set-class",
    "followed_up": "follow-up",
    "resolved": "resolve",
    "verified": "verify",
    "deferred": "defer",
    "not_authority": "not-authority",
    "archived": "archive",
}


# --- arguments ---------------------------------------------------------------------------


def _connection_options(
    parser: argparse.ArgumentParser, *, leaf: bool, routing: bool = True, intake: bool = False
) -> None:
    """The same options on `lapor officer` and on each of its subcommands, so both
    `lapor officer --dev-as X list` and `lapor officer list --dev-as X` work (a subcommand
    sets only what it was given). `--intake` (for `evidence`) never has a default here: the
    top-level `lapor --intake` owns it."""
    default: Any = argparse.SUPPRESS if leaf else None
    group = parser.add_argument_group("connection and credentials")
    if routing:
        group.add_argument(
            "--routing",
            default=default,
            help="routing's gRPC address host:port (default: LAPOR_ROUTING_ADDR, else "
            "data/stack.json of `make run`, else 127.0.0.1:50052)",
        )
    if intake:
        group.add_argument(
            "--intake",
            default=argparse.SUPPRESS,
            help="intake's gRPC address host:port, for `evidence` (default: "
            "LAPOR_INTAKE_ADDR, else data/stack.json of `make run`, else 127.0.0.1:50051)",
        )
    group.add_argument(
        "--token",
        default=default,
        help="the officer's or admin's signed JWT (default: LAPOR_OFFICER_TOKEN; prefer the "
        "variable: a flag shows in the process list and the shell history)",
    )
    group.add_argument(
        "--dev-as",
        metavar="INSTITUTION_ID",
        default=default,
        help="DEVELOPMENT ONLY: mint a short-lived token for this institution from the "
        "embedded stack's data/secrets.json (`make run`); never works against a real "
        "deployment, whose tokens come from its identity provider",
    )
    group.add_argument(
        "--role",
        choices=ROLES,
        default=default,
        help="DEVELOPMENT ONLY, with --dev-as: the role of the minted token (default officer)",
    )


def _action(
    sub: Any, name: str, help_text: str, rpc: str, *, admin: bool = False
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    p.add_argument("tracking_id")
    p.add_argument(
        "--expected-version",
        type=int,
        default=0,
        help="act only if the report's version is still this one (from `show`); "
        "0: act on whatever is current",
    )
    _connection_options(p, leaf=True)
    p.set_defaults(officer_rpc=rpc, officer_admin=admin)
    return p


def add_parser(sub: Any) -> None:
    """Register `lapor officer` on the top-level subparsers."""
    officer = sub.add_parser(
        "officer",
        help="handle reports as an institution officer or admin",
        description="Handle reports as an institution officer or admin, through routing's "
        "OfficerService and AdminService (docs/officers-api.md).",
        epilog="Credentials: --token or LAPOR_OFFICER_TOKEN. On the embedded development "
        "stack only, --dev-as INSTITUTION_ID [--role ...] mints a token from data/secrets.json.",
    )
    _connection_options(officer, leaf=False, intake=True)
    cmds = officer.add_subparsers(dest="officer_command", required=True, metavar="COMMAND")

    ls = cmds.add_parser(
        "list",
        help="the institution's reports, nearest deadline first",
        description="The reports your institution (and its units) holds, nearest deadline first.",
    )
    ls.add_argument("--status", choices=STATES, default="", help="only reports in this state")
    ls.add_argument("--colour", choices=sorted(COLOURS), default="", help="only this colour")
    ls.add_argument("--overdue", action="store_true", help="only reports past a deadline")
    ls.add_argument("--topic", default="", help="only this topic, e.g. jalan, adminduk")
    ls.add_argument("--page-size", type=int, default=20, help="1..100 (default 20)")
    ls.add_argument("--page-token", default="", help="the token printed after the last page")
    _connection_options(ls, leaf=True)

    show = cmds.add_parser(
        "show", help="one report with its deadlines and history", description="One report."
    )
    show.add_argument("tracking_id")
    _connection_options(show, leaf=True)

    _action(cmds, "accept", "take the report on (assigned -> in_progress)", "Accept")
    p = _action(
        cmds,
        "forward",
        "disposisi: forward to one of your units or to another institution",
        "Forward",
    )
    p.add_argument("--to", required=True, metavar="INSTITUTION_ID", help="target institution")
    p.add_argument(
        "--reason", default="", help="required when the target is outside your institution"
    )
    p = _action(
        cmds, "decline", "not our authority: back to the national verification queue", "Decline"
    )
    p.add_argument("--reason", required=True)
    for name, help_text, rpc in (
        ("respond", "the first response to the reporter", "Respond"),
        ("request-info", "ask the reporter for more information", "RequestInformation"),
        ("follow-up", "post a follow-up (tindak lanjut)", "PostFollowUp"),
    ):
        p = _action(cmds, name, help_text, rpc)
        p.add_argument(
            "--text",
            required=True,
            help="shown to the reporter (1..4000 characters); - reads stdin",
        )
    p = _action(
        cmds,
        "set-class",
        "set the handling class (decides the resolution deadline)",
        "SetHandlingClass",
    )
    p.add_argument("--class", dest="handling_class", required=True, choices=HANDLING_CLASSES)
    p = _action(cmds, "resolve", "resolve with the resolution text and evidence", "Resolve")
    p.add_argument(
        "--text", required=True, help="the resolution (1..4000 characters); - reads stdin"
    )
    p.add_argument(
        "--evidence",
        action="append",
        default=[],
        metavar="REF",
        help="a reference to an evidence file (repeatable, at most 20)",
    )

    q = cmds.add_parser(
        "queue",
        help="national admins: the verification queue, oldest first",
        description="National admins: the reports waiting in the verification queue.",
    )
    q.add_argument(
        "--status",
        choices=["in_verification", "deferred"],
        default="",
        help="default: both",
    )
    q.add_argument("--page-size", type=int, default=20)
    q.add_argument("--page-token", default="")
    _connection_options(q, leaf=True)
    p = _action(
        cmds,
        "verify",
        "national admins: send a queued report to an institution",
        "Verify",
        admin=True,
    )
    p.add_argument("--to", required=True, metavar="INSTITUTION_ID", help="target institution")
    p.add_argument("--reason", default="")
    for name, help_text, rpc in (
        ("defer", "national admins: defer (tunda) a queued report", "Defer"),
        ("not-authority", "national admins: no institution's authority", "MarkNotAuthority"),
        ("archive", "national admins: archive (spam, duplicate)", "Archive"),
    ):
        p = _action(cmds, name, help_text, rpc, admin=True)
        p.add_argument("--reason", required=True)

    officer_evidence.add_parser(
        cmds, lambda parser: _connection_options(parser, leaf=True, routing=False, intake=True)
    )


# --- connection and credentials ----------------------------------------------------------


def dev_token(institution: str, role: str) -> str:
    """A development token signed with the embedded stack's secret (as tests/e2e do)."""
    path = data_dir() / "secrets.json"
    if not path.exists():
        raise CliError(
            f"--dev-as needs the embedded development stack's {path} (written by `make run`); "
            "against a real deployment use --token or LAPOR_OFFICER_TOKEN"
        )
    try:
        secrets = json.loads(path.read_text())
        key, issuer = secrets["jwt_key"], secrets["jwt_issuer"]
    except (OSError, ValueError, KeyError) as exc:
        raise CliError(f"cannot read the development JWT secret from {path}: {exc!r}") from None
    from services.common.auth import issue_token

    return issue_token(
        key, issuer, DEV_SUBJECT, institution, role, ttl_seconds=DEV_TOKEN_TTL_SECONDS
    )


def bearer_token(args: argparse.Namespace) -> str:
    token, dev_as, role = args.token, args.dev_as, args.role
    if token and dev_as:
        raise CliError("give either --token or --dev-as, not both")
    if role and not dev_as:
        raise CliError("--role only applies with --dev-as (a real token carries its own role)")
    if token:
        return str(token)
    if dev_as:
        return dev_token(dev_as, role or "officer")
    if os.environ.get("LAPOR_OFFICER_TOKEN"):
        return os.environ["LAPOR_OFFICER_TOKEN"]
    raise CliError(
        "no credentials: pass --token or set LAPOR_OFFICER_TOKEN "
        "(embedded development stack only: --dev-as INSTITUTION_ID)"
    )


# --- requests ----------------------------------------------------------------------------


def _text(value: str) -> str:
    return sys.stdin.read().strip() if value == "-" else value


def _request(args: argparse.Namespace) -> Any:
    rpc, tid, version = args.officer_rpc, args.tracking_id, args.expected_version
    if rpc == "Accept":
        return officer_pb2.CaseActionRequest(tracking_id=tid, expected_version=version)
    if rpc in ("Forward", "Verify"):
        return officer_pb2.ForwardRequest(
            tracking_id=tid, expected_version=version, institution_id=args.to, reason=args.reason
        )
    if rpc in ("Decline", "Defer", "MarkNotAuthority", "Archive"):
        return officer_pb2.ReasonRequest(
            tracking_id=tid, expected_version=version, reason=args.reason
        )
    if rpc in ("Respond", "RequestInformation", "PostFollowUp"):
        return officer_pb2.TextRequest(
            tracking_id=tid, expected_version=version, text=_text(args.text)
        )
    if rpc == "SetHandlingClass":
        return officer_pb2.SetHandlingClassRequest(
            tracking_id=tid, expected_version=version, handling_class=args.handling_class
        )
    if rpc == "Resolve":
        return officer_pb2.ResolveRequest(
            tracking_id=tid, expected_version=version, text=_text(args.text), evidence=args.evidence
        )
    raise AssertionError(f"unknown rpc {rpc}")


# --- output ------------------------------------------------------------------------------


def _fmt(ts: Any, *, seconds: bool = True) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    return str(
        ts.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")
    )


def _colour(value: Any) -> str:
    return str(common_pb2.StatusColour.Name(value).removeprefix("STATUS_COLOUR_").lower())


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def print_table(reports: Any) -> None:
    header = ("TRACKING ID", "STATE", "COLOUR", "OVERDUE", "TOPIC", "NEXT DEADLINE", "TITLE")
    rows = [
        (
            r.tracking_id,
            r.state,
            _colour(r.colour),
            "yes" if r.overdue else "no",
            r.topic or "-",
            _fmt(r.next_due_at, seconds=False),
            _shorten(r.title, 60) or "-",
        )
        for r in reports
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())


def show_report(r: officer_pb2.Report) -> None:
    flags = "".join(
        f"  {flag}" for flag, on in (("OVERDUE", r.overdue), ("RESPONDED", r.responded)) if on
    )
    print(f"Tracking id : {r.tracking_id}")
    print(f"State       : {r.state} ({_colour(r.colour)}){flags}   version {r.version}")
    print(f"Institution : {r.institution.name or '-'} ({r.institution.id or '-'})")
    print(f"Title       : {r.title or '-'}")
    if r.body:
        body = textwrap.wrap(" ".join(r.body.split()), 86) or ["-"]
        print(f"Body        : {body[0]}")
        for line in body[1:]:
            print(f"              {line}")
    classification = common_pb2.Classification.Name(r.classification).removeprefix(
        "CLASSIFICATION_"
    )
    privacy = common_pb2.Privacy.Name(r.privacy).removeprefix("PRIVACY_")
    print(
        f"Region      : {r.region_code or '-'}   topic {r.topic or '-'}   "
        f"class {r.handling_class or '-'}   {classification.lower()}, {privacy.lower()}"
    )
    print(f"Received    : {_fmt(r.received_at)}")
    print(f"Next due    : {_fmt(r.next_due_at)}")
    if r.reopen_count:
        print(f"Reopened    : {r.reopen_count} times")
    if r.deadlines:
        print("Deadlines   :")
        for d in r.deadlines:
            print(f"  {d.clock:<15} {_fmt(d.due_at)}  {d.state}")
    if r.similar_reports:
        print(f"Similar     : {', '.join(r.similar_reports)}")
    allowed = [SUBCOMMAND_OF_ACTION.get(a, a) for a in r.allowed_actions]
    print(f"You may     : {', '.join(allowed) or 'nothing now'}")
    print("History     :")
    for h in r.history:
        actor = f"{h.actor_role}:{h.actor_id}" if h.actor_id else h.actor_role
        move = f"{h.from_state or '-'} -> {h.to_state or '-'}"
        print(f"  {_fmt(h.at)}  {h.action:<18} {actor:<24} {move}  {h.institution_id}".rstrip())
        for label, value in (("text", h.text), ("reason", h.reason)):
            if value:
                print(f"      {label}: {value}")
        if h.evidence:
            print(f"      evidence: {', '.join(h.evidence)}")
    if r.HasField("routing"):
        e = r.routing
        print(
            f"Routing     : {e.rule or '-'} (rules {e.rules_version or '-'})  "
            f"topic {e.topic or '-'} confidence {e.confidence:.2f}"
        )
        if e.matched_terms:
            print(f"              matched: {', '.join(e.matched_terms)}")
        if e.hint:
            print(f"              hint: {e.hint}")


def _print_page(reply: Any) -> None:
    if reply.reports:
        print_table(reply.reports)
    else:
        print("no reports")
    if reply.next_page_token:
        print(
            f"more: repeat with --page-token {reply.next_page_token} (and the same filters)",
            file=sys.stderr,
        )


# --- running -----------------------------------------------------------------------------


def _call(args: argparse.Namespace, channel: grpc.Channel, metadata: Any) -> None:
    officer = officer_pb2_grpc.OfficerServiceStub(channel)
    admin = officer_pb2_grpc.AdminServiceStub(channel)
    options: dict[str, Any] = {"metadata": metadata, "timeout": 10}
    command = args.officer_command
    if command == "list":
        request = officer_pb2.ListReportsRequest(
            state=args.status,
            colour=COLOURS.get(args.colour, common_pb2.STATUS_COLOUR_UNSPECIFIED),
            overdue_only=args.overdue,
            topic=args.topic,
            page_size=args.page_size,
            page_token=args.page_token,
        )
        _print_page(officer.ListReports(request, **options))
    elif command == "queue":
        queue = officer_pb2.ListQueueRequest(
            state=args.status, page_size=args.page_size, page_token=args.page_token
        )
        _print_page(admin.ListQueue(queue, **options))
    elif command == "show":
        show_report(
            officer.GetReport(officer_pb2.GetReportRequest(tracking_id=args.tracking_id), **options)
        )
    else:
        method: Callable[..., officer_pb2.Report] = getattr(
            admin if args.officer_admin else officer, args.officer_rpc
        )
        show_report(method(_request(args), **options))


def run(args: argparse.Namespace) -> int:
    evidence = args.officer_command == "evidence"  # intake's EvidenceService
    service = "intake" if evidence else "routing"
    try:
        if evidence:
            address = intake_address(getattr(args, "intake", None))
        else:
            address = routing_address(args.routing)
        metadata = (("authorization", f"Bearer {bearer_token(args)}"),)
        channel = open_channel(address)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with channel:
        try:
            if evidence:
                officer_evidence.call(args, channel, metadata)
            else:
                _call(args, channel, metadata)
            return 0
        except CliError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()  # type: ignore[attr-defined]
            print(f"error: {code.name}: {details}", file=sys.stderr)
            if code == grpc.StatusCode.UNAVAILABLE:
                print(f"(is {service} running at {address}?)", file=sys.stderr)
            return 2

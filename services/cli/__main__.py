"""`lapor`: a small client for the intake API.

    lapor submit --title T --body B --region 51.08 [--channel web] [--privacy public]
                 [--classification complaint] [--name N --phone P --email E] [--key K]
                 [--handle @h --post-id ID] [--source-system S --reference R]
    lapor track TRACKING_ID [--wait SECONDS]
    lapor raise-privacy TRACKING_ID --code FOLLOW_UP_CODE --privacy confidential|anonymous
    lapor officer list|show|accept|forward|... (officers and admins: services/cli/officer.py)
    lapor officer evidence list|get ...        (the reporter's files, from intake)

The intake address comes from --intake, LAPOR_INTAKE_ADDR, or data/stack.json
(services/cli/connection.py). The channel
client's API key from --api-key, LAPOR_API_KEY, or (embedded stack) data/secrets.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import grpc
from lapor.v1 import common_pb2, intake_pb2, intake_pb2_grpc

from services.cli import officer
from services.cli.connection import CliError, data_dir, intake_address, open_channel


def _api_key(explicit: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("LAPOR_API_KEY"):
        return os.environ["LAPOR_API_KEY"]
    secrets = data_dir() / "secrets.json"
    if secrets.exists():
        from services.intake.devenv import dev_api_key

        return dev_api_key(json.loads(secrets.read_text()))
    return ""


def _submit_request(args: argparse.Namespace) -> intake_pb2.SubmitComplaintRequest:
    request = intake_pb2.SubmitComplaintRequest(
        channel=_enum(common_pb2.Channel, "CHANNEL", args.channel),
        privacy=_enum(common_pb2.Privacy, "PRIVACY", args.privacy),
        classification=_enum(common_pb2.Classification, "CLASSIFICATION", args.classification),
        title=args.title,
        body=args.body,
        region_code=args.region,
        reporter=intake_pb2.ReporterContact(name=args.name, phone=args.phone, email=args.email),
        idempotency_key=args.key,
    )
    if args.channel == "sms":  # the gateway passes the sender and the text
        request.body = ""
        request.reporter.phone = ""
        request.sms.sender, request.sms.text = args.phone, args.body
    elif args.channel == "social_media":
        request.social_media.platform = args.platform
        request.social_media.handle, request.social_media.post_id = args.handle, args.post_id
    elif args.channel == "institution_system":
        request.institution_reference.source_system = args.source_system
        request.institution_reference.reference = args.reference
    return request


def _enum(enum: Any, prefix: str, value: str) -> Any:
    return enum.Value(f"{prefix}_{value.upper()}")


def _fmt(ts: object) -> str:
    return ts.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC")  # type: ignore[attr-defined]


def show(c: intake_pb2.Complaint) -> None:
    print(f"Tracking id : {c.tracking_id}")
    print(
        f"Status      : {common_pb2.ComplaintStatus.Name(c.status).removeprefix('COMPLAINT_STATUS_').lower()}"
        f" ({common_pb2.StatusColour.Name(c.status_colour).removeprefix('STATUS_COLOUR_').lower()})"
        f"{'  OVERDUE' if c.overdue else ''}{'  ESCALATED' if c.escalated else ''}"
    )
    print(f"Received    : {_fmt(c.received_at)}  region {c.region_code}")
    if c.title:
        print(f"Title       : {c.title}")
    print(
        f"Institution : {c.institution.name or '-'} {f'({c.institution.id})' if c.institution.id else ''}"
    )
    if c.deadlines:
        print("Deadlines   :")
        for d in c.deadlines:
            print(f"  {d.clock:<15} {_fmt(d.due_at)}  {d.state}")
    print("History     :")
    for h in c.history:
        print(f"  {_fmt(h.at)}  {h.action:<16} {h.actor:<8} {h.detail}")
    print(f"Notified    : {', '.join(n.template for n in c.notifications) or 'not yet'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lapor", description="Submit and track LAPOR! reports; handle them as an officer"
    )
    parser.add_argument("--intake", help="intake gRPC address host:port")
    parser.add_argument("--api-key", help="the channel client's API key (x-api-key)")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit", help="submit a report")
    s.add_argument("--title", required=True)
    s.add_argument("--body", required=True)
    s.add_argument("--region", required=True, help="Kemendagri code, e.g. 51.08")
    s.add_argument(
        "--channel",
        default="web",
        choices=["web", "sms", "mobile_app", "social_media", "institution_system"],
        help="sms: --phone is the sender and --body the text",
    )
    s.add_argument("--privacy", default="public", choices=["public", "confidential", "anonymous"])
    s.add_argument(
        "--classification",
        default="complaint",
        choices=["aspiration", "complaint", "information_request"],
    )
    s.add_argument("--name", default="")
    s.add_argument("--phone", default="")
    s.add_argument("--email", default="")
    s.add_argument("--key", default="", help="idempotency key")
    s.add_argument("--platform", default="x", help="social_media: the platform")
    s.add_argument("--handle", default="", help="social_media: the account handle")
    s.add_argument("--post-id", default="", help="social_media: the post or message id")
    s.add_argument("--source-system", default="", help="institution_system: its id")
    s.add_argument("--reference", default="", help="institution_system: its reference")
    r = sub.add_parser("raise-privacy", help="raise a report's privacy with its follow-up code")
    r.add_argument("tracking_id")
    r.add_argument("--code", required=True, help="the follow-up code given at submission")
    r.add_argument("--privacy", required=True, choices=["confidential", "anonymous"])
    t = sub.add_parser("track", help="show a report's status")
    t.add_argument("tracking_id")
    t.add_argument(
        "--wait", type=float, default=0, help="poll until routed, deadlines set and notified"
    )
    officer.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "officer":
        try:
            return officer.run(args)
        except BrokenPipeError:
            return 0

    try:
        address = intake_address(args.intake)
        channel = open_channel(address)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    key = _api_key(args.api_key)
    with channel:
        stub = intake_pb2_grpc.IntakeServiceStub(channel)
        try:
            if args.command == "submit":
                reply = stub.SubmitComplaint(
                    _submit_request(args), timeout=10, metadata=[("x-api-key", key)]
                )
                print(reply.tracking_id)
                print(f"follow-up code (keep it secret): {reply.follow_up_code}", file=sys.stderr)
                if reply.acknowledgement:
                    print(f"acknowledgement: {reply.acknowledgement}", file=sys.stderr)
                if reply.duplicate:
                    print("(an earlier submission of this report)", file=sys.stderr)
                return 0
            if args.command == "raise-privacy":
                raised = stub.RaisePrivacy(
                    intake_pb2.RaisePrivacyRequest(
                        tracking_id=args.tracking_id,
                        follow_up_code=args.code,
                        privacy=_enum(common_pb2.Privacy, "PRIVACY", args.privacy),
                    ),
                    timeout=10,
                )
                print("privacy raised" if raised.changed else "privacy already so")
                return 0
            deadline = time.monotonic() + args.wait
            while True:
                complaint = stub.GetComplaint(
                    intake_pb2.GetComplaintRequest(tracking_id=args.tracking_id), timeout=10
                )
                complete = (
                    complaint.institution.id and complaint.deadlines and complaint.notifications
                )
                if complete or time.monotonic() >= deadline:
                    show(complaint)
                    return 0
                time.sleep(0.3)
        except BrokenPipeError:
            return 0
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
            return 2


if __name__ == "__main__":
    sys.exit(main())

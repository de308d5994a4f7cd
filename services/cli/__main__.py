"""`lapor`: a small client for the intake API.

    lapor submit --title T --body B --region 51.08 [--channel web] [--privacy public]
                 [--classification complaint] [--name N --phone P --email E] [--key K]
    lapor track TRACKING_ID [--wait SECONDS]

The intake address comes from --intake, LAPOR_INTAKE_ADDR, or data/stack.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from lapor.v1 import common_pb2, intake_pb2, intake_pb2_grpc


def _address(explicit: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("LAPOR_INTAKE_ADDR"):
        return os.environ["LAPOR_INTAKE_ADDR"]
    stack = Path(os.environ.get("LAPOR_DATA_DIR", "data")) / "stack.json"
    if stack.exists():
        return str(json.loads(stack.read_text())["intake_grpc"])
    return "127.0.0.1:50051"


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
    parser = argparse.ArgumentParser(prog="lapor", description="Submit and track LAPOR! reports")
    parser.add_argument("--intake", help="intake gRPC address host:port")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit", help="submit a report")
    s.add_argument("--title", required=True)
    s.add_argument("--body", required=True)
    s.add_argument("--region", required=True, help="Kemendagri code, e.g. 51.08")
    s.add_argument("--channel", default="web", choices=["web", "sms", "mobile_app", "social_media"])
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
    t = sub.add_parser("track", help="show a report's status")
    t.add_argument("tracking_id")
    t.add_argument(
        "--wait", type=float, default=0, help="poll until routed, deadlines set and notified"
    )
    args = parser.parse_args(argv)

    with grpc.insecure_channel(_address(args.intake)) as channel:
        stub = intake_pb2_grpc.IntakeServiceStub(channel)
        try:
            if args.command == "submit":
                reply = stub.SubmitComplaint(
                    intake_pb2.SubmitComplaintRequest(
                        channel=_enum(common_pb2.Channel, "CHANNEL", args.channel),
                        privacy=_enum(common_pb2.Privacy, "PRIVACY", args.privacy),
                        classification=_enum(
                            common_pb2.Classification, "CLASSIFICATION", args.classification
                        ),
                        title=args.title,
                        body=args.body,
                        region_code=args.region,
                        reporter=intake_pb2.ReporterContact(
                            name=args.name, phone=args.phone, email=args.email
                        ),
                        idempotency_key=args.key,
                    ),
                    timeout=10,
                )
                print(reply.tracking_id)
                if reply.duplicate:
                    print("(an earlier submission with this idempotency key)", file=sys.stderr)
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

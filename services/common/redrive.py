"""Send dead letters back to their topics once their cause is fixed (deploy/README.md, "Dead
letters"): ``python -m services.common.redrive <service> [--topic T] [--dry-run]``, run where
the service runs (it reads the same settings: its database and the brokers).

Each dead letter's `value` (the event's bytes, unchanged) goes back to its `topic`, keyed by
the event's tracking id as the outbox keys it (so it lands in its report's partition), and
the dead letter is deleted once the broker acknowledged it. Consumers are idempotent: an
event applied meanwhile, or published twice after a crash between publishing and deleting,
changes nothing. A dead letter whose value cannot be read as an event (parked as
"undecodable") stays: sending it again would only park it again."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from google.protobuf import empty_pb2
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet
from lapor.v1 import common_pb2
from pymongo.asynchronous.collection import AsyncCollection

from services.common.kafka import KafkaPublisher
from services.common.mongo import Doc, create_client
from services.common.outbox import OutboxMessage, Publisher
from services.common.settings import CommonSettings, Env, SettingsError

WIRETYPE_LENGTH_DELIMITED = 2
SERVICES = ("intake", "routing", "sla", "notify")


@dataclass
class RedriveReport:
    sent: Counter[str] = field(default_factory=Counter)  # per topic
    kept: Counter[str] = field(default_factory=Counter)  # per topic: not an event


def tracking_id_of(value: bytes) -> str | None:
    """The tracking id in an event's ``meta`` (field 1 of every event in events.proto),
    read without knowing the event's type (its fields as protobuf's unknown fields of an
    empty message); None when the bytes are no such event."""
    try:
        fields = UnknownFieldSet(empty_pb2.Empty.FromString(value))
        for f in (fields[i] for i in range(len(fields))):
            if f.field_number == 1 and f.wire_type == WIRETYPE_LENGTH_DELIMITED:
                return common_pb2.EventMeta.FromString(f.data).tracking_id or None
    except DecodeError:
        return None
    return None


async def redrive(
    dead_letters: AsyncCollection[Doc],
    publisher: Publisher,
    topic: str | None = None,
    dry_run: bool = False,
    batch: int = 100,
) -> RedriveReport:
    """Send the dead letters (of `topic`, else all) back, oldest first, `batch` at a time."""
    report = RedriveReport()
    query: Doc = {"topic": topic} if topic else {}
    after: object = None
    while True:
        page_query = {**query, "_id": {"$gt": after}} if after is not None else query
        page = await dead_letters.find(page_query).sort("_id", 1).limit(batch).to_list(batch)
        if not page:
            return report
        after = page[-1]["_id"]
        sendable: list[tuple[Doc, OutboxMessage]] = []
        for doc in page:
            value = bytes(doc.get("value") or b"")
            key = tracking_id_of(value)
            if key is None:
                report.kept[doc["topic"]] += 1
                continue
            message = OutboxMessage(f"redrive-{doc['_id']}", doc["topic"], key, value)
            sendable.append((doc, message))
        if sendable and not dry_run:
            await publisher.publish_many([m for _, m in sendable])
            await dead_letters.delete_many({"_id": {"$in": [d["_id"] for d, _ in sendable]}})
        for doc, _ in sendable:
            report.sent[doc["topic"]] += 1


async def _run(settings: CommonSettings, topic: str | None, dry_run: bool) -> RedriveReport:
    client = create_client(settings.mongodb_uri, f"lapor-{settings.service}-redrive")
    publisher = KafkaPublisher(settings.kafka, f"lapor-{settings.service}-redrive")
    try:
        if not dry_run:
            await publisher.start()
        dead = client[settings.mongodb_database]["dead_letters"]
        return await redrive(dead, publisher, topic, dry_run)
    finally:
        if not dry_run:
            await publisher.stop()
        await client.close()


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """0: done (what could not be sent is reported); 2: bad arguments or settings."""
    parser = argparse.ArgumentParser(prog="python -m services.common.redrive")
    parser.add_argument("service", choices=SERVICES, help="whose dead letters")
    parser.add_argument("--topic", help="only the dead letters of this topic")
    parser.add_argument("--dry-run", action="store_true", help="count, send and delete nothing")
    args = parser.parse_args(argv)
    try:
        env = Env(environ)
        settings = CommonSettings.from_env(args.service, env)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = asyncio.run(_run(settings, args.topic, args.dry_run))
    verb = "would send" if args.dry_run else "sent back"
    for name, count in sorted(report.sent.items()):
        print(f"{verb:<11}: {count:>6}  {name}")
    for name, count in sorted(report.kept.items()):
        print(f"kept       : {count:>6}  {name} (not an event: undecodable)")
    if not report.sent and not report.kept:
        print("no dead letters")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Dead letters sent back to their topics (services/common/redrive.py) against the real
broker and database processes."""

from __future__ import annotations

import uuid
from typing import Any

from lapor.v1 import common_pb2, events_pb2

from services.common.deadletter import DeadLetters
from services.common.kafka import KafkaPublisher
from services.common.redrive import redrive, tracking_id_of
from services.common.settings import KafkaSettings
from services.stack.supervisor import Stack
from tests.support import read_topic


def routed(tracking_id: str) -> bytes:
    return events_pb2.ComplaintRouted(
        meta=common_pb2.EventMeta(event_id=uuid.uuid4().hex, tracking_id=tracking_id),
        institution=common_pb2.Institution(id="pemda-51.08", name="Pemkab Buleleng"),
        region_code="51.08",
    ).SerializeToString()


def test_the_tracking_id_is_read_from_any_event() -> None:
    assert tracking_id_of(routed("7K3M-9QX2-DAC")) == "7K3M-9QX2-DAC"
    action = events_pb2.CaseAction(
        meta=common_pb2.EventMeta(tracking_id="AAAA-BBBB-CCC"), action="accepted"
    )
    assert tracking_id_of(action.SerializeToString()) == "AAAA-BBBB-CCC"
    for junk in (b"", b"\xff\xff\xff", b"\x0a\x05ab", b"not protobuf at all"):
        assert tracking_id_of(junk) is None


async def test_dead_letters_go_back_keyed_by_tracking_id_and_leave(
    db: Any, infra: Stack, kafka_settings: KafkaSettings
) -> None:
    topic = f"lapor.redrive.{uuid.uuid4().hex[:8]}"
    dead = DeadLetters(db["dead_letters"])
    await dead.ensure_indexes()
    ids = [f"T{i:03d}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    for tid in ids:
        await dead.park(topic, routed(tid), "handler failed: KeyError")
    await dead.park(topic, b"\xff\xff", "undecodable: truncated")
    await dead.park("lapor.other", routed("OTHER"), "handler failed: KeyError")
    publisher = KafkaPublisher(kafka_settings, "it-redrive")
    await publisher.start()
    try:
        dry = await redrive(db["dead_letters"], publisher, topic, dry_run=True)
        assert dict(dry.sent) == {topic: 3} and dict(dry.kept) == {topic: 1}
        assert await db["dead_letters"].count_documents({}) == 5  # a dry run changes nothing
        report = await redrive(db["dead_letters"], publisher, topic, batch=2)
    finally:
        await publisher.stop()
    assert dict(report.sent) == {topic: 3} and dict(report.kept) == {topic: 1}
    left = [(d["topic"], d["reason"]) async for d in db["dead_letters"].find({})]
    assert sorted(left) == [
        ("lapor.other", "handler failed: KeyError"),
        (topic, "undecodable: truncated"),
    ]
    on_topic = read_topic(infra.bootstrap_servers, topic)
    assert sorted((k or b"").decode() for k, _ in on_topic) == sorted(ids)
    assert all(tracking_id_of(v or b"") == (k or b"").decode() for k, v in on_topic)


def test_the_command_names_a_missing_setting(capsys: Any) -> None:
    from services.common.redrive import main

    assert main(["routing"], environ={}) == 2
    assert "LAPOR_" in capsys.readouterr().err

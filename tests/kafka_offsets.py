"""Positive barriers for tests that rule out a late duplicate: where a message landed, and
whether a consumer group has committed past it (the broker's own record, read with an
independent client, librdkafka). The services' consumers commit a batch's offsets only after
its work is stored, so a group's committed offset past a message means that message was
handled, whatever the handler made of it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from tests.support import eventually

#: The position of one message: (partition, offset).
Position = tuple[int, int]


def produce(bootstrap: str, topic: str, key: str, values: Iterable[bytes]) -> list[Position]:
    """Publish `values` in order under `key` (one partition); where each one landed."""
    landed: list[Position] = []
    failed: list[object] = []

    def report(err: object, msg: object) -> None:
        if err is not None:
            failed.append(err)
        else:
            landed.append((msg.partition(), msg.offset()))  # type: ignore[attr-defined]

    producer = Producer({"bootstrap.servers": bootstrap})
    count = 0
    for value in values:
        producer.produce(topic, value, key=key.encode(), on_delivery=report)
        count += 1
    assert producer.flush(10) == 0, "messages left unsent"
    assert not failed and len(landed) == count, failed
    return landed


def _client(bootstrap: str, group: str | None = None) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group or f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )


def partitions(bootstrap: str, topic: str) -> list[int]:
    client = _client(bootstrap)
    try:
        return sorted(client.list_topics(topic, timeout=10).topics[topic].partitions)
    finally:
        client.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's end offset (the offset the next message will get)."""
    client = _client(bootstrap)
    try:
        found = client.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: client.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in sorted(found)
        }
    finally:
        client.close()


def committed(bootstrap: str, group: str, topic: str, parts: Iterable[int]) -> dict[int, int]:
    """`group`'s committed offset of each partition (negative: nothing committed). Reads
    them without joining the group."""
    client = _client(bootstrap, group)
    try:
        asked = [TopicPartition(topic, p) for p in parts]
        try:
            answer = client.committed(asked, timeout=10)
        except KafkaException:  # the coordinator is busy (a rebalance): not yet
            return {p.partition: -1 for p in asked}
        return {tp.partition: tp.offset for tp in answer}
    finally:
        client.close()


def handled(bootstrap: str, group: str, topic: str, positions: Iterable[Position]) -> bool:
    """Whether `group` committed past every one of `positions` of `topic`."""
    last: dict[int, int] = {}
    for partition, offset in positions:
        last[partition] = max(offset, last.get(partition, -1))
    if not last:
        return True
    offsets = committed(bootstrap, group, topic, last)
    return all(offsets.get(p, -1) > offset for p, offset in last.items())


def wait_handled(
    bootstrap: str, group: str, topic: str, positions: Iterable[Position], timeout: float = 60
) -> None:
    """Wait until `group` has committed past every one of `positions` (fails on timeout)."""
    wanted = list(positions)
    eventually(
        lambda: handled(bootstrap, group, topic, wanted),
        timeout=timeout,
        what=f"{group} to commit past {wanted} of {topic}",
    )


def caught_up(bootstrap: str, group: str, topic: str) -> bool:
    """Whether `group` has committed up to the end of every partition of `topic` that holds
    messages."""
    ends = {p: end for p, end in end_offsets(bootstrap, topic).items() if end > 0}
    if not ends:
        return True
    offsets = committed(bootstrap, group, topic, ends)
    return all(offsets.get(p, -1) >= end for p, end in ends.items())

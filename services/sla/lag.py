"""Consumer lag of this service's groups, asked from the broker: for every partition,
highwater (end offset) minus the group's committed offset, summed per topic."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.clock import sleep_until_or_stop
from services.common.kafka import _client_options
from services.common.settings import KafkaSettings
from services.sla.metrics import CONSUMER_LAG

log = logging.getLogger(__name__)


async def topic_lag(settings: KafkaSettings, group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(
        group_id=f"{group}.{topic}", enable_auto_commit=False, **_client_options(settings)
    )
    await consumer.start()
    try:
        await consumer.topics()  # a metadata request: the partitions are known after it
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return 0
        ends = await consumer.end_offsets(tps)
        lag = 0
        for tp in tps:
            committed = await consumer.committed(tp)
            lag += max(ends[tp] - (committed or 0), 0)
        return lag
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()


async def watch_lag(
    settings: KafkaSettings,
    group: str,
    topics: tuple[str, ...],
    stop: asyncio.Event,
    interval: float = 15.0,
) -> None:
    while not stop.is_set():
        for topic in topics:
            try:
                CONSUMER_LAG.labels(topic=topic).set(await topic_lag(settings, group, topic))
            except Exception as exc:  # noqa: BLE001 - a metric must never stop the service
                log.warning("consumer lag unavailable", extra={"topic": topic, "error": repr(exc)})
        if await sleep_until_or_stop(stop, interval):
            return

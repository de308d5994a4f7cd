"""Consumer lag of this service's groups, asked from the broker: for every partition,
highwater (end offset) minus the group's committed offset, summed per topic. Read with the
same offsets probe as the escalation gate (services/sla/watermark.py), one long-lived client
per topic."""

from __future__ import annotations

import asyncio
import logging

from services.common.clock import sleep_until_or_stop
from services.common.settings import KafkaSettings
from services.sla.metrics import CONSUMER_LAG
from services.sla.watermark import KafkaOffsetsProbe, OffsetsProbe

log = logging.getLogger(__name__)


async def topic_lag(probe: OffsetsProbe) -> int:
    """Messages not yet committed by the probe's group, over the topic's partitions (a
    partition never committed counts from 0)."""
    ends = await probe.ends()
    committed = await probe.committed()
    return sum(max(end - committed.get(p, 0), 0) for p, end in ends.items())


async def watch_lag(
    settings: KafkaSettings,
    group: str,
    topics: tuple[str, ...],
    stop: asyncio.Event,
    interval: float = 15.0,
) -> None:
    probes = {t: KafkaOffsetsProbe(settings, f"{group}.{t}", t) for t in topics}
    try:
        while not stop.is_set():
            for topic, probe in probes.items():
                try:
                    CONSUMER_LAG.labels(topic=topic).set(await topic_lag(probe))
                except Exception as exc:  # noqa: BLE001 - a metric must never stop the service
                    log.warning(
                        "consumer lag unavailable", extra={"topic": topic, "error": repr(exc)}
                    )
            if await sleep_until_or_stop(stop, interval):
                return
    finally:
        for probe in probes.values():
            await probe.shut()

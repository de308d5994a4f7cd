"""Kafka plumbing: an idempotent producer and a consumer loop that commits only after
the handler has durably done its work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from google.protobuf.message import DecodeError, Message

from services.common.clock import doubling, sleep_until_or_stop
from services.common.errors import Unavailable
from services.common.logging import loggable
from services.common.metrics import EVENT_HANDLING, EVENT_RETRIES, EVENTS_CONSUMED
from services.common.mongo import is_transient
from services.common.outbox import OutboxMessage
from services.common.settings import KafkaSettings

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)


def _client_options(settings: KafkaSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.sasl_mechanism:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password:
            options["sasl_plain_password"] = settings.sasl_password.reveal()
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        # Without a CA file, the system's trust store verifies the brokers.
        options["ssl_context"] = create_ssl_context(cafile=settings.ssl_cafile)
    return options


class KafkaPublisher:
    """Idempotent producer (acks=all): what the outbox relay publishes through."""

    def __init__(self, settings: KafkaSettings, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            client_id=self._client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            request_timeout_ms=10000,
            **_client_options(self._settings),
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def publish_many(self, messages: list[OutboxMessage]) -> None:
        if self._producer is None:
            raise KafkaError("producer not started")
        futures = [
            await self._producer.send(m.topic, m.value, key=m.key.encode()) for m in messages
        ]
        await asyncio.gather(*futures)

    async def probe(self) -> None:
        """Raise when no broker answers a metadata request."""
        if self._producer is None:
            raise KafkaError("producer not started")
        await self._producer.client.fetch_all_metadata()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


@dataclass(frozen=True)
class Delivery(Generic[M]):
    """One decoded message with where it came from."""

    message: M
    key: str
    partition: int
    offset: int


BatchHandler = Callable[[list[Delivery[M]]], Awaitable[None]]


class EventConsumer(Generic[M]):
    """Consumes one topic in a consumer group, hands each partition's batch to `handle`
    and commits the batch's offsets only after `handle` returned (the handler makes its
    work durable and idempotent). Transient database errors (`mongo.is_transient`: MongoDB
    unreachable, a commit's outcome unknown, a write conflict that outlasted the
    transaction helper) and `errors.Unavailable` (a report too busy to change now) are
    retried forever, with a growing pause (up to 5 s), nothing is skipped meanwhile; a
    message that cannot be decoded, or that keeps failing for another reason, is parked in
    the dead-letter collection and skipped."""

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        group_id: str,
        message_type: type[M],
        handle: BatchHandler[M],
        dead_letter: Callable[[str, bytes | None, str], Awaitable[None]],
        max_attempts: int = 8,
        max_records: int = 500,
    ) -> None:
        self._settings = settings
        self.topic = topic
        self._group_id = group_id
        self._type = message_type
        self._handle = handle
        self._dead_letter = dead_letter
        self._max_attempts = max_attempts
        self._max_records = max_records
        self.running = False
        for outcome in ("applied", "duplicate", "dead_lettered", "ignored"):
            EVENTS_CONSUMED.labels(topic=topic, outcome=outcome)  # series exist from the start

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            consumer = AIOKafkaConsumer(
                self.topic,
                group_id=f"{self._group_id}.{self.topic}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                metadata_max_age_ms=5000,
                fetch_max_wait_ms=self._settings.fetch_max_wait_ms,  # see KafkaSettings
                **_client_options(self._settings),
            )
            try:
                await consumer.start()
                self.running = True
                await self._loop(consumer, stop)
            except (KafkaError, OSError) as exc:
                log.warning(
                    "consumer error; reconnecting", extra={"topic": self.topic, "error": repr(exc)}
                )
                self.running = False
                if await sleep_until_or_stop(stop, 1.0):
                    break
            finally:
                self.running = False
                with contextlib.suppress(Exception):  # best effort on shutdown
                    await consumer.stop()

    async def _loop(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=self._max_records)
            if not batches:
                continue
            # One handler call and one commit for the whole fetch, whatever partitions it
            # spans: each partition's records stay in order (a key lives in one partition),
            # and handlers write a batch with one bulk write.
            deliveries: list[Delivery[M]] = []
            for records in batches.values():
                for record in records:
                    decoded = await self._decode(record)
                    if decoded is not None:
                        deliveries.append(decoded)
            if deliveries:
                await self._handle_with_retry(deliveries, stop)
            if stop.is_set():
                return
            try:
                await consumer.commit(
                    {
                        TopicPartition(tp.topic, tp.partition): records[-1].offset + 1
                        for tp, records in batches.items()
                        if records
                    }
                )
            except CommitFailedError:
                log.warning("commit failed after a rebalance; batch will be redelivered")

    async def _decode(self, record: Any) -> Delivery[M] | None:
        key = record.key.decode("utf-8", "replace") if record.key else ""
        try:
            message = self._type.FromString(record.value or b"")
        except DecodeError as exc:
            EVENTS_CONSUMED.labels(topic=self.topic, outcome="dead_lettered").inc()
            await self._dead_letter(self.topic, record.value, f"undecodable: {exc}")
            return None
        return Delivery(message, key, record.partition, record.offset)

    async def _give_up(
        self, deliveries: list[Delivery[M]], exc: Exception, stop: asyncio.Event
    ) -> None:
        """After the last attempt: a batch is handled again one delivery at a time, to
        find the one that fails and keep the rest; a single delivery is parked."""
        if len(deliveries) > 1:
            for delivery in deliveries:  # find the one that fails, keep the rest
                await self._handle_with_retry([delivery], stop)
            return
        for delivery in deliveries:
            EVENTS_CONSUMED.labels(topic=self.topic, outcome="dead_lettered").inc()
            await self._dead_letter(
                self.topic,
                delivery.message.SerializeToString(),
                f"handler failed: {type(exc).__name__}",
            )

    async def _handle_with_retry(self, deliveries: list[Delivery[M]], stop: asyncio.Event) -> None:
        attempt = 0  # failures that count towards dead-lettering
        waits = 0  # transient failures in a row: they only lengthen the pause
        while True:
            started = time.perf_counter()
            try:
                await self._handle(deliveries)
                EVENT_HANDLING.labels(topic=self.topic).observe(time.perf_counter() - started)
                return
            except Exception as exc:
                EVENT_RETRIES.labels(topic=self.topic).inc()
                if is_transient(exc) or isinstance(exc, Unavailable):
                    # MongoDB unreachable, a commit unknown, a lasting conflict, or a report
                    # too busy to change now (Unavailable): the same work succeeds later.
                    waits += 1
                    log.warning(
                        "database unavailable or busy; will retry",
                        extra={"topic": self.topic, "error": type(exc).__name__},
                    )
                else:
                    attempt += 1
                    log.error(  # a database error's text may quote the stored document
                        "handler failed",
                        exc_info=loggable(exc),
                        extra={"topic": self.topic, "attempt": attempt},
                    )
                    if attempt >= self._max_attempts:
                        await self._give_up(deliveries, exc, stop)
                        return
            pause = doubling(0.2, attempt + max(waits - 1, 0), 5.0)
            if await sleep_until_or_stop(stop, pause * (0.5 + random.random())):  # noqa: S311
                return

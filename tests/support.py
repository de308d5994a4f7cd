"""Helpers shared by the integration and end-to-end tiers."""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import grpc
import pytest
from confluent_kafka import Consumer, TopicPartition
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from lapor.v1 import common_pb2, intake_pb2, intake_pb2_grpc

from services.common.outbox import OutboxMessage

T = TypeVar("T")


def eventually(
    check: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.2, what: str = ""
) -> T:
    """Poll `check` until it returns something truthy; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}; last={last!r}")


def marker() -> str:
    return uuid.uuid4().hex[:12]


def submit_request(**overrides: object) -> intake_pb2.SubmitComplaintRequest:
    fields: dict[str, object] = {
        "channel": common_pb2.CHANNEL_WEB,
        "privacy": common_pb2.PRIVACY_PUBLIC,
        "classification": common_pb2.CLASSIFICATION_COMPLAINT,
        "title": "Jalan berlubang di Jalan Cipto",
        "body": "Sudah 3 bulan jalan rusak dan berlubang, membahayakan pengendara motor.",
        "region_code": "51.08",
        "idempotency_key": uuid.uuid4().hex,
    }
    fields.update(overrides)
    return intake_pb2.SubmitComplaintRequest(**fields)  # type: ignore[arg-type]


def dev_api_key(secrets: dict[str, str] | None = None, client_id: str = "dev-console") -> str:
    """A development channel client's API key (services/intake/devenv.py); by default the
    e2e session's, for the client that may use every channel."""
    from services.intake.devenv import dev_api_key as derive

    if secrets is None:
        from tests.e2e.conftest import SECRETS

        secrets = SECRETS
    return derive(secrets, client_id)


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class ApiKey(grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor):  # type: ignore[misc]
    """Adds `x-api-key` to every call, as a channel client does."""

    def __init__(self, key: str) -> None:
        self._key = key

    def _with_key(self, d: Any) -> Any:
        metadata = [*(d.metadata or ()), ("x-api-key", self._key)]
        return _CallDetails(
            d.method, d.timeout, metadata, d.credentials, d.wait_for_ready, d.compression
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_key(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._with_key(details), requests)


def intake_stub(
    address: str, api_key: str | None = None
) -> tuple[grpc.Channel, intake_pb2_grpc.IntakeServiceStub]:
    """A channel and an IntakeService stub that sends a channel client's API key (by default
    the e2e session's `dev-console` key; "" sends none)."""
    channel = grpc.insecure_channel(address)
    key = dev_api_key() if api_key is None else api_key
    keyed = grpc.intercept_channel(channel, ApiKey(key)) if key else channel
    return channel, intake_pb2_grpc.IntakeServiceStub(keyed)


def read_topic(
    bootstrap: str, topic: str, timeout: float = 5.0
) -> list[tuple[bytes | None, bytes | None]]:
    """Every message on a topic, read by an independent client (librdkafka) without a group."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        partitions = list(metadata.topics[topic].partitions)
        ends = {}
        for p in partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[tuple[bytes | None, bytes | None]] = []
        remaining = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            out.append((msg.key(), msg.value()))
            if msg.offset() + 1 >= ends[msg.partition()]:
                remaining.discard(msg.partition())
        return out
    finally:
        consumer.close()


def refused(call: Callable[[], object]) -> grpc.RpcError:
    """The error a gRPC call is expected to fail with."""
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


def retry_delay(err: grpc.RpcError) -> float:
    """Seconds of the RetryInfo in a refusal's rich status (RESOURCE_EXHAUSTED)."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return float(info.retry_delay.ToTimedelta().total_seconds())
    raise AssertionError("no RetryInfo")


class RecordingPublisher:
    """A publisher for the outbox relay that keeps what it was asked to publish, in order:
    for tests of the relay's own rules (what goes out, in which order), not of the broker."""

    def __init__(self) -> None:
        self.sent: list[OutboxMessage] = []

    async def publish_many(self, messages: list[OutboxMessage]) -> None:
        self.sent.extend(messages)


class Calls:
    """Counts the calls of the async method `name` of `obj`, which it replaces with one that
    counts and then calls the original."""

    def __init__(self, obj: Any, name: str) -> None:
        self.count = 0
        original = getattr(obj, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await original(*args, **kwargs)

        setattr(obj, name, counted)


async def polled(condition: Callable[[], object], tries: int = 500, pause: float = 0.01) -> bool:
    """Ask `condition` (a function, or one returning an awaitable) up to `tries` times,
    `pause` seconds apart, until it is true; return whether it became true. The async tests'
    counterpart of `eventually`: the caller asserts what it needs."""
    for _ in range(tries):
        answer = condition()
        if inspect.isawaitable(answer):
            answer = await answer
        if answer:
            return True
        await asyncio.sleep(pause)
    return False

"""Integration fixtures: the real database and broker processes, no services."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from services.common.settings import KafkaSettings
from services.stack.supervisor import Stack


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(Path(tmp_path_factory.mktemp("infra")))
    try:
        stack.start_kafka()
        stack.start_mongo()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def db(infra: Stack) -> AsyncIterator[object]:
    client: AsyncMongoClient = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)  # type: ignore[type-arg]
    name = f"it_{uuid.uuid4().hex[:10]}"
    yield client[name]
    await client.drop_database(name)
    await client.close()


@pytest.fixture
async def db_to_kill(
    tmp_path: Path,
) -> AsyncIterator[tuple[AsyncMongoClient, Callable[[], None]]]:  # type: ignore[type-arg]
    """A database process of the test's own (the session's must survive), a client that
    gives up on it after a second without an answer, and what kills the process."""
    stack = Stack(tmp_path)
    uri = stack.start_mongo()
    client: AsyncMongoClient = AsyncMongoClient(uri, serverSelectionTimeoutMS=1000, w="majority")  # type: ignore[type-arg]

    def kill() -> None:
        assert stack.mongo is not None
        stack.mongo.popen.kill()
        stack.mongo.popen.wait()

    try:
        yield client, kill
    finally:
        await client.close()
        stack.stop()


@pytest.fixture
def kafka_settings(infra: Stack) -> KafkaSettings:
    # the mock broker holds a quiet fetch for the whole wait (see KafkaSettings)
    return KafkaSettings(
        infra.bootstrap_servers, "PLAINTEXT", None, None, None, None, fetch_max_wait_ms=20
    )

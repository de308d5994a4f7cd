"""End-to-end fixtures: the real broker and database processes and the four services,
on random ports with throwaway data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient

from services.stack.devsecrets import generate, service_env
from services.stack.supervisor import SERVICES, Stack

SECRETS = generate()  # one set per test session, like one data folder of `make run`


def start_stack(
    workdir: Path, *, persistent: bool = False, env: dict[str, dict[str, str]] | None = None
) -> Stack:
    stack = Stack(workdir, persistent_db=workdir / "db" if persistent else None)
    try:
        stack.start_kafka()
        stack.start_mongo()
        env = env or {}
        for name in SERVICES:
            stack.start_service(name, {**service_env(name, SECRETS), **env.get(name, {})})
        stack.wait_serving(timeout=90)
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(tmp_path_factory.mktemp("stack"))
    yield s
    s.stop()


@pytest.fixture
def fresh_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """A stack of one's own, for tests that stop and start parts of it."""
    started: list[Stack] = []

    def make(**kwargs: object) -> Stack:
        s = start_stack(tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def mongo(stack: Stack) -> Iterator[MongoClient]:  # type: ignore[type-arg]
    client: MongoClient = MongoClient(stack.mongodb_uri, tz_aware=True)  # type: ignore[type-arg]
    yield client
    client.close()

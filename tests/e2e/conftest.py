"""End-to-end fixtures: the real broker and database processes and the four services,
on random ports with throwaway data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient

from services.intake.identity import generate_key
from services.stack.supervisor import SERVICES, Stack

IDENTITY_KEY = f"test1:{generate_key()}"


def start_stack(
    workdir: Path, *, persistent: bool = False, env: dict[str, dict[str, str]] | None = None
) -> Stack:
    stack = Stack(workdir, persistent_db=workdir / "db" if persistent else None)
    try:
        stack.start_kafka()
        stack.start_mongo()
        env = env or {}
        for name in SERVICES:
            extra = dict(env.get(name, {}))
            if name == "intake":
                extra.setdefault("LAPOR_IDENTITY_KEYS", IDENTITY_KEY)
            stack.start_service(name, extra)
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

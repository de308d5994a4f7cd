"""Access codes are sent in the background; shutdown waits for them, for a bounded time, and
logs how many it had to abandon: a count, never a code, a contact or a tracking id."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from services.common.settings import Env
from services.intake import bootstrap as intake_bootstrap
from services.intake.access_codes import AccessCodeMessage, AccessHandlers
from services.intake.bootstrap import (
    ACCESS_CODE_SETTLE_SECONDS,
    IntakeSettings,
    settle_access_codes,
)
from services.stack.devsecrets import generate, service_env
from tests.unit.test_reporter_access import PHONE, World, logged_fields


class HeldSender:
    """Delivers a code only when let go, as a slow SMS gateway."""

    name = "held"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0
        self.sent: list[AccessCodeMessage] = []

    async def send(self, message: AccessCodeMessage) -> None:
        self.started += 1
        await self.release.wait()
        self.sent.append(message)


@pytest.fixture
def world() -> World:
    w = World()
    w.sender = HeldSender()  # type: ignore[assignment]
    w.access.sender = w.sender  # type: ignore[assignment]
    return w


async def requested(world: World, count: int) -> list[str]:
    tids = [world.confidential() for _ in range(count)]
    for tid in tids:
        await world.access.request_code(tid, PHONE)
    await asyncio.sleep(0)  # the background sends start
    return tids


async def test_settle_waits_for_the_codes_being_sent(world: World) -> None:
    sender: HeldSender = world.sender  # type: ignore[assignment]
    await requested(world, 2)
    waiting = asyncio.create_task(world.access.settle(5))
    await asyncio.sleep(0.05)
    assert not waiting.done() and sender.started == 2
    sender.release.set()
    assert await waiting == 0
    assert len(sender.sent) == 2


async def test_settle_gives_up_after_its_timeout_and_counts_what_is_left(world: World) -> None:
    sender: HeldSender = world.sender  # type: ignore[assignment]
    await requested(world, 3)
    # The sender is still held: settle gives up (a settle that waited for the sends instead
    # would hang: the bound fails it as a timeout) and counts all three as left.
    assert await asyncio.wait_for(world.access.settle(0.1), 10) == 3
    assert sender.sent == [] and sender.started == 3
    assert await asyncio.wait_for(world.access.settle(0), 10) == 3
    sender.release.set()
    assert await world.access.settle() == 0
    assert len(sender.sent) == 3


async def test_settle_with_nothing_being_sent_returns_at_once(world: World) -> None:
    assert await world.access.settle(0) == 0
    assert await world.access.settle() == 0


async def test_shutdown_logs_the_number_abandoned_and_nothing_else(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    sender: HeldSender = world.sender  # type: ignore[assignment]
    tids = await requested(world, 2)
    codes = [m.code for m in _messages(world)]
    assert len(codes) == 2
    with caplog.at_level(logging.DEBUG):
        assert await settle_access_codes(world.access.settle, 0.05) == 2
    (record,) = [r for r in logged_fields(caplog) if "access codes" in r["message"]]
    assert record["pending"] == 2
    text = str(logged_fields(caplog))
    assert "81234567890" not in text
    assert not any(tid in text for tid in tids)
    assert not any(code in text for code in codes)
    sender.release.set()
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        assert await settle_access_codes(world.access.settle, 1) == 0
    assert [r for r in logged_fields(caplog) if "access codes" in r["message"]] == []


def _messages(world: World) -> list[AccessCodeMessage]:
    """The messages of the sends still running (their coroutine's argument)."""
    found = []
    for task in world.access._sending:
        frame = task.get_coro().cr_frame  # type: ignore[union-attr]
        if frame is not None and "message" in frame.f_locals:
            found.append(frame.f_locals["message"])
    return found


async def test_intake_close_settles_the_codes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """bootstrap's close() waits for the codes (bounded) before it closes the clients."""
    order: list[Any] = []

    async def settle(self: AccessHandlers, wait_seconds: float | None = None) -> int:
        order.append(("settle", wait_seconds))
        return 0

    monkeypatch.setattr(AccessHandlers, "settle", settle)
    env = {
        **service_env("intake", generate()),
        "LAPOR_MONGODB_URI": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200",
        "LAPOR_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "LAPOR_GRPC_PORT": "50051",
        "LAPOR_METRICS_PORT": "9101",
    }
    parts = intake_bootstrap.bootstrap(IntakeSettings.from_env(Env(env)))
    real_close = parts.db.client.close

    async def close_client() -> None:
        order.append("mongodb client closed")
        await real_close()

    monkeypatch.setattr(parts.db.client, "close", close_client)
    for close in parts.close:
        await close()
    assert order == [("settle", ACCESS_CODE_SETTLE_SECONDS), "mongodb client closed"]

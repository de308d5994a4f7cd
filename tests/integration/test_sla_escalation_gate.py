"""The Ombudsman escalation waits until sla has heard every action up to the deadline: the
sweep and the gate (services/sla/watermark.py) against the real database process and the
real broker process. A report resolved in time, whose resolution sla has not consumed yet,
is held instead of being handed to the Ombudsman on a stale clock; once the consumer has
applied the action, the report is found resolved and never escalates."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from lapor.v1 import events_pb2
from prometheus_client import REGISTRY

from services.common.clock import ManualClock
from services.common.kafka import EventConsumer
from services.common.settings import KafkaSettings
from services.sla.domain.actions import Rules
from services.sla.domain.calendar import WorkingCalendar
from services.sla.domain.policy import parse_policy
from services.sla.handlers import SlaHandlers
from services.sla.sweep import Sweeper
from services.sla.watermark import ActionsWatermark, KafkaOffsetsProbe
from tests.integration.test_sla_store import T0, action, delivery, routed, swept_events
from tests.kafka_offsets import produce, wait_handled
from tests.unit.test_sla_actions import POLICY

#: POLICY: the Ombudsman's deadline is 1000 s (calendar) after receipt.
OMBUDSMAN_DUE = 1000
RETRY = timedelta(seconds=5)


def held_count() -> float:
    return REGISTRY.get_sample_value("lapor_sla_escalations_held_total") or 0.0


def escalations(events: list[dict[str, Any]]) -> list[str]:
    return [e["id"] for e in events if e["id"].endswith(":ombudsman:escalation")]


class World:
    def __init__(
        self, db: Any, kafka: KafkaSettings, settle: float = 0, policy: str = POLICY
    ) -> None:
        self.db, self.kafka = db, kafka
        self.probes: list[KafkaOffsetsProbe] = []
        self.policy = parse_policy(policy, Path("."))
        self.clock = ManualClock(T0)
        self.handlers = SlaHandlers(db["clocks"], Rules(self.policy, WorkingCalendar()), self.clock)
        self.topic = f"it.actions.{uuid.uuid4().hex[:8]}"
        self.group = f"it-sla-{uuid.uuid4().hex[:6]}"
        self.gate = self.gate_on(kafka, settle)
        self.sweeper = Sweeper(
            db["clocks"], self.policy, self.clock, gate=self.gate, hold_retry=RETRY
        )

    def gate_on(self, kafka: KafkaSettings, settle: float) -> ActionsWatermark:
        probe = KafkaOffsetsProbe(kafka, f"{self.group}.{self.topic}", self.topic, timeout=3)
        self.probes.append(probe)
        return ActionsWatermark(
            probe, self.clock, settle=timedelta(seconds=settle), wait=0.5, poll=0.05
        )

    def publish(self, message: events_pb2.CaseAction) -> list[tuple[int, int]]:
        return produce(
            self.kafka.bootstrap_servers,
            self.topic,
            message.meta.tracking_id,
            [message.SerializeToString()],
        )

    async def consume(self, positions: list[tuple[int, int]]) -> None:
        """Run sla's actions consumer until it has committed past `positions`."""

        async def park(_topic: str, _value: bytes | None, reason: str) -> None:
            raise AssertionError(f"dead-lettered: {reason}")

        stop = asyncio.Event()
        consumer = EventConsumer(
            self.kafka,
            self.topic,
            self.group,
            events_pb2.CaseAction,
            self.handlers.handle_actions,
            park,
        )
        task = asyncio.create_task(consumer.run(stop))
        try:
            await asyncio.to_thread(
                wait_handled,
                self.kafka.bootstrap_servers,
                f"{self.group}.{self.topic}",
                self.topic,
                positions,
            )
        finally:
            stop.set()
            await task

    async def routed(self) -> str:
        tid = uuid.uuid4().hex[:8]
        await self.handlers.handle_routed([delivery(routed(tid))])
        return tid

    async def close(self) -> None:
        for probe in self.probes:
            await probe.close()

    async def sweep_at(self, seconds: float) -> int:
        self.clock.set(T0 + timedelta(seconds=seconds))
        return await asyncio.wait_for(self.sweeper.sweep_once(), 60)


@pytest.fixture
async def worlds(db: Any, kafka_settings: KafkaSettings) -> AsyncIterator[Callable[..., World]]:
    made: list[World] = []

    def make(settle: float = 0, policy: str = POLICY) -> World:
        made.append(World(db, kafka_settings, settle, policy))
        return made[-1]

    yield make
    for w in made:
        await w.close()


async def ombudsman(db: Any, tid: str) -> dict[str, Any]:
    doc = await db["clocks"].find_one({"_id": tid})
    assert doc is not None
    return {**next(c for c in doc["clocks"] if c["name"] == "ombudsman"), "doc": doc}


async def test_a_resolution_sla_has_not_heard_holds_the_escalation(
    db: Any, worlds: Callable[..., World]
) -> None:
    w = worlds()
    tid = await w.routed()
    # Resolved 10 s before the Ombudsman's deadline; published, not yet consumed by sla.
    resolved = action(tid, "resolved", OMBUDSMAN_DUE - 10, to_state="resolved")
    landed = w.publish(resolved)
    held = held_count()

    await w.sweep_at(OMBUDSMAN_DUE + 1)

    clock = await ombudsman(db, tid)
    assert clock["state"] == "running" and not clock["doc"]["escalated"]
    assert escalations(await swept_events(db, [tid])) == []
    assert held_count() - held == 1
    # Due again after the retry (the other clocks are breached and not due before it).
    assert clock["doc"]["next_due_at"] == w.clock.now() + RETRY

    await w.consume(landed)  # sla hears the resolution
    await w.sweep_at(OMBUDSMAN_DUE + 1 + RETRY.total_seconds())

    clock = await ombudsman(db, tid)
    assert clock["state"] == "met" and not clock["doc"]["escalated"]
    assert escalations(await swept_events(db, [tid])) == []


async def test_an_unresolved_report_escalates_once_every_action_is_heard(
    db: Any, worlds: Callable[..., World]
) -> None:
    w = worlds()
    tid = await w.routed()
    # An action for this report (not a resolution) sla has already applied.
    responded = action(tid, "responded", 100, to_state="in_progress")
    await w.consume(w.publish(responded))

    await w.sweep_at(OMBUDSMAN_DUE + 1)

    clock = await ombudsman(db, tid)
    assert clock["doc"]["escalated"]
    assert escalations(await swept_events(db, [tid])) == [f"{tid}:ombudsman:escalation"]


async def test_after_an_outage_the_escalation_waits_for_the_settle_time(
    db: Any, worlds: Callable[..., World]
) -> None:
    w = worlds(settle=30)
    tid = await w.routed()
    held = held_count()

    # sla starts hearing the broker at the deadline: it must hear it 30 s before deciding.
    await w.sweep_at(OMBUDSMAN_DUE + 1)
    assert not (await ombudsman(db, tid))["doc"]["escalated"]
    await w.sweep_at(OMBUDSMAN_DUE + 1 + RETRY.total_seconds())
    assert not (await ombudsman(db, tid))["doc"]["escalated"]
    assert held_count() - held == 2

    await w.sweep_at(OMBUDSMAN_DUE + 31 + RETRY.total_seconds())
    assert (await ombudsman(db, tid))["doc"]["escalated"]
    assert escalations(await swept_events(db, [tid])) == [f"{tid}:ombudsman:escalation"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_broker_holds_every_escalation(
    db: Any, worlds: Callable[..., World]
) -> None:
    w = worlds()
    unreachable = KafkaSettings(
        f"127.0.0.1:{closed_port()}", "PLAINTEXT", None, None, None, None, fetch_max_wait_ms=20
    )
    w.sweeper.gate = w.gate_on(unreachable, settle=0)
    tid = await w.routed()

    await w.sweep_at(OMBUDSMAN_DUE + 1)

    assert not (await ombudsman(db, tid))["doc"]["escalated"]
    assert escalations(await swept_events(db, [tid])) == []
    # and the other clocks' breaches were not held with it
    assert any(e["id"] == f"{tid}:first_response:breach" for e in await swept_events(db, [tid]))


async def test_an_action_published_within_the_hand_over_margin_is_heard_first(
    db: Any, worlds: Callable[..., World]
) -> None:
    """A resolution routing stored just before the deadline but published after it (its
    relay was slow): without a margin a sweep right after the deadline has heard everything
    published so far and hands the report over; with the margin (60 s here) the hand-over is
    decided only once everything published up to then is applied, the resolution with it."""
    margined = POLICY.replace(
        'ladder_interval = "10s"', 'ladder_interval = "10s"\nhandover_margin = "60s"'
    )
    w = worlds(policy=margined)
    tid = await w.routed()
    await w.sweep_at(OMBUDSMAN_DUE + 1)  # right after the deadline: nothing decided yet
    clock = await ombudsman(db, tid)
    assert clock["state"] == "running" and clock["grace"] == 60
    assert clock["doc"]["next_due_at"] == T0 + timedelta(seconds=OMBUDSMAN_DUE + 60)

    resolved = action(tid, "resolved", OMBUDSMAN_DUE - 1, to_state="resolved")
    await w.consume(w.publish(resolved))  # published (and heard) after the deadline
    await w.sweep_at(OMBUDSMAN_DUE + 60)

    clock = await ombudsman(db, tid)
    assert clock["state"] == "met" and not clock["doc"]["escalated"]
    assert escalations(await swept_events(db, [tid])) == []

    # The same late publication without a margin: handed over before it was heard.
    w0 = worlds()
    tid0 = await w0.routed()
    await w0.sweep_at(OMBUDSMAN_DUE + 1)
    assert escalations(await swept_events(db, [tid0])) == [f"{tid0}:ombudsman:escalation"]

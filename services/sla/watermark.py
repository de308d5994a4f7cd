"""How far sla has heard the institutions' actions: the gate on the Ombudsman escalation.

The sweep decides deadlines on the clocks the consumers keep. An answer or a resolution
reaches those clocks through routing's outbox, the broker and the `lapor.cases.actions` consumer;
while sla cannot hear that stream (a broker outage, a consumer far behind), a report resolved
in time still looks unresolved. Warnings and breaches decided on such a stale clock are
corrected when the action arrives (docs/sla.md: "decided on the action's time"), but the
hand-over to the Ombudsman cannot be taken back. So the sweep escalates a report only when sla
has provably heard every action published up to the Ombudsman deadline:

- **heard until T**: at T the broker's end offsets of `lapor.cases.actions` were read, and the
  consumer group has since committed (that is, applied) at least those offsets. Every action
  published before T is in the clocks.
- **reachable since S**: the broker has answered every probe since S. After an outage,
  routing's outbox relay publishes what it held back; a snapshot counts only when the broker
  has been reachable for ``settle`` before it was taken, so that backlog is in it.

The hand-over of a report whose Ombudsman deadline D has passed is due at D + the policy's
hand-over margin (``[escalation] handover_margin``): an action routing stored just before D
is published and applied by then. It happens when heard-until >= D + margin and
heard-until - reachable-since >= settle; otherwise the sweep holds it
(services/sla/sweep.py) and tries again. The probe is asked on demand, when a hand-over is
due and the last snapshot does not cover it, and waits briefly for the consumer to commit
past it; snapshots it did not confirm in that time are kept and confirmed by later reads (a
consumer that trails the end offsets by seconds under load still confirms them). A
background loop probes every few seconds so that an outage between hand-overs is noticed.

What this cannot see: an action routing stored but could not publish because routing itself
was down, not the broker (its relay publishes it when routing is back). The report card and
the overdue flag are corrected then; an escalation made meanwhile stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.clock import Clock, sleep_until_or_stop
from services.common.kafka import _client_options
from services.common.settings import KafkaSettings
from services.sla.metrics import ACTIONS_HEARD_UNTIL, BROKER_REACHABLE_SINCE

log = logging.getLogger(__name__)


class OffsetsProbe(Protocol):
    """The broker's view of one consumed topic, per partition."""

    async def ends(self) -> dict[int, int]:
        """End offsets (the offset the next message will get)."""
        ...

    async def committed(self) -> dict[int, int]:
        """The consumer group's committed offsets (a partition never committed: absent)."""
        ...

    async def close(self) -> None:
        """Drop the connection (the next request makes a new one)."""
        ...

    async def shut(self) -> None:
        """Close for good (shutdown)."""
        ...


@dataclass
class KafkaOffsetsProbe:
    """Asks the broker with one long-lived client (no group membership: it never joins the
    group, it only reads the group's committed offsets). Every request is bounded by
    ``timeout``: a broker that does not answer is an unreachable broker."""

    settings: KafkaSettings
    group_id: str  # the consumer group as the broker knows it: "<service group>.<topic>"
    topic: str
    timeout: float = 5.0
    _consumer: AIOKafkaConsumer | None = field(default=None, init=False, repr=False)
    _closed: bool = field(default=False, init=False, repr=False)
    #: The topic's partitions as the last ``ends`` read them (``committed`` asks for those).
    _tps: list[TopicPartition] | None = field(default=None, init=False, repr=False)

    async def _client(self) -> AIOKafkaConsumer:
        if self._closed:  # shut down: a late probe must not open a client nobody stops
            raise ConnectionError("the offsets probe is closed")
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                group_id=self.group_id,
                enable_auto_commit=False,
                request_timeout_ms=int(self.timeout * 1000),
                **_client_options(self.settings),
            )
            try:
                async with asyncio.timeout(self.timeout):
                    await consumer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await consumer.stop()
                raise
            self._consumer = consumer
        return self._consumer

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        # Fresh metadata each time: a topic created after this client started is in it
        # (`topics()` fetches the same but keeps only the names; the client's own cache
        # refreshes every few minutes).
        cluster = await consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(self.topic) or set()
        return [TopicPartition(self.topic, p) for p in sorted(partitions)]

    async def ends(self) -> dict[int, int]:
        try:
            async with asyncio.timeout(self.timeout):
                consumer = await self._client()
                tps = self._tps = await self._partitions(consumer)
                if not tps:  # the broker answered: no such topic, so nothing to hear
                    return {}
                offsets = await consumer.end_offsets(tps)
                return {tp.partition: offsets[tp] for tp in tps}
        except BaseException:
            await self.close()  # a fresh client next time
            raise

    async def committed(self) -> dict[int, int]:
        try:
            async with asyncio.timeout(self.timeout):
                consumer = await self._client()
                out: dict[int, int] = {}
                tps = self._tps if self._tps is not None else await self._partitions(consumer)
                for tp in tps:
                    offset = await consumer.committed(tp)
                    if offset is not None:
                        out[tp.partition] = offset
                return out
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop the client (a failed request also calls it: the next one opens a new one)."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def shut(self) -> None:
        self._closed = True
        await self.close()


@dataclass
class ActionsWatermark:
    """The escalation gate (see the module's docstring). `clock` is the sweep's clock: the
    snapshot times are compared with deadlines."""

    probe: OffsetsProbe
    clock: Clock
    #: How long the broker must have been reachable before a snapshot counts.
    settle: timedelta = timedelta(seconds=30)
    #: How long ``refresh`` waits for the consumer to commit past its snapshots.
    wait: float = 2.0
    poll: float = 0.1
    #: The background probe's period (``watch``).
    interval: float = 5.0
    #: Snapshots not yet confirmed that are kept (oldest dropped): a consumer that trails the
    #: end offsets by a few snapshots still confirms them, later.
    max_pending: int = 64
    _pending: list[tuple[datetime, dict[int, int]]] = field(default_factory=list, init=False)
    _heard_until: datetime | None = field(default=None, init=False)
    _reachable_since: datetime | None = field(default=None, init=False)
    _down: bool = field(default=False, init=False)
    _inflight: asyncio.Task[datetime | None] | None = field(default=None, init=False, repr=False)

    @property
    def heard_until(self) -> datetime | None:
        return self._heard_until

    @property
    def known_unreachable(self) -> bool:
        """The last probe failed. The sweep then does not probe on demand (a broker that does
        not answer would cost every round the probe's timeout); ``watch`` keeps probing."""
        return self._down

    def horizon(self) -> datetime | None:
        """The latest time an Ombudsman hand-over may be due at and happen now (a deadline
        plus the hand-over margin); None: none may."""
        heard, since = self._heard_until, self._reachable_since
        if heard is None or since is None or heard - since < self.settle:
            return None
        return heard

    def _unreachable(self, exc: BaseException) -> None:
        if self._reachable_since is not None:
            log.warning(
                "broker unreachable: Ombudsman escalations are held until sla has heard "
                "every action again",
                extra={"error": type(exc).__name__},
            )
        self._reachable_since = None
        self._down = True
        BROKER_REACHABLE_SINCE.set(0)

    def _reachable(self, at: datetime) -> None:
        self._down = False
        if self._reachable_since is None:
            self._reachable_since = at
            BROKER_REACHABLE_SINCE.set(at.timestamp())

    def _confirm(self, committed: dict[int, int]) -> bool:
        """Confirm the newest pending snapshot the committed offsets cover (and drop the older
        ones); whether every pending snapshot is confirmed."""
        covered = [
            i
            for i, (_, ends) in enumerate(self._pending)
            if all(committed.get(p, 0) >= end for p, end in ends.items())
        ]
        if covered:
            taken, _ = self._pending[covered[-1]]
            del self._pending[: covered[-1] + 1]
            if self._heard_until is None or taken > self._heard_until:
                self._heard_until = taken
                ACTIONS_HEARD_UNTIL.set(taken.timestamp())
        return not self._pending

    async def refresh(self) -> datetime | None:
        """Take a snapshot of the end offsets now and wait (at most ``wait`` seconds) for the
        consumer group to commit past it, confirming earlier snapshots on the way; returns
        the new horizon. A refresh already under way is joined, not repeated."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._refresh())
        return await asyncio.shield(self._inflight)

    async def _refresh(self) -> datetime | None:
        taken = self.clock.now()
        try:
            ends = await self.probe.ends()
        except Exception as exc:  # noqa: BLE001 - any failure: the broker is not heard
            self._unreachable(exc)
            return self.horizon()
        self._reachable(taken)
        self._pending.append((taken, ends))
        del self._pending[: -self.max_pending]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while True:
            try:
                committed = await self.probe.committed()
            except Exception as exc:  # noqa: BLE001
                self._unreachable(exc)
                return self.horizon()
            if self._confirm(committed) or loop.time() >= deadline:
                return self.horizon()
            await asyncio.sleep(self.poll)

    async def watch(self, stop: asyncio.Event) -> None:
        """Probe every ``interval``: notices an outage even when no escalation is due, and
        keeps the snapshot fresh."""
        try:
            while not stop.is_set():
                await self.refresh()
                if await sleep_until_or_stop(stop, self.interval):
                    break
        finally:
            if self._inflight is not None and not self._inflight.done():
                self._inflight.cancel()
            await self.probe.shut()

"""The escalation gate's bookkeeping (services/sla/watermark.py) with an in-memory probe of
our own port: when sla counts as having heard every action up to a time, and how an outage
and the settle period after it close the gate. The Kafka probe itself is tested against the
real broker in tests/integration/test_sla_escalation_gate.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from services.common.clock import ManualClock
from services.sla.watermark import ActionsWatermark

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


class Probe:
    """The broker as a test sets it: end offsets, the group's commits, reachable or not."""

    def __init__(self) -> None:
        self.end: dict[int, int] = {0: 0, 1: 0}
        self.done: dict[int, int] = {}
        self.down = False
        self.committed_calls = 0

    async def ends(self) -> dict[int, int]:
        if self.down:
            raise ConnectionError("broker unreachable")
        return dict(self.end)

    async def committed(self) -> dict[int, int]:
        self.committed_calls += 1
        if self.down:
            raise ConnectionError("broker unreachable")
        return dict(self.done)

    async def close(self) -> None:
        pass

    async def shut(self) -> None:
        pass


def gate(probe: Probe, clock: ManualClock, settle: float = 0) -> ActionsWatermark:
    return ActionsWatermark(
        probe, clock, settle=timedelta(seconds=settle), wait=0.05, poll=0.01, interval=1
    )


async def test_nothing_may_escalate_before_the_first_snapshot() -> None:
    assert gate(Probe(), ManualClock(T0)).horizon() is None


async def test_a_snapshot_the_group_has_committed_past_is_heard() -> None:
    probe, clock = Probe(), ManualClock(T0)
    probe.end, probe.done = {0: 4, 1: 2}, {0: 4, 1: 2}
    g = gate(probe, clock)
    assert await g.refresh() == T0
    clock.advance(timedelta(seconds=10))
    assert await g.refresh() == T0 + timedelta(seconds=10)


async def test_a_snapshot_with_unapplied_actions_is_not_heard() -> None:
    probe, clock = Probe(), ManualClock(T0)
    g = gate(probe, clock)
    assert await g.refresh() == T0  # nothing published yet: heard
    probe.end = {0: 5, 1: 2}  # an action on partition 0 the consumer has not committed
    probe.done = {0: 4, 1: 2}
    clock.advance(timedelta(seconds=10))
    assert await g.refresh() == T0  # still the old snapshot
    assert probe.committed_calls > 2  # it waited for the commit, polling
    probe.done = {0: 5, 1: 2}  # applied now
    clock.advance(timedelta(seconds=10))
    assert await g.refresh() == T0 + timedelta(seconds=20)


async def test_a_partition_never_committed_holds_the_snapshot() -> None:
    probe, clock = Probe(), ManualClock(T0)
    probe.end, probe.done = {0: 1, 1: 0}, {}
    assert await gate(probe, clock).refresh() is None


async def test_an_outage_closes_the_gate_until_the_broker_was_reachable_for_the_settle_time() -> (
    None
):
    probe, clock = Probe(), ManualClock(T0)
    g = gate(probe, clock, settle=30)
    assert await g.refresh() is None  # reachable since just now: not for 30 s yet
    clock.advance(timedelta(seconds=30))
    assert await g.refresh() == T0 + timedelta(seconds=30)
    probe.down = True
    clock.advance(timedelta(seconds=10))
    assert await g.refresh() is None  # unreachable: nothing escalates
    assert g.heard_until == T0 + timedelta(seconds=30)  # what was heard stays heard
    probe.down = False
    clock.advance(timedelta(seconds=600))
    # Back: routing's relay may still be publishing what it held during the outage.
    assert await g.refresh() is None
    clock.advance(timedelta(seconds=29))
    assert await g.refresh() is None
    clock.advance(timedelta(seconds=1))
    assert await g.refresh() == T0 + timedelta(seconds=670)


async def test_a_failed_commit_read_counts_as_unreachable() -> None:
    probe, clock = Probe(), ManualClock(T0)
    g = gate(probe, clock)
    assert await g.refresh() == T0

    async def failing() -> dict[int, int]:
        raise TimeoutError

    probe.committed = failing  # type: ignore[method-assign]
    clock.advance(timedelta(seconds=5))
    assert await g.refresh() is None


async def test_a_failed_probe_is_known_until_one_succeeds() -> None:
    probe, clock = Probe(), ManualClock(T0)
    g = gate(probe, clock)
    assert not g.known_unreachable  # not known before the first probe
    probe.down = True
    await g.refresh()
    assert g.known_unreachable
    probe.down = False
    await g.refresh()
    assert not g.known_unreachable


async def test_a_consumer_trailing_by_a_snapshot_still_confirms_it_later() -> None:
    """Under steady load the consumer commits behind the newest end offsets: a snapshot it
    had not reached within the wait stays pending and is confirmed by a later read."""
    probe, clock = Probe(), ManualClock(T0)
    g = gate(probe, clock)
    for step in range(1, 6):
        probe.done = dict(probe.end)  # the consumer reaches the previous snapshot's ends
        probe.end = {0: 10 * step, 1: 5 * step}  # while more is published
        clock.advance(timedelta(seconds=5))
        await g.refresh()
    # Each refresh confirmed the one before it: heard up to the snapshot 5 s ago.
    assert g.heard_until == T0 + timedelta(seconds=20)


async def test_concurrent_refreshes_share_one_probe() -> None:
    probe, clock = Probe(), ManualClock(T0)
    calls = 0
    original = probe.ends

    async def counted() -> dict[int, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return await original()

    probe.ends = counted  # type: ignore[method-assign]
    g = gate(probe, clock)
    results = await asyncio.gather(g.refresh(), g.refresh(), g.refresh())
    assert calls == 1 and results == [T0, T0, T0]


async def test_consumer_lag_is_what_the_group_has_not_committed() -> None:
    """services/sla/lag.py reads the same probe: end minus committed per partition, a
    partition never committed counting from 0."""
    from services.sla.lag import topic_lag

    probe = Probe()
    probe.end, probe.done = {0: 7, 1: 3}, {0: 4}
    assert await topic_lag(probe) == 3 + 3

"""Injected time, so 60-day deadlines can be tested in seconds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, when: datetime) -> None:
        self._now = when


class ScaledClock:
    """Runs `factor` times faster than real time from `origin` (demo and e2e runs)."""

    def __init__(self, factor: float, origin: datetime | None = None) -> None:
        self._factor = factor
        self._origin = origin or datetime.now(UTC)
        self._loop_start = datetime.now(UTC)

    def now(self) -> datetime:
        real = datetime.now(UTC) - self._loop_start
        return self._origin + real * self._factor


def doubling(first: float, times: int, cap: float) -> float:
    """`first` doubled `times` times (none for `times` below 1), at most `cap`: the growing
    pause of a retry."""
    return min(first * 2 ** min(max(times, 0), 30), cap)


async def sleep_until_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; return True when `stop` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
        return True
    except TimeoutError:
        return False

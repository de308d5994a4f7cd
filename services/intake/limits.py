"""Rate limits per contact (keyed hash) and per channel client: what is limited, and the
port that counts (ratelimit_store.py keeps the counters in MongoDB). Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from services.common.settings import Env


@dataclass(frozen=True)
class Limit:
    name: str  # "contact" or "client"
    count: int  # 0: no limit
    window: timedelta

    def window_of(self, now: datetime) -> tuple[int, datetime]:
        """(index, end) of the window `now` falls in."""
        seconds = self.window.total_seconds()
        index = int(now.timestamp() // seconds)
        return index, datetime.fromtimestamp((index + 1) * seconds, now.tzinfo)


@dataclass(frozen=True)
class Hit:
    limit: Limit
    key: str


@dataclass(frozen=True)
class RateLimits:
    per_contact: Limit
    per_client: Limit
    dedupe_window: timedelta

    @classmethod
    def from_env(cls, env: Env) -> RateLimits:
        return cls(
            per_contact=Limit(
                "contact",
                env.integer("LAPOR_INTAKE_LIMIT_PER_CONTACT", 10),
                timedelta(
                    seconds=env.integer("LAPOR_INTAKE_LIMIT_CONTACT_WINDOW_SECONDS", 3600, low=1)
                ),
            ),
            per_client=Limit(
                "client",
                env.integer("LAPOR_INTAKE_LIMIT_PER_CLIENT", 60_000),
                timedelta(
                    seconds=env.integer("LAPOR_INTAKE_LIMIT_CLIENT_WINDOW_SECONDS", 60, low=1)
                ),
            ),
            dedupe_window=timedelta(seconds=env.integer("LAPOR_INTAKE_DEDUPE_WINDOW_SECONDS", 600)),
        )

    @classmethod
    def unlimited(cls) -> RateLimits:
        return cls(
            Limit("contact", 0, timedelta(hours=1)),
            Limit("client", 0, timedelta(minutes=1)),
            timedelta(0),
        )


class RateLimiter(Protocol):
    async def hit(self, hits: list[Hit]) -> None:
        """Count the hits; raise ResourceExhausted when one is over its limit."""
        ...


class NoRateLimiter:
    async def hit(self, hits: list[Hit]) -> None:
        return None

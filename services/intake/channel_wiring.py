"""Wiring of the channel side of intake: client credentials, abuse hashing, rate limits."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from pymongo.asynchronous.database import AsyncDatabase

from services.common.clock import Clock, sleep_until_or_stop
from services.common.mongo import Doc
from services.common.runtime import Backfill, Startup, Worker, logged_backfill
from services.common.settings import Env, Secret, SettingsError
from services.intake.abuse import AbuseHasher, dedupe_bucket
from services.intake.channel_auth import SETTING, ChannelClients
from services.intake.limits import RateLimits
from services.intake.metrics import IDENTITIES_ERASED
from services.intake.ratelimit_store import MongoRateLimiter
from services.intake.store import MongoComplaintStore

log = logging.getLogger(__name__)
FORGET_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class ChannelSettings:
    clients: ChannelClients
    abuse_key: Secret
    limits: RateLimits
    # How long an anonymous report keeps the keyed hash of its post or institution reference
    # as its idempotency scope (0: for good).
    anonymous_scope_retention: timedelta = timedelta(days=7)
    # How long a report keeps its reporter's sealed identity once closed or archived (0: for
    # good). Personal data kept no longer than its purpose needs (UU 27/2022 on personal
    # data protection); the follow-up code still opens the report.
    identity_retention: timedelta = timedelta(days=365)
    # The backstop: the longest a report keeps its reporter's sealed identity after receipt,
    # whatever its case's state (one left open for good, or never routed); 0: no backstop.
    identity_max_age: timedelta = timedelta(days=1095)

    @classmethod
    def from_env(cls, env: Env) -> ChannelSettings:
        key = env.secret("LAPOR_ABUSE_HASH_KEY")
        if len(key.reveal()) < 32:
            raise SettingsError("LAPOR_ABUSE_HASH_KEY must have at least 32 characters")
        days = env.integer("LAPOR_INTAKE_ANONYMOUS_SCOPE_DAYS", 7, low=0, high=3650)
        identity_days = env.integer("LAPOR_INTAKE_IDENTITY_RETENTION_DAYS", 365, low=0, high=36500)
        max_days = env.integer("LAPOR_INTAKE_IDENTITY_MAX_DAYS", 1095, low=0, high=36500)
        return cls(
            ChannelClients.parse(env.text(SETTING)),
            key,
            RateLimits.from_env(env),
            timedelta(days=days),
            timedelta(days=identity_days),
            timedelta(days=max_days),
        )


@dataclass
class ChannelParts:
    clients: ChannelClients
    hasher: AbuseHasher
    limits: RateLimits
    limiter: MongoRateLimiter
    startup: list[Startup]
    workers: list[Worker]
    backfills: list[Backfill]


def wire_channels(
    settings: ChannelSettings, db: AsyncDatabase[Doc], store: MongoComplaintStore, clock: Clock
) -> ChannelParts:
    limiter = MongoRateLimiter(db["rate_limits"], clock)

    async def forget(stop: asyncio.Event) -> None:
        while not await sleep_until_or_stop(stop, FORGET_INTERVAL_SECONDS):
            try:
                await forget_expired(settings, store, clock)
            except Exception:  # noqa: BLE001 - next round
                log.warning("could not forget expired dedupe keys, scopes or identities; retrying")

    date_closures = logged_backfill(
        "date_undated_closures",
        lambda: store.date_undated_closures(clock.now()),
        "closed reports' identity retention counts from now",
    )
    date_identities = logged_backfill(
        "date_undated_identities",
        store.date_undated_identities,
        "identities' longest keep counts from their receipt",
    )

    return ChannelParts(
        clients=settings.clients,
        hasher=AbuseHasher(settings.abuse_key.reveal().encode()),
        limits=settings.limits,
        limiter=limiter,
        startup=[limiter.ensure_indexes],
        workers=[forget],
        backfills=[date_closures, date_identities],
    )


class Forgetting(Protocol):
    """What the forget round needs of the complaint store."""

    async def forget_dedupe_keys(self, before_bucket: int) -> int: ...
    async def forget_anonymous_scopes(self, received_before: datetime) -> int: ...
    async def forget_identities(self, closed_before: datetime) -> int: ...
    async def forget_stale_identities(self, received_before: datetime) -> int: ...


async def forget_expired(settings: ChannelSettings, store: Forgetting, clock: Clock) -> None:
    """One round of forgetting what intake keeps only for a while: the keyed contact hashes
    of past dedupe windows, anonymous reports' post or reference scopes, and the sealed
    identities (with the post or reference scope and the evidence file names) of reports
    closed longer than the identity retention, or received longer ago than the identity
    backstop whatever their state. A retention of 0 keeps."""
    now = clock.now()
    if settings.limits.dedupe_window.total_seconds() > 0:
        await store.forget_dedupe_keys(dedupe_bucket(now, settings.limits.dedupe_window))
    if settings.anonymous_scope_retention.total_seconds() > 0:
        await store.forget_anonymous_scopes(now - settings.anonymous_scope_retention)
    if settings.identity_retention.total_seconds() > 0:
        erased = await store.forget_identities(now - settings.identity_retention)
        if erased:
            IDENTITIES_ERASED.labels(reason="final").inc(erased)
            log.info("sealed identities erased after retention", extra={"reports": erased})
    if settings.identity_max_age.total_seconds() > 0:
        erased = await store.forget_stale_identities(now - settings.identity_max_age)
        if erased:
            IDENTITIES_ERASED.labels(reason="age").inc(erased)
            log.info("sealed identities erased after the longest keep", extra={"reports": erased})

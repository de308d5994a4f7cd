"""`services.common.mongo.ensure_ttl_index` against the real database: a TTL index is
created, its period changed in place, its partial filter changed by creating it again, and
dropped for "keep"; every replica may run it at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.common import mongo
from services.common.mongo import ensure_ttl_index

DAY = 86400


async def indexes_on(collection: Any, field: str) -> list[dict[str, Any]]:
    return [
        dict(index)
        async for index in await collection.list_indexes()
        if dict(index["key"]) == {field: 1}
    ]


async def test_a_changed_period_is_changed_in_place(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """collMod, not a rebuild of what may be a large index."""
    c = db["things"]
    await ensure_ttl_index(c, "at", 7 * DAY, {"done": True})
    [before] = await indexes_on(c, "at")

    async def no_drop(*_args: Any) -> None:
        raise AssertionError("the index was dropped")

    monkeypatch.setattr(mongo, "_drop_index", no_drop)
    assert before["expireAfterSeconds"] == 7 * DAY
    assert dict(before["partialFilterExpression"]) == {"done": True}

    await ensure_ttl_index(c, "at", 9 * DAY, {"done": True})
    await ensure_ttl_index(c, "at", 9 * DAY, {"done": True})  # again: nothing to change

    [after] = await indexes_on(c, "at")
    assert after == {**before, "expireAfterSeconds": 9 * DAY}


async def test_a_changed_partial_filter_creates_the_index_again(db: Any) -> None:
    c = db["things"]
    await ensure_ttl_index(c, "at", 7 * DAY)
    await ensure_ttl_index(c, "at", 7 * DAY, {"done": True})
    [index] = await indexes_on(c, "at")
    assert dict(index["partialFilterExpression"]) == {"done": True}

    await ensure_ttl_index(c, "at", 5 * DAY)  # and without one again
    [index] = await indexes_on(c, "at")
    assert index["expireAfterSeconds"] == 5 * DAY and "partialFilterExpression" not in index


async def test_keep_drops_the_ttl_index_and_leaves_a_plain_one(db: Any) -> None:
    c = db["things"]
    await ensure_ttl_index(c, "at", 7 * DAY, {"done": True})
    await ensure_ttl_index(c, "at", None)
    assert await indexes_on(c, "at") == []

    await c.create_index("at")  # an index some query needs, not a TTL one
    await ensure_ttl_index(c, "at", None)
    [plain] = await indexes_on(c, "at")
    assert "expireAfterSeconds" not in plain


async def test_replicas_starting_together_end_with_one_index(db: Any) -> None:
    c = db["things"]
    await ensure_ttl_index(c, "at", 7 * DAY)
    await asyncio.gather(*(ensure_ttl_index(c, "at", 3 * DAY, {"done": True}) for _ in range(3)))
    [index] = await indexes_on(c, "at")
    assert index["expireAfterSeconds"] == 3 * DAY
    assert dict(index["partialFilterExpression"]) == {"done": True}


async def test_sla_keeps_published_batches_for_its_setting(db: Any) -> None:
    """LAPOR_SLA_OUTBOX_KEEP_DAYS: the batches (Ombudsman escalations with title and body)
    are kept that long for a replay, and a changed setting changes the index at start (a
    constant used to be written into it, and create_index would refuse another period)."""
    from services.common.settings import Env, SettingsError
    from services.sla.bootstrap import SlaSettings
    from services.sla.relay import BATCH_OUTBOX, SlaRelay
    from tests.support import RecordingPublisher
    from tests.unit.test_settings import GOOD

    env = {**GOOD, "LAPOR_JWT_KEY": "k" * 32, "LAPOR_JWT_ISSUER": "https://sso.test"}
    assert SlaSettings.from_env(Env(env)).outbox_keep_days == 30
    assert (
        SlaSettings.from_env(Env({**env, "LAPOR_SLA_OUTBOX_KEEP_DAYS": "45"})).outbox_keep_days
        == 45
    )
    with pytest.raises(SettingsError, match="LAPOR_SLA_OUTBOX_KEEP_DAYS"):
        SlaSettings.from_env(Env({**env, "LAPOR_SLA_OUTBOX_KEEP_DAYS": "0"}))

    for days in (30, 45):
        await SlaRelay(db["clocks"], RecordingPublisher(), keep_days=days).ensure_indexes()
        [index] = await indexes_on(db[BATCH_OUTBOX], "published_at")
        assert index["expireAfterSeconds"] == days * DAY

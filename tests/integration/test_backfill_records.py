"""Upgrade backfills against the real database: one whose run found nothing to change is
recorded (collection ``backfills``) and not run again by a later start; one that changed
something runs again at the next start (an older pod may still write the old form during a
rolling upgrade); deleting the record runs it again."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from services.common.runtime import BACKFILLS, ServiceParts, ServiceRuntime


async def start_once(db: Any, backfill: Any) -> None:
    """What one process start does with its backfills (the runtime's background task)."""
    runtime = ServiceRuntime(
        ServiceParts(
            settings=cast(Any, None),
            db=db,
            publisher=cast(Any, None),
            register=lambda server: [],
            backfills=[backfill],
        )
    )
    await asyncio.wait_for(runtime._backfill(), 30)


async def test_a_backfill_is_recorded_once_it_finds_nothing_to_change(db: Any) -> None:
    left = [3, 0]  # documents still in the old form at each run
    runs: list[int] = []

    async def rewrite_old_form() -> int:
        runs.append(left[min(len(runs), len(left) - 1)])
        return runs[-1]

    await start_once(db, rewrite_old_form)  # changed 3: runs again next time
    assert await db[BACKFILLS].find_one({"_id": "rewrite_old_form"}) is None
    await start_once(db, rewrite_old_form)  # nothing left: recorded
    record = await db[BACKFILLS].find_one({"_id": "rewrite_old_form"})
    assert record is not None and record["done_at"] is not None
    await start_once(db, rewrite_old_form)  # skipped: no scan
    assert runs == [3, 0]

    await db[BACKFILLS].delete_one({"_id": "rewrite_old_form"})  # an operator asks again
    await start_once(db, rewrite_old_form)
    assert runs == [3, 0, 0]

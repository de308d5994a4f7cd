"""Admins changing the directory at the same moment, through two routing replicas, against
the real database process: each change is decided on the stored directory as the other left
it, so no parent loop slips between two checks; a replica's periodic refresh never replaces
its own newer change."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from services.common.errors import ValidationError
from services.common.regions import default_regions
from services.routing.domain.directory import Directory, Institution
from services.routing.institutions import InstitutionRegistry


def agency(id: str, parent: str | None = None) -> Institution:
    return Institution(id, id, "agency", parent, None, ())


def allow(_existing: Institution | None) -> None:
    return None


async def test_two_changes_that_together_make_a_loop_cannot_both_pass(db: Any) -> None:
    seed = Directory.seed(default_regions())
    collection = db[f"institutions_{uuid.uuid4().hex[:6]}"]
    one, two = InstitutionRegistry(collection, seed), InstitutionRegistry(collection, seed)
    a, b = f"nasional-a{uuid.uuid4().hex[:6]}", f"nasional-b{uuid.uuid4().hex[:6]}"
    await one.upsert(agency(a), allow)
    await one.upsert(agency(b), allow)
    # Each change's check waits (briefly) until the other has read the directory too, so the
    # two checks overlap: without one decided after the other, both would pass.
    checked = [asyncio.Event(), asyncio.Event()]

    def overlapping(me: int) -> Any:
        async def check(_existing: Institution | None) -> None:
            checked[me].set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(checked[1 - me].wait(), 0.5)

        return check

    results = await asyncio.gather(
        one.upsert(agency(a, parent=b), overlapping(0)),
        two.upsert(agency(b, parent=a), overlapping(1)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], ValidationError)
    assert "cycle" in refused[0].violations[0].rule
    fresh = InstitutionRegistry(collection, seed)
    await fresh.load()  # what every replica reads: a directory that holds together
    parents = {i: fresh().get(i).parent_id for i in (a, b)}  # type: ignore[union-attr]
    assert parents in ({a: b, b: None}, {a: None, b: a})


async def test_a_refresh_read_before_a_change_does_not_hide_it(db: Any) -> None:
    seed = Directory.seed(default_regions())
    collection = db[f"institutions_{uuid.uuid4().hex[:6]}"]
    registry = InstitutionRegistry(collection, seed)
    new = agency(f"nasional-c{uuid.uuid4().hex[:6]}")
    await registry.upsert(new, allow)
    # A refresh whose read of the counter came before the change committed: simulated by
    # setting the stored counter back, as the read would have seen it.
    await db[f"{collection.name}_meta"].update_one({"_id": "directory"}, {"$inc": {"version": -1}})
    await collection.delete_one({"_id": new.id})
    await registry.load()
    assert registry().get(new.id) is not None  # this replica's own change stays in force


async def test_a_unit_added_through_one_replica_is_known_at_once_through_another(
    db: Any,
) -> None:
    seed = Directory.seed(default_regions())
    collection = db[f"institutions_{uuid.uuid4().hex[:6]}"]
    a, b = InstitutionRegistry(collection, seed), InstitutionRegistry(collection, seed)
    unit = Institution(
        f"pemda-51.08/upt-{uuid.uuid4().hex[:6]}", "UPT Pasar", "unit", "pemda-51.08", "51.08", ()
    )
    await a.upsert(unit, allow)
    assert b().get(unit.id) is None  # b's copy is older than its next refresh
    assert await b.knows(unit.id)
    assert b().get(unit.id) is not None
    assert not await b.knows("pemda-51.08/tidak-ada")

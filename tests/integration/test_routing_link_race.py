"""Near-duplicates routed at the same moment by two routing replicas (different partitions)
are still linked: each replica looks again after its own insert for cases the other stored
meanwhile. Against the real database process; replica A's candidate query is held until
replica B has stored its case, the interleaving that used to leave them unlinked."""

from __future__ import annotations

import uuid
from typing import Any

from lapor.v1 import common_pb2, events_pb2

from services.common.clock import ManualClock
from services.common.kafka import Delivery
from services.common.regions import default_regions
from services.routing.case_store import CaseStore
from services.routing.domain.classifier import TopicClassifier
from services.routing.domain.directory import Directory
from services.routing.domain.rules import DEFAULT_RULES_FILE, RuleSet
from services.routing.handlers import RoutingHandlers
from tests.integration.test_sla_store import T0

BODY = "Sampah menumpuk di pinggir jalan dekat pasar, bau busuk dan tidak diangkut seminggu."


def complaint(tid: str, place: str, extra: str = "") -> Delivery[events_pb2.ComplaintReceived]:
    message = events_pb2.ComplaintReceived(
        meta=common_pb2.EventMeta(event_id=f"{tid}:received", tracking_id=tid),
        title=f"Sampah menumpuk {place}",
        body=BODY + extra,
        region_code="51.08",
        classification=common_pb2.CLASSIFICATION_COMPLAINT,
    )
    message.meta.occurred_at.FromDatetime(T0)
    return Delivery(message, tid, 0, 0)


class HeldCursor:
    """The real cursor; once its candidates are read, `meanwhile` runs (once)."""

    def __init__(self, real: Any, cases: HoldingCases) -> None:
        self._real, self._cases = real, cases

    def sort(self, *args: Any, **kwargs: Any) -> HeldCursor:
        self._real = self._real.sort(*args, **kwargs)
        return self

    async def to_list(self, length: int | None = None) -> list[Any]:
        found = await self._real.to_list(length)
        if self._cases.meanwhile is not None:
            meanwhile, self._cases.meanwhile = self._cases.meanwhile, None
            await meanwhile()
        return list(found)

    def __aiter__(self) -> Any:
        return self._real.__aiter__()


class HoldingCases:
    """The real cases collection (every call goes to it); the first candidate query's
    result is handed back only after `meanwhile` ran."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.meanwhile: Any = None

    def find(self, *args: Any, **kwargs: Any) -> Any:
        return HeldCursor(self._real.find(*args, **kwargs), self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def replica(cases: Any) -> RoutingHandlers:
    regions = default_regions()
    directory = Directory.seed(regions)
    rules = RuleSet.load(DEFAULT_RULES_FILE, directory)
    return RoutingHandlers(
        CaseStore(cases), lambda: directory, lambda: rules, TopicClassifier.default(), regions,
        ManualClock(T0),
    )  # fmt: skip


async def test_near_duplicates_routed_at_once_by_two_replicas_are_linked(db: Any) -> None:
    name = f"cases_{uuid.uuid4().hex[:6]}"
    held = HoldingCases(db[name])
    a, b = replica(held), replica(db[name])
    await b.ensure_indexes()
    place = f"Desa Banyuasri {uuid.uuid4().hex[:6]}"
    first, second = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]

    async def b_stores_its_case() -> None:
        await b.handle_received([complaint(second, place, " Tolong.")])

    held.meanwhile = b_stores_its_case
    await a.handle_received([complaint(first, place)])
    assert held.meanwhile is None  # the interleaving happened
    docs = {d["_id"]: d async for d in db[name].find({"_id": {"$in": [first, second]}})}
    assert docs[first]["topic"] == docs[second]["topic"] is not None
    # Stored on one of the two; the other side's link follows from it (linked_from).
    linked_from = await b.store.linked_from([first, second])
    assert second in set(docs[first].get("similar", [])) | set(linked_from[first])
    assert first in set(docs[second].get("similar", [])) | set(linked_from[second])

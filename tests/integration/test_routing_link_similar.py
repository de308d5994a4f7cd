"""Near-duplicate linking in routing (services/routing/handlers.py ``_link_similar``) against
the real database process: the candidates come from the real query (topic, region, the
window's start, newest first, at most MAX_CANDIDATES) on a real ``CaseStore``.

``_link_similar`` is called directly; the rest of RoutingHandlers is real but unused by the
method. The collection is wrapped only to record the queries it is sent (every call goes to
the real collection). Fingerprints are made as handle_received makes them. Times are whole
milliseconds, as the database keeps them. The similarity measure itself is unit-tested in
tests/unit/test_routing_link_similar.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from services.common.clock import ManualClock
from services.common.mongo import Doc
from services.common.regions import RegionTable, default_regions
from services.routing.case_store import CaseStore
from services.routing.domain import similarity
from services.routing.domain.classifier import TopicClassifier
from services.routing.domain.directory import Directory
from services.routing.domain.rules import RuleSet
from services.routing.handlers import Routed, RoutingHandlers
from tests.unit.test_routing_link_similar import (
    CLOSE,
    DIFFERENT,
    NEAR_DUPLICATE,
    ORIGINAL,
    fingerprint,
)

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
REGION, OTHER_REGION = "51.08", "51.71"
TOPIC, OTHER_TOPIC = "kebersihan", "infrastruktur"


class RecordingCases:
    """The real cases collection, noting the filter of each ``find``."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.queries: list[dict[str, Any]] = []

    def find(self, query: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        self.queries.append(query)
        return self._real.find(query, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture(scope="module")
def classifier() -> TopicClassifier:
    return TopicClassifier.default()


@pytest.fixture(scope="module")
def regions() -> RegionTable:
    return default_regions()


def stored(
    classifier: TopicClassifier,
    case_id: str,
    text: str,
    received_at: datetime,
    region: str = REGION,
    topic: str | None = TOPIC,
) -> Doc:
    return {
        "_id": case_id,
        "region_code": region,
        "topic": topic,
        "received_at": received_at,
        "fingerprint": fingerprint(classifier, text),
        "similar": [],
    }


def new(
    classifier: TopicClassifier,
    case_id: str,
    text: str,
    received_at: datetime = NOW,
    region: str = REGION,
    topic: str | None = TOPIC,
) -> Routed:
    doc = stored(classifier, case_id, text, received_at, region, topic)
    return Routed(doc, doc["fingerprint"], [])


async def link(
    db: Any,
    classifier: TopicClassifier,
    regions: RegionTable,
    earlier: list[Doc],
    batch: list[Routed],
) -> RecordingCases:
    """Store `earlier` as cases (with the store's indexes), then link `batch`."""
    await CaseStore(db["cases"]).ensure_indexes()
    if earlier:
        await db["cases"].insert_many(earlier)
    cases = RecordingCases(db["cases"])
    routing = RoutingHandlers(
        store=CaseStore(cases),  # type: ignore[arg-type]
        directory=lambda: cast(Directory, None),  # not used by _link_similar
        rules=lambda: cast(RuleSet, None),  # not used by _link_similar
        classifier=classifier,
        regions=regions,
        clock=ManualClock(NOW),
    )
    await routing._link_similar(batch)
    return cases


async def test_same_topic_and_region_within_the_window_is_linked(
    db: Any, classifier: TopicClassifier, regions: RegionTable
) -> None:
    earlier = [stored(classifier, "OLD", ORIGINAL, NOW - timedelta(days=3))]
    item = new(classifier, "NEW", NEAR_DUPLICATE)
    cases = await link(db, classifier, regions, earlier, [item])
    assert item.doc["similar"] == ["OLD"]
    # One query, for the topic and region, from the start of the window.
    assert cases.queries == [
        {
            "region_code": REGION,
            "topic": TOPIC,
            "received_at": {"$gte": NOW - similarity.WINDOW},
        }
    ]


async def test_another_region_is_not_linked(
    db: Any, classifier: TopicClassifier, regions: RegionTable
) -> None:
    earlier = [stored(classifier, "OLD", ORIGINAL, NOW - timedelta(days=1), region=OTHER_REGION)]
    item = new(classifier, "NEW", NEAR_DUPLICATE)
    await link(db, classifier, regions, earlier, [item])
    assert item.doc["similar"] == []


async def test_another_topic_is_not_linked(
    db: Any, classifier: TopicClassifier, regions: RegionTable
) -> None:
    earlier = [stored(classifier, "OLD", ORIGINAL, NOW - timedelta(days=1), topic=OTHER_TOPIC)]
    item = new(classifier, "NEW", NEAR_DUPLICATE)
    await link(db, classifier, regions, earlier, [item])
    assert item.doc["similar"] == []


async def test_older_than_the_window_is_not_linked(
    db: Any, classifier: TopicClassifier, regions: RegionTable
) -> None:
    earlier = [
        stored(classifier, "OLD", ORIGINAL, NOW - similarity.WINDOW - timedelta(milliseconds=1)),
        stored(classifier, "OLDER", ORIGINAL, NOW - timedelta(days=30)),
    ]
    item = new(classifier, "NEW", NEAR_DUPLICATE)
    await link(db, classifier, regions, earlier, [item])
    assert item.doc["similar"] == []


async def test_exactly_at_the_window_start_is_linked(
    db: Any, classifier: TopicClassifier, regions: RegionTable
) -> None:
    """The window is closed at its start: ``$gte`` in the query and ``>=`` in the per-case
    check, so a case received exactly WINDOW (14 days) before is still linked."""
    earlier = [stored(classifier, "EDGE", ORIGINAL, NOW - similarity.WINDOW)]
    item = new(classifier, "NEW", NEAR_DUPLICATE)
    await link(db, classifier, regions, earlier, [item])
    assert item.doc["similar"] == ["EDGE"]


async def test_dissimilar_text_is_not_linked(
    db: Any, classifier: TopicClassifier, regions: RegionTable
) -> None:
    earlier = [stored(classifier, "OLD", DIFFERENT, NOW - timedelta(days=1))]
    item = new(classifier, "NEW", ORIGINAL)
    await link(db, classifier, regions, earlier, [item])
    assert item.doc["similar"] == []


async def test_only_the_matching_cases_among_many_are_linked_most_alike_first(
    db: Any, classifier: TopicClassifier, regions: RegionTable
) -> None:
    earlier = [
        stored(classifier, "EXACT", NEAR_DUPLICATE, NOW - timedelta(days=2)),
        stored(classifier, "CLOSE", CLOSE, NOW - timedelta(days=1)),
        stored(classifier, "OTHER-TEXT", DIFFERENT, NOW - timedelta(days=1)),
        stored(classifier, "OTHER-REGION", ORIGINAL, NOW, region=OTHER_REGION),
        stored(classifier, "OTHER-TOPIC", ORIGINAL, NOW, topic=OTHER_TOPIC),
        stored(classifier, "TOO-OLD", ORIGINAL, NOW - timedelta(days=15)),
    ]
    item = new(classifier, "NEW", NEAR_DUPLICATE)
    await link(db, classifier, regions, earlier, [item])
    assert item.doc["similar"] == ["EXACT", "CLOSE"]


async def test_a_redelivered_case_is_not_linked_to_itself(
    db: Any, classifier: TopicClassifier, regions: RegionTable
) -> None:
    earlier = [
        stored(classifier, "SAME", NEAR_DUPLICATE, NOW),
        stored(classifier, "OLD", ORIGINAL, NOW - timedelta(days=1)),
    ]
    item = new(classifier, "SAME", NEAR_DUPLICATE)
    await link(db, classifier, regions, earlier, [item])
    assert item.doc["similar"] == ["OLD"]


async def test_each_case_of_a_batch_uses_its_own_window(
    db: Any, classifier: TopicClassifier, regions: RegionTable
) -> None:
    """One query per topic and region reaches back from the batch's oldest case; each case
    then keeps only the stored cases within its own window."""
    earlier = [stored(classifier, "S", ORIGINAL, NOW - timedelta(days=20))]
    recent = new(classifier, "RECENT", NEAR_DUPLICATE, NOW)
    backlog = new(classifier, "BACKLOG", NEAR_DUPLICATE, NOW - timedelta(days=10))
    cases = await link(db, classifier, regions, earlier, [recent, backlog])
    assert len(cases.queries) == 1
    assert cases.queries[0]["received_at"] == {"$gte": NOW - timedelta(days=10) - similarity.WINDOW}
    assert "S" in backlog.doc["similar"]  # 10 days apart
    assert "S" not in recent.doc["similar"]  # 20 days apart: fetched, but outside its window


async def test_cases_of_one_batch_link_to_the_ones_before_them(
    db: Any, classifier: TopicClassifier, regions: RegionTable
) -> None:
    first = new(classifier, "FIRST", ORIGINAL, NOW - timedelta(minutes=2))
    second = new(classifier, "SECOND", NEAR_DUPLICATE, NOW - timedelta(minutes=1))
    elsewhere = new(classifier, "ELSEWHERE", NEAR_DUPLICATE, NOW, region=OTHER_REGION)
    cases = await link(db, classifier, regions, [], [first, second, elsewhere])
    assert first.doc["similar"] == []
    assert second.doc["similar"] == ["FIRST"]
    assert elsewhere.doc["similar"] == []
    assert {(q["region_code"], q["topic"]) for q in cases.queries} == {
        (REGION, TOPIC),
        (OTHER_REGION, TOPIC),
    }


async def test_cases_without_topic_or_words_are_not_compared(
    db: Any, classifier: TopicClassifier, regions: RegionTable
) -> None:
    earlier = [stored(classifier, "OLD", ORIGINAL, NOW - timedelta(days=1), topic=None)]
    untopical = new(classifier, "NO-TOPIC", NEAR_DUPLICATE, topic=None)
    empty = Routed({**stored(classifier, "EMPTY", "", NOW), "fingerprint": []}, [], [])
    cases = await link(db, classifier, regions, earlier, [untopical, empty])
    assert cases.queries == []
    assert untopical.doc["similar"] == [] and empty.doc["similar"] == []


async def test_at_most_max_candidates_recent_cases_are_compared(
    db: Any, classifier: TopicClassifier, regions: RegionTable
) -> None:
    """The query keeps the MAX_CANDIDATES most recent cases: a near-duplicate behind that many
    newer cases of the topic and region is not found (a bound, pinned on purpose)."""
    filler = [
        stored(classifier, f"F{i:03d}", DIFFERENT, NOW - timedelta(minutes=i + 1))
        for i in range(similarity.MAX_CANDIDATES)
    ]
    earlier = [*filler, stored(classifier, "BEHIND", ORIGINAL, NOW - timedelta(days=1))]
    item = new(classifier, "NEW", NEAR_DUPLICATE)
    await link(db, classifier, regions, earlier, [item])
    assert item.doc["similar"] == []


async def test_cases_of_one_batch_further_apart_than_the_window_are_not_linked(
    db: Any, classifier: TopicClassifier, regions: RegionTable
) -> None:
    old = new(classifier, "OLD", ORIGINAL, NOW - timedelta(days=30))
    recent = new(classifier, "RECENT", NEAR_DUPLICATE, NOW)
    await link(db, classifier, regions, [], [old, recent])
    assert recent.doc["similar"] == []

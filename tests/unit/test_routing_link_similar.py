"""Near-duplicate linking in routing (services/routing/handlers.py ``_link_similar``).

``_link_similar`` is called directly: it needs only ``store.cases`` (``find(filter,
projection).sort(field, -1).to_list(n)``), so the store is an in-memory fake of exactly that,
which applies the filter the code sends (equality and ``$gte``). The rest of RoutingHandlers is
real but unused by the method. Fingerprints are made as handle_received makes them.
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

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
REGION, OTHER_REGION = "51.08", "51.71"
TOPIC, OTHER_TOPIC = "kebersihan", "infrastruktur"

ORIGINAL = "Sampah menumpuk di pasar Banyuasri, bau busuk tidak diangkut seminggu"
NEAR_DUPLICATE = "sampah numpuk di pasar banyuasri bau busuk gk diangkut seminggu!!"
CLOSE = ORIGINAL + ", warga resah"  # alike (Jaccard 7/9) but not the same
DIFFERENT = "Sampah dibakar warga di lapangan, asapnya masuk rumah tiap sore"


class FakeCursor:
    def __init__(self, docs: list[Doc]) -> None:
        self._docs = docs

    def sort(self, field: str, direction: int) -> FakeCursor:
        self._docs.sort(key=lambda d: d[field], reverse=direction < 0)
        return self

    async def to_list(self, length: int | None = None) -> list[Doc]:
        return self._docs[:length] if length is not None else self._docs


def _matches(doc: Doc, query: dict[str, Any]) -> bool:
    for field, condition in query.items():
        value = doc.get(field)
        if isinstance(condition, dict):
            for op, operand in condition.items():
                if op != "$gte":
                    raise AssertionError(f"fake does not know {op}")
                if value is None or not value >= operand:
                    return False
        elif value != condition:
            return False
    return True


class FakeCases:
    """The few AsyncCollection methods _link_similar calls, over a list of stored cases."""

    def __init__(self, docs: list[Doc]) -> None:
        self.docs = docs
        self.queries: list[dict[str, Any]] = []

    def find(self, query: dict[str, Any], projection: dict[str, int]) -> FakeCursor:
        self.queries.append(query)
        keep = ["_id", *projection]
        found = [{k: d[k] for k in keep if k in d} for d in self.docs if _matches(d, query)]
        return FakeCursor(found)


class FakeStore:
    def __init__(self, docs: list[Doc]) -> None:
        self.cases = FakeCases(docs)


@pytest.fixture(scope="module")
def classifier() -> TopicClassifier:
    return TopicClassifier.default()


@pytest.fixture(scope="module")
def regions() -> RegionTable:
    return default_regions()


def fingerprint(classifier: TopicClassifier, text: str) -> list[int]:
    return similarity.shingles(classifier.normaliser.words(text))


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


def handlers(
    classifier: TopicClassifier, regions: RegionTable, docs: list[Doc]
) -> tuple[RoutingHandlers, FakeCases]:
    store = FakeStore(docs)
    routing = RoutingHandlers(
        store=cast(CaseStore, store),
        directory=lambda: cast(Directory, None),  # not used by _link_similar
        rules=lambda: cast(RuleSet, None),  # not used by _link_similar
        classifier=classifier,
        regions=regions,
        clock=ManualClock(NOW),
    )
    return routing, store.cases


async def link(
    classifier: TopicClassifier, regions: RegionTable, earlier: list[Doc], batch: list[Routed]
) -> FakeCases:
    routing, cases = handlers(classifier, regions, earlier)
    await routing._link_similar(batch)
    return cases


def test_the_texts_are_near_duplicates_or_not(classifier: TopicClassifier) -> None:
    """The premise of the other tests, with the shipped threshold."""
    a = fingerprint(classifier, ORIGINAL)
    assert similarity.jaccard(a, fingerprint(classifier, NEAR_DUPLICATE)) >= similarity.THRESHOLD
    assert similarity.THRESHOLD <= similarity.jaccard(a, fingerprint(classifier, CLOSE)) < 1
    assert similarity.jaccard(a, fingerprint(classifier, DIFFERENT)) < similarity.THRESHOLD
    assert similarity.WINDOW.days == 14 and not similarity.WINDOW.seconds


async def test_same_topic_and_region_within_the_window_is_linked(
    classifier: TopicClassifier, regions: RegionTable
) -> None:
    earlier = [stored(classifier, "OLD", ORIGINAL, NOW - timedelta(days=3))]
    item = new(classifier, "NEW", NEAR_DUPLICATE)
    cases = await link(classifier, regions, earlier, [item])
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
    classifier: TopicClassifier, regions: RegionTable
) -> None:
    earlier = [stored(classifier, "OLD", ORIGINAL, NOW - timedelta(days=1), region=OTHER_REGION)]
    item = new(classifier, "NEW", NEAR_DUPLICATE)
    await link(classifier, regions, earlier, [item])
    assert item.doc["similar"] == []


async def test_another_topic_is_not_linked(
    classifier: TopicClassifier, regions: RegionTable
) -> None:
    earlier = [stored(classifier, "OLD", ORIGINAL, NOW - timedelta(days=1), topic=OTHER_TOPIC)]
    item = new(classifier, "NEW", NEAR_DUPLICATE)
    await link(classifier, regions, earlier, [item])
    assert item.doc["similar"] == []


async def test_older_than_the_window_is_not_linked(
    classifier: TopicClassifier, regions: RegionTable
) -> None:
    earlier = [
        stored(classifier, "OLD", ORIGINAL, NOW - similarity.WINDOW - timedelta(microseconds=1)),
        stored(classifier, "OLDER", ORIGINAL, NOW - timedelta(days=30)),
    ]
    item = new(classifier, "NEW", NEAR_DUPLICATE)
    await link(classifier, regions, earlier, [item])
    assert item.doc["similar"] == []


async def test_exactly_at_the_window_start_is_linked(
    classifier: TopicClassifier, regions: RegionTable
) -> None:
    """The window is closed at its start: ``$gte`` in the query and ``>=`` in the per-case
    check, so a case received exactly WINDOW (14 days) before is still linked."""
    earlier = [stored(classifier, "EDGE", ORIGINAL, NOW - similarity.WINDOW)]
    item = new(classifier, "NEW", NEAR_DUPLICATE)
    await link(classifier, regions, earlier, [item])
    assert item.doc["similar"] == ["EDGE"]


async def test_dissimilar_text_is_not_linked(
    classifier: TopicClassifier, regions: RegionTable
) -> None:
    earlier = [stored(classifier, "OLD", DIFFERENT, NOW - timedelta(days=1))]
    item = new(classifier, "NEW", ORIGINAL)
    await link(classifier, regions, earlier, [item])
    assert item.doc["similar"] == []


async def test_only_the_matching_cases_among_many_are_linked_most_alike_first(
    classifier: TopicClassifier, regions: RegionTable
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
    await link(classifier, regions, earlier, [item])
    assert item.doc["similar"] == ["EXACT", "CLOSE"]


async def test_a_redelivered_case_is_not_linked_to_itself(
    classifier: TopicClassifier, regions: RegionTable
) -> None:
    earlier = [
        stored(classifier, "SAME", NEAR_DUPLICATE, NOW),
        stored(classifier, "OLD", ORIGINAL, NOW - timedelta(days=1)),
    ]
    item = new(classifier, "SAME", NEAR_DUPLICATE)
    await link(classifier, regions, earlier, [item])
    assert item.doc["similar"] == ["OLD"]


async def test_each_case_of_a_batch_uses_its_own_window(
    classifier: TopicClassifier, regions: RegionTable
) -> None:
    """One query per topic and region reaches back from the batch's oldest case; each case
    then keeps only the stored cases within its own window."""
    earlier = [stored(classifier, "S", ORIGINAL, NOW - timedelta(days=20))]
    recent = new(classifier, "RECENT", NEAR_DUPLICATE, NOW)
    backlog = new(classifier, "BACKLOG", NEAR_DUPLICATE, NOW - timedelta(days=10))
    cases = await link(classifier, regions, earlier, [recent, backlog])
    assert len(cases.queries) == 1
    assert cases.queries[0]["received_at"] == {"$gte": NOW - timedelta(days=10) - similarity.WINDOW}
    assert "S" in backlog.doc["similar"]  # 10 days apart
    assert "S" not in recent.doc["similar"]  # 20 days apart: fetched, but outside its window


async def test_cases_of_one_batch_link_to_the_ones_before_them(
    classifier: TopicClassifier, regions: RegionTable
) -> None:
    first = new(classifier, "FIRST", ORIGINAL, NOW - timedelta(minutes=2))
    second = new(classifier, "SECOND", NEAR_DUPLICATE, NOW - timedelta(minutes=1))
    elsewhere = new(classifier, "ELSEWHERE", NEAR_DUPLICATE, NOW, region=OTHER_REGION)
    cases = await link(classifier, regions, [], [first, second, elsewhere])
    assert first.doc["similar"] == []
    assert second.doc["similar"] == ["FIRST"]
    assert elsewhere.doc["similar"] == []
    assert {(q["region_code"], q["topic"]) for q in cases.queries} == {
        (REGION, TOPIC),
        (OTHER_REGION, TOPIC),
    }


async def test_cases_without_topic_or_words_are_not_compared(
    classifier: TopicClassifier, regions: RegionTable
) -> None:
    earlier = [stored(classifier, "OLD", ORIGINAL, NOW - timedelta(days=1), topic=None)]
    untopical = new(classifier, "NO-TOPIC", NEAR_DUPLICATE, topic=None)
    empty = Routed({**stored(classifier, "EMPTY", "", NOW), "fingerprint": []}, [], [])
    cases = await link(classifier, regions, earlier, [untopical, empty])
    assert cases.queries == []
    assert untopical.doc["similar"] == [] and empty.doc["similar"] == []


async def test_at_most_max_candidates_recent_cases_are_compared(
    classifier: TopicClassifier, regions: RegionTable
) -> None:
    """The query keeps the MAX_CANDIDATES most recent cases: a near-duplicate behind that many
    newer cases of the topic and region is not found (a bound, pinned on purpose)."""
    filler = [
        stored(classifier, f"F{i:03d}", DIFFERENT, NOW - timedelta(minutes=i + 1))
        for i in range(similarity.MAX_CANDIDATES)
    ]
    earlier = [*filler, stored(classifier, "BEHIND", ORIGINAL, NOW - timedelta(days=1))]
    item = new(classifier, "NEW", NEAR_DUPLICATE)
    await link(classifier, regions, earlier, [item])
    assert item.doc["similar"] == []


async def test_cases_of_one_batch_further_apart_than_the_window_are_not_linked(
    classifier: TopicClassifier, regions: RegionTable
) -> None:
    old = new(classifier, "OLD", ORIGINAL, NOW - timedelta(days=30))
    recent = new(classifier, "RECENT", NEAR_DUPLICATE, NOW)
    await link(classifier, regions, [], [old, recent])
    assert recent.doc["similar"] == []

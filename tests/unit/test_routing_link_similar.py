"""The similarity measure behind routing's near-duplicate linking, on its own: the texts the
linking tests use are near-duplicates (or not) with the shipped threshold and window.

``_link_similar``'s query (topic, region, window, newest first, at most MAX_CANDIDATES) is
MongoDB behaviour: those tests run against the real database process, in
tests/integration/test_routing_link_similar.py.
"""

from __future__ import annotations

import pytest

from services.routing.domain import similarity
from services.routing.domain.classifier import TopicClassifier

ORIGINAL = "Sampah menumpuk di pasar Banyuasri, bau busuk tidak diangkut seminggu"
NEAR_DUPLICATE = "sampah numpuk di pasar banyuasri bau busuk gk diangkut seminggu!!"
CLOSE = ORIGINAL + ", warga resah"  # alike (Jaccard 7/9) but not the same
DIFFERENT = "Sampah dibakar warga di lapangan, asapnya masuk rumah tiap sore"


@pytest.fixture(scope="module")
def classifier() -> TopicClassifier:
    return TopicClassifier.default()


def fingerprint(classifier: TopicClassifier, text: str) -> list[int]:
    return similarity.shingles(classifier.normaliser.words(text))


def test_the_texts_are_near_duplicates_or_not(classifier: TopicClassifier) -> None:
    """The premise of the other tests, with the shipped threshold."""
    a = fingerprint(classifier, ORIGINAL)
    assert similarity.jaccard(a, fingerprint(classifier, NEAR_DUPLICATE)) >= similarity.THRESHOLD
    assert similarity.THRESHOLD <= similarity.jaccard(a, fingerprint(classifier, CLOSE)) < 1
    assert similarity.jaccard(a, fingerprint(classifier, DIFFERENT)) < similarity.THRESHOLD
    assert similarity.WINDOW.days == 14 and not similarity.WINDOW.seconds

"""Near-duplicate reports: word shingles of the normalised text and their Jaccard similarity.

Reports of the same topic and region within :data:`WINDOW` whose shingle sets overlap at least
:data:`THRESHOLD` are linked, so an institution can answer them together.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from datetime import timedelta

SHINGLE_WORDS = 2
THRESHOLD = 0.5
WINDOW = timedelta(days=14)
MAX_LINKS = 20
MAX_CANDIDATES = 100  # most recent cases of a topic and region compared with a new one


def shingles(words: Sequence[str], size: int = SHINGLE_WORDS) -> list[int]:
    """Hashed word n-grams (CRC-32), sorted and unique: small enough to store with a case."""
    if not words:
        return []
    if len(words) < size:
        grams = [" ".join(words)]
    else:
        grams = [" ".join(words[i : i + size]) for i in range(len(words) - size + 1)]
    return sorted({zlib.crc32(g.encode()) for g in grams})


def jaccard(a: Iterable[int], b: Iterable[int]) -> float:
    left, right = set(a), set(b)
    if not left or not right:
        return 0.0
    return len(left & right) / len(left | right)


def similar(
    fingerprint: Sequence[int],
    candidates: Iterable[tuple[str, Sequence[int]]],
    threshold: float = THRESHOLD,
) -> list[tuple[str, float]]:
    """Candidates (id, fingerprint) at least ``threshold`` alike, most alike first."""
    scored = [(cid, jaccard(fingerprint, fp)) for cid, fp in candidates]
    hits = sorted((s for s in scored if s[1] >= threshold), key=lambda s: (-s[1], s[0]))
    return hits[:MAX_LINKS]

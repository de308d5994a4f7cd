"""Topic classifier for Indonesian LAPOR! complaints.

Pure domain code: no network, no database; only the standard library and Sastrawi.

How a report is read
--------------------
1. Cleaning: Unicode folding, URLs / e-mail addresses / @mentions removed, ``#tag`` kept as a
   word, emoji and punctuation dropped. Hyphens are handled word by word: a one-letter prefix
   is joined (``e-KTP`` -> ``ektp``), reduplication keeps one copy (``jalan-jalan``,
   ``dilempar-lempar``, ``malam2``), anything else is split (``Merak-Bakauheni``).
   Digits are split from letters (``3kg`` -> ``3 kg``) unless the token is a known word (``p2tl``).
2. Letters repeated three or more times are collapsed (``rusakkk`` -> ``rusak``).
3. Informal spellings and abbreviations are expanded with the slang dictionary
   (``data/slang.json``), then multi-word phrases are joined (``ktp el`` -> ``ektp``).
4. Place names are skipped: capitalised words after a place prefix (``Desa Sungai Raya``,
   ``Jalan Merdeka``) are names, not topic words; the word ``jalan`` of an address is dropped.
5. Stop words are removed and every remaining word is reduced to its normalised form: the
   surface form for a short list of words whose root would mislead, a fixed override for words
   Sastrawi stems wrongly, else the Sastrawi root. Roots are cached per word.
6. A word that is not Indonesian (not a Sastrawi root and without a root) and not a lexicon
   word, of five letters or more, is matched to a lexicon word at edit distance 1 (typos such
   as ``lstrik``, ``elektornik``).

How a report is scored
----------------------
The normalised words are matched against the weighted lexicon (``data/topic_lexicon.json``),
longest phrase first (up to three words), each match consuming its words ("lampu jalan" scores
the road, not electricity; neutral phrases such as "jalan kaki" score nothing). A term found
``n`` times contributes ``weight * (1 + 0.5 * ln(n))``, a title occurrence counting
:data:`TITLE_WEIGHT` times. A topic's evidence adds its terms' contributions with diminishing
returns (the k-th strongest counts ``1 / (1 + BREADTH_DECAY * k)``), so that a few specific
terms beat many generic setting words, times an optional per-topic boost from the lexicon.
Praise, greetings and test messages ("terima kasih", "apresiasi", "tes") are evidence for a
"none of these" class.

Evidence becomes a probability with a softmax over the 14 topics plus that class::

    p(topic) = exp(e_topic / T) / (exp(NONE_LOGIT + e_none / T) + sum_t exp(e_t / T))

The confidence is the probability of the winning topic, and ``scores`` lists every topic's
probability. ``T`` and ``NONE_LOGIT`` were fitted by log-loss on the development reports that
were written after the lexicon (the lexicon had been written looking at the others, which makes
them over-confident) and rounded to the conservative side. :data:`CONFIDENCE_THRESHOLD` was
chosen on the development set: at 0.5 (auto-route only when the topic is more likely than not)
every development report that belongs to no topic, except one thank-you note full of electricity
words, falls below it, as do 9 of the 193 correctly classified ones (5%). A report below the
threshold goes to the human verification queue.

The classifier is deterministic (ties go to the topic listed first in :data:`TOPICS`) and
explainable: ``matched_terms`` lists the normalised terms behind the winning topic.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from services.routing.domain.topics import TOPICS

__all__ = [
    "CONFIDENCE_THRESHOLD",
    "TOPICS",
    "Classification",
    "Evidence",
    "Lexicon",
    "LexiconError",
    "Normaliser",
    "TopicClassifier",
]


#: Below this confidence a report goes to the human verification queue (chosen on the dev set).
CONFIDENCE_THRESHOLD = 0.5

#: Softmax temperature applied to lexicon evidence (fitted on the dev set).
TEMPERATURE = 1.0
#: Logit of the "none of the topics" class (fitted on the dev set).
NONE_LOGIT = 1.5
#: How many times a term in the title counts compared with one in the body.
TITLE_WEIGHT = 1.5
#: The k-th strongest term of a topic counts 1 / (1 + BREADTH_DECAY * k): a few strong terms
#: outweigh many weak ones (a smoking report set in a school stays a smoking report).
BREADTH_DECAY = 0.5
#: Fuzzy matching only for unknown words at least this long.
FUZZY_MIN_LENGTH = 5
#: Per-word caches are emptied when they reach this size (bounded memory in a long-lived service).
CACHE_LIMIT = 200_000

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
LEXICON_PATH = DATA_DIR / "topic_lexicon.json"
SLANG_PATH = DATA_DIR / "slang.json"

MAX_PHRASE_WORDS = 3
_CLITICS = ("nya", "lah", "kah", "pun", "ku", "mu")
_SCHOOL_NEXT = frozenset({"negeri", "n", "swasta", "it", "terbuka", "kelas"})

_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_EMAIL_RE = re.compile(r"\S+@\S+\.\S+")
_MENTION_RE = re.compile(r"@\w+")
_HYPHEN_RE = re.compile(r"\b([A-Za-z0-9]+)(?:-([A-Za-z0-9]+))+\b")
_REDUP2_RE = re.compile(r"\b([A-Za-z]{2,})2(?:an|nya)?\b")
_WORD_RE = re.compile(r"[A-Za-z0-9]+")
_ALNUM_SPLIT_RE = re.compile(r"[a-z]+|[0-9]+")
_REPEAT3_RE = re.compile(r"(.)\1{2,}")
_REPEAT2_RE = re.compile(r"(.)\1+")
_SENTENCE_END = frozenset("!?\n:;\"'()[]")
_ABBREVIATIONS = frozenset({"perum", "prov", "kota", "desa", "kab", "kec", "kel", "jln", "dusun"})


def _starts_sentence(before: str) -> bool:
    """Whether a word preceded by ``before`` (right-stripped) starts a sentence."""
    if not before:
        return True
    if before[-1] == ".":
        prev = _WORD_RE.findall(before[-8:])
        return not prev or (len(prev[-1]) > 3 and prev[-1].lower() not in _ABBREVIATIONS)
    return before[-1] in _SENTENCE_END


class Stemmer(Protocol):
    def stem(self, text: str) -> str: ...


class LexiconError(ValueError):
    """The lexicon or slang data is inconsistent."""


@dataclass(frozen=True)
class Classification:
    topic: str | None  # None when nothing matched at all
    confidence: float  # 0..1, probability of ``topic``; compare with CONFIDENCE_THRESHOLD
    scores: tuple[tuple[str, float], ...]  # every topic with its probability, best first
    matched_terms: tuple[str, ...]  # normalised terms that drove the winner, strongest first

    @property
    def needs_verification(self) -> bool:
        return self.topic is None or self.confidence < CONFIDENCE_THRESHOLD


# ---------------------------------------------------------------------------- data


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise LexiconError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _as_dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _read_json(path: Path) -> dict[str, object]:
    with path.open(encoding="utf-8") as f:
        data = json.load(f, object_pairs_hook=_no_duplicate_keys)
    if not isinstance(data, dict):
        raise LexiconError(f"{path}: top level must be an object")
    return data


@dataclass(frozen=True)
class Lexicon:
    """Raw lexicon and normalisation data, as written in the JSON files (not yet normalised)."""

    terms: Mapping[str, Mapping[str, float]]  # topic -> written term -> weight
    labels: Mapping[str, str] = field(default_factory=dict)
    neutral: tuple[str, ...] = ()
    none_cues: Mapping[str, float] = field(default_factory=dict)  # praise, greetings, tests
    topic_boost: Mapping[str, float] = field(default_factory=dict)  # topic -> evidence multiplier
    slang: Mapping[str, str] = field(default_factory=dict)
    phrases: Mapping[str, str] = field(default_factory=dict)
    stopwords: frozenset[str] = frozenset()
    keep_surface: frozenset[str] = frozenset()
    stem_overrides: Mapping[str, str] = field(default_factory=dict)
    ignore: frozenset[str] = frozenset()
    place_prefixes: frozenset[str] = frozenset()

    @classmethod
    def from_dicts(cls, lexicon: Mapping[str, object], slang: Mapping[str, object]) -> Lexicon:
        topics = lexicon.get("topics")
        if not isinstance(topics, dict):
            raise LexiconError("lexicon: 'topics' must be an object")
        unknown = (set(topics) | set(_as_dict(lexicon.get("topic_boost")))) - set(TOPICS)
        if unknown:
            raise LexiconError(f"lexicon: unknown topics {sorted(unknown)}")
        terms: dict[str, dict[str, float]] = {}
        labels: dict[str, str] = {}
        for topic, spec in topics.items():
            if not isinstance(spec, dict) or not isinstance(spec.get("terms"), dict):
                raise LexiconError(f"lexicon: topic {topic!r} needs a 'terms' object")
            terms[topic] = {str(t): float(w) for t, w in spec["terms"].items()}
            labels[topic] = str(spec.get("label", topic))

        def strs(data: Mapping[str, object], key: str) -> list[str]:
            value = data.get(key, [])
            if not isinstance(value, list):
                raise LexiconError(f"{key!r} must be a list")
            return [str(v) for v in value]

        def mapping(data: Mapping[str, object], key: str) -> dict[str, str]:
            value = data.get(key, {})
            if not isinstance(value, dict):
                raise LexiconError(f"{key!r} must be an object")
            return {str(k): str(v) for k, v in value.items()}

        return cls(
            terms=terms,
            labels=labels,
            neutral=tuple(strs(lexicon, "neutral")),
            none_cues={k: float(v) for k, v in mapping(lexicon, "none_cues").items()},
            topic_boost={k: float(v) for k, v in mapping(lexicon, "topic_boost").items()},
            slang=mapping(slang, "tokens"),
            phrases=mapping(slang, "phrases"),
            stopwords=frozenset(strs(slang, "stopwords")),
            keep_surface=frozenset(strs(slang, "keep_surface")),
            stem_overrides=mapping(slang, "stem_overrides"),
            ignore=frozenset(strs(slang, "ignore")),
            place_prefixes=frozenset(strs(slang, "place_prefixes")),
        )

    @classmethod
    def load(cls, lexicon_path: Path = LEXICON_PATH, slang_path: Path = SLANG_PATH) -> Lexicon:
        return cls.from_dicts(_read_json(lexicon_path), _read_json(slang_path))


# ---------------------------------------------------------------------------- stemming


@lru_cache(maxsize=1)
def _sastrawi() -> tuple[Stemmer, frozenset[str]]:
    """Builds the Sastrawi stemmer and its root dictionary once per process."""
    from Sastrawi.Stemmer.StemmerFactory import StemmerFactory

    factory = StemmerFactory()
    words = frozenset(w.strip() for w in factory.get_words() if w.strip())
    return factory.create_stemmer(), words


def _osa_distance_le1(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by at most one edit (insert, delete, substitute, swap)."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diff = [i for i in range(la) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    if la > lb:
        a, b = b, a
    # b is one longer: a must be b with one letter deleted
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1 :]


@dataclass
class _Tok:
    text: str
    original: str  # as written (case kept), for case-sensitive rules
    name_like: bool  # capitalised inside a sentence: probably a proper name
    is_name: bool = False  # part of a place name: skipped


class Normaliser:
    """Turns raw report text into normalised words (see the module docstring)."""

    def __init__(
        self,
        lexicon: Lexicon,
        stemmer: Stemmer,
        dictionary: frozenset[str] = frozenset(),
    ) -> None:
        self._lex = lexicon
        self._stemmer = stemmer
        self._dictionary = dictionary
        self._stem_cache: dict[str, str] = {}
        self._canon_cache: dict[str, str] = {}
        self._fuzzy_cache: dict[str, str | None] = {}
        # phrase keys are written informally too: expand them like the text they match
        self._phrases: dict[tuple[str, ...], str] = {
            tuple(p for w in k.split() for p in lexicon.slang.get(w, w).split()): v
            for k, v in lexicon.phrases.items()
        }
        self._max_phrase = max((len(k) for k in self._phrases), default=1)
        self._vocab: frozenset[str] = frozenset()  # normalised lexicon words
        self._fuzzy_targets: frozenset[str] = frozenset()  # surface words a typo may be
        self._fuzzy_index: dict[str, list[str]] = {}
        self._known_mixed = frozenset(
            w for w in (*lexicon.slang, *self._all_written_words()) if not w.isalpha()
        )

    def _all_written_words(self) -> Iterable[str]:
        for terms in self._lex.terms.values():
            for term in terms:
                yield from term.split()
        for term in self._lex.neutral:
            yield from term.split()

    # -- vocabulary for typo tolerance -------------------------------------------------

    def set_vocabulary(self, vocabulary: Iterable[str], surface_words: Iterable[str]) -> None:
        """``vocabulary``: normalised lexicon words; ``surface_words``: words as written in the
        lexicon and phrase lists, the targets of typo correction."""
        self._vocab = frozenset(vocabulary)
        phrase_words = (w for key in self._phrases for w in key)
        self._fuzzy_targets = frozenset(
            w
            for w in (*surface_words, *phrase_words, *self._vocab)
            if len(w) >= FUZZY_MIN_LENGTH - 1 and w.isalpha()
        )
        index: dict[str, set[str]] = {}
        for word in self._fuzzy_targets:
            for key in self._deletions(word):
                index.setdefault(key, set()).add(word)
        self._fuzzy_index = {k: sorted(v) for k, v in index.items()}
        self._fuzzy_cache.clear()
        self._canon_cache.clear()

    @staticmethod
    def _deletions(word: str) -> set[str]:
        return {word} | {word[:i] + word[i + 1 :] for i in range(len(word))}

    def _fuzzy(self, word: str) -> str | None:
        cached = self._fuzzy_cache.get(word, "")
        if cached != "":
            return cached
        candidates: set[str] = set()
        for key in self._deletions(word):
            candidates.update(self._fuzzy_index.get(key, ()))
        matches = sorted(
            (c for c in candidates if _osa_distance_le1(word, c)),
            key=lambda c: (c[0] != word[0], abs(len(c) - len(word)), c),
        )
        result = matches[0] if matches else None
        if len(self._fuzzy_cache) >= CACHE_LIMIT:
            self._fuzzy_cache.clear()
        self._fuzzy_cache[word] = result
        return result

    # -- single words --------------------------------------------------------------------

    def stem(self, word: str) -> str:
        """Sastrawi root of one word, cached (Sastrawi takes ~0.1 ms a word)."""
        cached = self._stem_cache.get(word)
        if cached is None:
            if len(self._stem_cache) >= CACHE_LIMIT:
                self._stem_cache.clear()
            cached = self._stemmer.stem(word) or word
            self._stem_cache[word] = cached
        return cached

    def canonical(self, word: str) -> str:
        """Normalised form of one already lower-cased, slang-expanded word."""
        cached = self._canon_cache.get(word)
        if cached is not None:
            return cached
        lex = self._lex
        if word.isdigit() or word in lex.keep_surface:
            result = word
        elif word in lex.stem_overrides:
            result = lex.stem_overrides[word]
        else:
            result = ""
            for clitic in _CLITICS:
                base = word[: -len(clitic)]
                if word.endswith(clitic) and len(base) >= 3:
                    if base in lex.keep_surface:
                        result = base
                    elif base in lex.stem_overrides:
                        result = lex.stem_overrides[base]
                    elif base in lex.slang and " " not in lex.slang[base]:
                        result = self.canonical(lex.slang[base]) if lex.slang[base] else ""
                    if result:
                        break
            if not result:
                result = self._informal(word) or self.stem(word)
        if len(self._canon_cache) >= CACHE_LIMIT:
            self._canon_cache.clear()
        self._canon_cache[word] = result
        return result

    def _informal(self, word: str) -> str | None:
        """Jakarta-style affixes Sastrawi does not know: nge-/ng- prefixes, -in suffix."""
        candidates: list[str] = []
        stems = [word]
        if word.endswith("in") and len(word) > 5:
            stems.append(word[:-2])
        for w in stems:
            if w is not word:
                candidates.append(w)
            if w.startswith("nge") and len(w) > 5:
                candidates.append(w[3:])
            elif w.startswith("ng") and len(w) > 4 and w[2] in "aeiou":
                candidates.append(w[2:])
        for cand in candidates:
            if cand in self._vocab or cand in self._dictionary:
                return cand if cand in self._vocab else self.stem(cand)
        return None

    def _is_unknown(self, word: str) -> bool:
        """Neither Indonesian (a Sastrawi root, or a word with one) nor a lexicon word."""
        if len(word) < FUZZY_MIN_LENGTH or not word.isalpha() or word in self._fuzzy_targets:
            return False
        lex = self._lex
        if word in lex.slang or word in lex.stopwords or word in lex.keep_surface:
            return False
        if word in self._dictionary:
            return False
        canon = self.canonical(word)
        return canon not in self._vocab and canon not in self._dictionary

    # -- whole texts ---------------------------------------------------------------------

    def words(self, text: str, *, lexicon_term: bool = False) -> list[str]:
        """Normalised words of ``text`` in order (stop words and place names removed).

        ``lexicon_term``: ``text`` is a lexicon entry: no case rules, no typo correction.
        """
        toks = self._surface_tokens(text, use_case=not lexicon_term)
        toks = self._expand(toks, lexicon_term=lexicon_term)
        toks = self._join_phrases(toks)
        self._mark_place_names(toks)
        lex = self._lex
        out: list[str] = []
        for tok in toks:
            if tok.is_name or tok.text in lex.stopwords or tok.text in lex.ignore:
                continue
            canon = self.canonical(tok.text)
            if canon and canon not in lex.stopwords:
                out.append(canon)
        return out

    def surface(self, text: str) -> list[str]:
        """Words of ``text`` after cleaning, slang expansion, typo correction and phrase joining,
        before place names and stop words are dropped and words are stemmed (for debugging)."""
        return [t.text for t in self._join_phrases(self._expand(self._surface_tokens(text)))]

    def _surface_tokens(self, text: str, *, use_case: bool = True) -> list[_Tok]:
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c))
        text = _URL_RE.sub(" ", text)
        text = _EMAIL_RE.sub(" ", text)
        text = _MENTION_RE.sub(" ", text)
        text = text.replace("#", " ").replace("\u2013", "-").replace("\u2014", " ")
        text = _HYPHEN_RE.sub(self._hyphen, text)
        text = _REDUP2_RE.sub(r"\1", text)
        matches = list(_WORD_RE.finditer(text))
        alpha = [m.group() for m in matches[1:] if m.group().isalpha() and len(m.group()) > 3]
        capitalised = sum(1 for w in alpha if w[0].isupper() and not w.isupper())
        title_case = len(alpha) >= 2 and capitalised / len(alpha) >= 0.8  # "Jalan Rusak Parah"
        shouting = len(alpha) >= 2 and sum(1 for w in alpha if w.isupper()) / len(alpha) >= 0.6
        use_case = use_case and not title_case and not shouting
        toks: list[_Tok] = []
        for m in matches:
            original = m.group()
            sentence_start = _starts_sentence(text[: m.start()].rstrip())
            name_like = (
                use_case and not sentence_start and original[0].isupper() and not original.isupper()
            )
            lower = original.lower()
            if not lower.isalpha() and not lower.isdigit() and lower not in self._known_mixed:
                parts = _ALNUM_SPLIT_RE.findall(lower)
            else:
                parts = [lower]
            for part in parts:
                toks.append(_Tok(self._collapse(part), original, name_like))
        return toks

    @staticmethod
    def _hyphen(m: re.Match[str]) -> str:
        parts = m.group(0).split("-")
        first = parts[0]
        if len(parts) == 2:
            a, b = first.lower(), parts[1].lower()
            if len(a) == 1 and a.isalpha():  # e-KTP, e-warong
                return first + parts[1]
            if a == b or (len(b) >= 3 and (a.endswith(b) or a.startswith(b))):
                return first  # jalan-jalan, dilempar-lempar, anak-anaknya
            if b.startswith(a) and len(a) >= 3:
                return parts[1]
        return " ".join(parts)

    def _collapse(self, word: str) -> str:
        if not _REPEAT3_RE.search(word):
            return word
        double = _REPEAT3_RE.sub(r"\1\1", word)
        if double in self._lex.slang or double in self._dictionary or double in self._vocab:
            return double
        return _REPEAT2_RE.sub(r"\1", word) if not word.isdigit() else word

    def _expand(self, toks: list[_Tok], *, lexicon_term: bool = False) -> list[_Tok]:
        slang = self._lex.slang
        out: list[_Tok] = []
        for i, tok in enumerate(toks):
            word = tok.text
            if word == "smp" and not lexicon_term:  # SMP (junior high school) vs smp = sampai
                nxt = toks[i + 1].text if i + 1 < len(toks) else ""
                if not (tok.original.isupper() or nxt in _SCHOOL_NEXT):
                    word = "sampai"
            elif word in slang:
                word = slang[word]
            elif not lexicon_term and not tok.name_like and self._is_unknown(word):
                word = self._fuzzy(word) or word  # a typo of a lexicon word
            for part in word.split():
                out.append(_Tok(part, tok.original, tok.name_like))
        return out

    def _join_phrases(self, toks: list[_Tok]) -> list[_Tok]:
        if not self._phrases:
            return toks
        out: list[_Tok] = []
        i = 0
        while i < len(toks):
            for n in range(min(self._max_phrase, len(toks) - i), 1, -1):
                key = tuple(t.text for t in toks[i : i + n])
                if key in self._phrases:
                    out.append(_Tok(self._phrases[key], toks[i].original, False))
                    i += n
                    break
            else:
                out.append(toks[i])
                i += 1
        return out

    def _mark_place_names(self, toks: list[_Tok]) -> None:
        prefixes = self._lex.place_prefixes
        for i, tok in enumerate(toks):
            if tok.text not in prefixes or tok.is_name:
                continue
            j = i + 1
            while j < len(toks) and j <= i + 3 and toks[j].name_like:
                toks[j].is_name = True
                j += 1
            if j > i + 1 and tok.text in {"jalan", "jl", "jln", "gang", "gg"}:
                tok.is_name = True  # an address, not a complaint about a road


# ---------------------------------------------------------------------------- classifier


_NONE = "_none"  # pseudo-topic of the "none of these" cues


@dataclass(frozen=True)
class _Term:
    words: tuple[str, ...]
    weights: Mapping[str, float]  # topic (or _NONE) -> weight; empty for neutral phrases


@dataclass(frozen=True)
class Evidence:
    """Raw lexicon evidence for one report, before it becomes probabilities."""

    scores: Mapping[str, float]  # topic -> evidence
    none_score: float  # evidence for "none of the topics" (praise, greetings, tests)
    contributions: Mapping[str, Mapping[str, float]]  # topic -> matched term -> contribution


class TopicClassifier:
    """Weighted-lexicon topic classifier (see the module docstring). Deterministic."""

    TOPICS: tuple[str, ...] = TOPICS

    def __init__(self, lexicon: Lexicon, stemmer: Stemmer | None = None) -> None:
        dictionary: frozenset[str] = frozenset()
        if stemmer is None:
            stemmer, dictionary = _sastrawi()
        else:
            try:
                dictionary = _sastrawi()[1]
            except ImportError:  # pragma: no cover - Sastrawi is a dependency
                dictionary = frozenset()
        self.lexicon = lexicon
        self.normaliser = Normaliser(lexicon, stemmer, dictionary)
        self._terms = self._compile(lexicon)
        self._max_words = max(len(k) for k in self._terms)

    @classmethod
    def default(cls) -> TopicClassifier:
        """The classifier with the shipped lexicon; built once per process."""
        return _default_classifier()

    # -- lexicon compilation -----------------------------------------------------------

    def _compile(self, lexicon: Lexicon) -> dict[tuple[str, ...], _Term]:
        merged: dict[tuple[str, ...], dict[str, float]] = {}
        surface: set[str] = set()
        weighted = [(t, lexicon.terms.get(t, {})) for t in TOPICS] + [(_NONE, lexicon.none_cues)]
        for topic, terms in weighted:
            for written, weight in terms.items():
                if weight <= 0:
                    raise LexiconError(f"{topic}: weight of {written!r} must be positive")
                key = self._normalise_term(written)
                weights = merged.setdefault(key, {})
                weights[topic] = max(weights.get(topic, 0.0), weight)
                surface.update(written.split())
        neutral: set[tuple[str, ...]] = set()
        for written in lexicon.neutral:
            key = self._normalise_term(written)
            if key in merged:
                raise LexiconError(f"neutral phrase {written!r} is also a weighted term")
            neutral.add(key)
        self.normaliser.set_vocabulary({w for key in merged for w in key}, surface)
        compiled = {k: _Term(k, v) for k, v in merged.items()}
        compiled.update({k: _Term(k, {}) for k in neutral})
        return compiled

    def _normalise_term(self, written: str) -> tuple[str, ...]:
        key = tuple(self.normaliser.words(written, lexicon_term=True))
        if not key:
            raise LexiconError(f"term {written!r} is empty after normalisation (stop word?)")
        if len(key) > MAX_PHRASE_WORDS:
            raise LexiconError(f"term {written!r} is longer than {MAX_PHRASE_WORDS} words")
        return key

    # -- classification ----------------------------------------------------------------

    def match(self, words: Sequence[str]) -> list[tuple[str, ...]]:
        """Weighted lexicon terms in normalised ``words``, without overlaps.

        Longer terms win over shorter ones; among overlapping terms of the same length a neutral
        phrase wins, then the term with the stronger weight, then the earlier one ("minta uang
        rokok" is "uang rokok", a bribe, not "minta uang" + "rokok").
        """
        candidates: list[tuple[int, float, int, _Term]] = []
        for i in range(len(words)):
            for n in range(1, min(self._max_words, len(words) - i) + 1):
                term = self._terms.get(tuple(words[i : i + n]))
                if term is not None:
                    strength = max(term.weights.values()) if term.weights else math.inf
                    candidates.append((-n, -strength, i, term))
        candidates.sort(key=lambda c: c[:3])
        taken = [False] * len(words)
        found: list[tuple[int, tuple[str, ...]]] = []
        for neg_n, _, i, term in candidates:
            span = range(i, i - neg_n)
            if any(taken[j] for j in span):
                continue
            for j in span:
                taken[j] = True
            if term.weights:
                found.append((i, term.words))
        return [words_ for _, words_ in sorted(found)]

    def evidence(self, title: str, body: str) -> Evidence:
        """Raw evidence per topic, with the contribution of each matched term."""
        counts: dict[tuple[str, ...], float] = {}
        for text, weight in ((title, TITLE_WEIGHT), (body, 1.0)):
            if text:
                for words in self.match(self.normaliser.words(text)):
                    counts[words] = counts.get(words, 0.0) + weight
        contributions: dict[str, dict[str, float]] = {t: {} for t in (*TOPICS, _NONE)}
        for words, n in counts.items():
            factor = 1.0 + 0.5 * math.log(n) if n > 1 else n
            for topic, w in self._terms[words].weights.items():
                contributions[topic][" ".join(words)] = w * factor
        scores: dict[str, float] = {}
        for topic in TOPICS:
            ranked = sorted(contributions[topic].values(), reverse=True)
            boost = self.lexicon.topic_boost.get(topic, 1.0)
            scores[topic] = boost * sum(c / (1.0 + BREADTH_DECAY * k) for k, c in enumerate(ranked))
        none_score = sum(contributions.pop(_NONE).values())
        return Evidence(scores, none_score, contributions)

    def classify(self, title: str, body: str) -> Classification:
        ev = self.evidence(title or "", body or "")
        if not any(ev.scores.values()):
            return Classification(
                topic=None,
                confidence=0.0,
                scores=tuple((t, 0.0) for t in TOPICS),
                matched_terms=(),
            )
        probs = probabilities(ev)
        order = sorted(TOPICS, key=lambda t: (-probs[t], TOPICS.index(t)))
        best = order[0]
        terms = sorted(ev.contributions[best].items(), key=lambda kv: (-kv[1], kv[0]))
        return Classification(
            topic=best,
            confidence=round(probs[best], 4),
            scores=tuple((t, round(probs[t], 4)) for t in order),
            matched_terms=tuple(t for t, _ in terms),
        )


def probabilities(ev: Evidence) -> dict[str, float]:
    """Softmax over the topics and a "none of these" class; returns the topic probabilities."""
    logits = {t: s / TEMPERATURE for t, s in ev.scores.items()}
    none_logit = NONE_LOGIT + ev.none_score / TEMPERATURE
    top = max(max(logits.values()), none_logit)
    exps = {t: math.exp(v - top) for t, v in logits.items()}
    total = sum(exps.values()) + math.exp(none_logit - top)
    return {t: e / total for t, e in exps.items()}


@lru_cache(maxsize=1)
def _default_classifier() -> TopicClassifier:
    return TopicClassifier(Lexicon.load())

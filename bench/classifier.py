"""Benchmark of the topic classifier on the held-out test set.

Run from the repository root: ``python -m bench.classifier [path/to/set.jsonl]``.
Prints per-topic precision / recall / support, top-1 accuracy on the labelled reports, how
many reports fell below the confidence threshold (sent to human verification), how many were
wrong above it, and throughput. Always exits 0: the number is the result, not a gate (the unit
tests hold the regression floor).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from services.routing.domain.classifier import (
    CONFIDENCE_THRESHOLD,
    TOPICS,
    Classification,
    TopicClassifier,
)

ROOT = Path(__file__).resolve().parent.parent
TEST_SET = ROOT / "tests" / "data" / "classification_test.jsonl"
TARGET = 0.90
NONE = "(none)"


@dataclass(frozen=True)
class Report:
    title: str
    body: str
    topic: str | None


def load(path: Path) -> list[Report]:
    reports = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                reports.append(Report(row.get("title") or "", row.get("body") or "", row["topic"]))
    return reports


def _pct(num: int, den: int) -> str:
    return f"{100.0 * num / den:5.1f}%" if den else "    -"


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else TEST_SET
    reports = load(path)

    t0 = time.perf_counter()
    clf = TopicClassifier.default()
    build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    results: list[Classification] = [clf.classify(r.title, r.body) for r in reports]
    cold_s = time.perf_counter() - t0
    passes = 0
    t0 = time.perf_counter()
    while passes < 3 or time.perf_counter() - t0 < 1.0:
        for r in reports:
            clf.classify(r.title, r.body)
        passes += 1
    warm_rate = passes * len(reports) / (time.perf_counter() - t0)

    labelled = [(r, c) for r, c in zip(reports, results, strict=True) if r.topic is not None]
    unlabelled = [(r, c) for r, c in zip(reports, results, strict=True) if r.topic is None]

    tp: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    support: Counter[str] = Counter()
    below_by_topic: Counter[str] = Counter()
    for r, c in labelled:
        assert r.topic is not None
        support[r.topic] += 1
        if c.topic is not None:
            predicted[c.topic] += 1
        if c.topic == r.topic:
            tp[r.topic] += 1
        if c.confidence < CONFIDENCE_THRESHOLD:
            below_by_topic[r.topic] += 1

    print(f"classifier benchmark: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    print(
        f"{len(reports)} reports: {len(labelled)} labelled with a topic, "
        f"{len(unlabelled)} belonging to none; confidence threshold {CONFIDENCE_THRESHOLD}"
    )
    print()
    print(f"{'topic':<20} {'precision':>9} {'recall':>8} {'f1':>6} {'support':>8} {'<thr':>5}")
    f1s = []
    for topic in TOPICS:
        p = tp[topic] / predicted[topic] if predicted[topic] else 0.0
        rc = tp[topic] / support[topic] if support[topic] else 0.0
        f1 = 2 * p * rc / (p + rc) if p + rc else 0.0
        f1s.append(f1)
        print(
            f"{topic:<20} {p:>9.3f} {rc:>8.3f} {f1:>6.3f} {support[topic]:>8d} "
            f"{below_by_topic[topic]:>5d}"
        )
    print(f"{'macro avg':<20} {'':>9} {'':>8} {sum(f1s) / len(f1s):>6.3f} {len(labelled):>8d}")
    print("(precision/recall are top-1, before the threshold; '<thr' = labelled reports below it)")
    print()

    correct = sum(1 for r, c in labelled if c.topic == r.topic)
    accuracy = correct / len(labelled) if labelled else 0.0
    lab_below = [(r, c) for r, c in labelled if c.confidence < CONFIDENCE_THRESHOLD]
    lab_above = [(r, c) for r, c in labelled if c.confidence >= CONFIDENCE_THRESHOLD]
    wrong_above = [(r, c) for r, c in lab_above if c.topic != r.topic]
    none_below = [(r, c) for r, c in unlabelled if c.confidence < CONFIDENCE_THRESHOLD]
    none_above = [(r, c) for r, c in unlabelled if c.confidence >= CONFIDENCE_THRESHOLD]
    correct_below = sum(1 for r, c in lab_below if c.topic == r.topic)

    print(
        f"top-1 accuracy (labelled):          {correct}/{len(labelled)} = {_pct(correct, len(labelled))}"
    )
    print(
        f"below threshold -> verification:    {len(lab_below) + len(none_below)}/{len(reports)} "
        f"({len(lab_below)} labelled, of which {correct_below} had the right topic; "
        f"{len(none_below)}/{len(unlabelled)} none-of-these)"
    )
    print(
        f"wrong above threshold (auto-routed): {len(wrong_above) + len(none_above)} "
        f"({len(wrong_above)} wrong topic, {len(none_above)} none-of-these routed)"
    )
    auto_ok = len(lab_above) - len(wrong_above)
    print(
        f"precision of automatic routing:     {auto_ok}/{len(lab_above) + len(none_above)} = "
        f"{_pct(auto_ok, len(lab_above) + len(none_above))}"
    )
    print(
        f"throughput: {warm_rate:,.0f} reports/s warm, {len(reports) / cold_s:,.0f} reports/s "
        f"cold; classifier built in {build_s * 1000:.0f} ms"
    )

    mistakes = [(r, c) for r, c in labelled if c.topic != r.topic] + none_above
    if mistakes:
        print()
        print("mistakes (expected -> got, confidence, terms):")
        for r, c in mistakes:
            text = f"{r.title} / {r.body}" if r.title else r.body
            print(
                f"  {r.topic or NONE} -> {c.topic or NONE} {c.confidence:.2f} "
                f"{list(c.matched_terms[:4])} | {text[:90]}"
            )
    print()
    print(f"classifier top-1 accuracy: {100.0 * accuracy:.1f}% (target >= {100 * TARGET:.0f}%)")
    return 0


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Exception:  # the bench reports, it does not gate: always exit 0
        traceback.print_exc()
        print("classifier top-1 accuracy: n/a (benchmark failed, see above) (target >= 90%)")
    sys.exit(0)

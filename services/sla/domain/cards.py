"""Report cards (rapor) of institutions: pure tallies over the reports' card facts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class ReportCard:
    institution_id: str
    period: str
    received: int = 0
    verified_within_deadline: int = 0
    first_responses_within_deadline: int = 0
    resolved_within_deadline: int = 0
    overdue_now: int = 0
    first_responses_overdue: int = 0
    escalated: int = 0
    rating_sum: int = 0
    ratings: int = 0

    @property
    def average_satisfaction(self) -> float:
        return self.rating_sum / self.ratings if self.ratings else 0.0

    @property
    def red_mark(self) -> bool:
        """Raport merah: the institution let first responses run over."""
        return self.first_responses_overdue > 0

    def add(self, card: Mapping[str, Any], rating: int | None = None) -> None:
        self.received += 1
        self.verified_within_deadline += card.get("verified_on_time") is True
        self.first_responses_within_deadline += card.get("first_response_on_time") is True
        self.resolved_within_deadline += card.get("resolved_on_time") is True
        self.overdue_now += bool(card.get("overdue")) and bool(card.get("open", True))
        self.first_responses_overdue += bool(card.get("first_response_overdue")) or (
            card.get("first_response_on_time") is False
        )
        self.escalated += bool(card.get("escalated"))
        if rating is not None and 1 <= rating <= 5:
            self.rating_sum += rating
            self.ratings += 1


def tally(
    rows: Iterable[tuple[Mapping[str, Any], int | None]], period: str
) -> dict[str, ReportCard]:
    """Cards per top-level institution from (card facts, rating) rows of one period."""
    cards: dict[str, ReportCard] = {}
    for card, rating in rows:
        institution = card["top_institution"]
        cards.setdefault(institution, ReportCard(institution, period)).add(card, rating)
    return cards

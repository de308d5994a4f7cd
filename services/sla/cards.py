"""Report cards read from the clocks collection, and the Prometheus gauges of open reports
and of the top-level institutions' cards (refreshed periodically, bounded labels)."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from pymongo.asynchronous.collection import AsyncCollection

from services.common.clock import Clock, sleep_until_or_stop
from services.common.errors import Violation, require
from services.common.mongo import Doc
from services.sla.domain.cards import ReportCard
from services.sla.metrics import CARD, OPEN_REPORTS, OVERDUE_REPORTS, RED_MARK

log = logging.getLogger(__name__)
PERIOD = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
PROJECTION = {"card": 1, "rating": 1, "_id": 0}
FIGURES = (
    "received",
    "verified_within_deadline",
    "first_responses_within_deadline",
    "resolved_within_deadline",
    "overdue_now",
    "first_responses_overdue",
    "escalated",
    "average_satisfaction",
)


def current_period(now: datetime) -> str:
    return now.astimezone(ZoneInfo("Asia/Jakarta")).strftime("%Y-%m")


@dataclass
class ReportCards:
    cases: AsyncCollection[Doc]
    clock: Clock

    async def _tally(self, query: Doc, period: str) -> dict[str, ReportCard]:
        """Cards per top-level institution, streamed: memory follows institutions, not reports."""
        cards: dict[str, ReportCard] = {}
        async for doc in self.cases.find(query, PROJECTION):
            if "card" in doc:
                card = doc["card"]
                institution = card["top_institution"]
                cards.setdefault(institution, ReportCard(institution, period)).add(
                    card, doc.get("rating")
                )
        return cards

    async def card(self, institution_id: str, period: str) -> ReportCard:
        problems = (
            [] if institution_id.strip() else [Violation("institution_id", "must not be empty")]
        )
        if period and not PERIOD.fullmatch(period):
            problems.append(Violation("period", "must be a month YYYY-MM, e.g. 2026-03"))
        require(problems)
        period = period or current_period(self.clock.now())
        cards = await self._tally(
            {"card.top_institution": institution_id, "card.period": period}, period
        )
        return cards.get(institution_id, ReportCard(institution_id, period))

    async def all_cards(self, period: str) -> list[ReportCard]:
        if period and not PERIOD.fullmatch(period):
            require([Violation("period", "must be a month YYYY-MM, e.g. 2026-03")])
        period = period or current_period(self.clock.now())
        cards = await self._tally({"card.period": period}, period)
        return [cards[k] for k in sorted(cards)]

    async def refresh_gauges(self) -> None:
        open_counts: dict[tuple[str, str], int] = {}
        overdue = 0
        async for doc in self.cases.find({"card.open": True}, PROJECTION):
            card = doc["card"]
            key = (card["colour"], card["handling_class"])
            open_counts[key] = open_counts.get(key, 0) + 1
            overdue += bool(card["overdue"])
        OPEN_REPORTS.clear()
        for (colour, handling), n in open_counts.items():
            OPEN_REPORTS.labels(colour=colour, handling_class=handling).set(n)
        OVERDUE_REPORTS.set(overdue)
        CARD.clear()
        RED_MARK.clear()
        for card in await self.all_cards(""):
            for figure in FIGURES:
                CARD.labels(institution=card.institution_id, figure=figure).set(
                    getattr(card, figure)
                )
            RED_MARK.labels(institution=card.institution_id).set(1 if card.red_mark else 0)

    async def run(self, stop: asyncio.Event, interval: float = 60.0) -> None:
        """Refresh every ``interval`` (the first time after one interval: a start-up storm of
        replicas must not scan every report at once)."""
        while not await sleep_until_or_stop(stop, interval):
            try:
                await self.refresh_gauges()
            except Exception:
                log.exception("report-card gauges failed; retrying")

"""Report cards and the Prometheus gauges of open reports and of the top-level institutions'
cards (refreshed periodically, bounded labels), read from the counters kept incrementally
by every report write (services/sla/tally.py)."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import Gauge
from pymongo.asynchronous.collection import AsyncCollection

from services.common.clock import Clock, sleep_until_or_stop
from services.common.errors import Violation, require
from services.common.mongo import Doc
from services.sla.domain.cards import ReportCard
from services.sla.metrics import CARD, OPEN_REPORTS, OVERDUE_REPORTS, RED_MARK
from services.sla.tally import CARD_FIGURES, OVERDUE, card_key, tallies_of

log = logging.getLogger(__name__)
PERIOD = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
# The report card's figures: the counted ones, with the ratings' sum and count as an average.
FIGURES = (*(f for f in CARD_FIGURES if not f.startswith("rating")), "average_satisfaction")


def current_period(now: datetime) -> str:
    return now.astimezone(ZoneInfo("Asia/Jakarta")).strftime("%Y-%m")


def card_of(doc: Doc) -> ReportCard:
    card = ReportCard(doc["institution"], doc["period"])
    for figure in CARD_FIGURES:
        setattr(card, figure, int(doc.get(figure, 0)))
    return card


@dataclass
class ReportCards:
    """Report cards and gauges read from the counters (services/sla/tally.py): a few
    documents per call, whatever the number of reports."""

    cases: AsyncCollection[Doc]
    clock: Clock
    # The label sets each gauge shows now (so a refresh removes only those that went away).
    _shown: dict[Gauge, set[tuple[str, ...]]] = field(default_factory=dict, init=False, repr=False)

    @property
    def tallies(self) -> AsyncCollection[Doc]:
        return tallies_of(self.cases)

    async def card(self, institution_id: str, period: str) -> ReportCard:
        problems = (
            [] if institution_id.strip() else [Violation("institution_id", "must not be empty")]
        )
        if period and not PERIOD.fullmatch(period):
            problems.append(Violation("period", "must be a month YYYY-MM, e.g. 2026-03"))
        require(problems)
        period = period or current_period(self.clock.now())
        doc = await self.tallies.find_one({"_id": card_key(institution_id, period)})
        return card_of(doc) if doc else ReportCard(institution_id, period)

    async def all_cards(self, period: str) -> list[ReportCard]:
        if period and not PERIOD.fullmatch(period):
            require([Violation("period", "must be a month YYYY-MM, e.g. 2026-03")])
        period = period or current_period(self.clock.now())
        docs = self.tallies.find({"kind": "card", "period": period})
        return sorted([card_of(d) async for d in docs], key=lambda c: c.institution_id)

    async def refresh_gauges(self) -> None:
        """Read every figure first, then set the gauges and drop only the series that went
        away: a scrape never sees them missing, and a failed read leaves the last values."""
        overdue = 0
        open_reports: dict[tuple[str, ...], Any] = {}
        async for doc in self.tallies.find({"kind": {"$in": ["open", OVERDUE]}}):
            if doc["kind"] == OVERDUE:
                overdue = int(doc.get("n", 0))
            else:
                open_reports[(doc["colour"], doc["handling_class"])] = int(doc.get("n", 0))
        cards = await self.all_cards("")
        card_values: dict[tuple[str, ...], Any] = {
            (card.institution_id, figure): getattr(card, figure)
            for card in cards
            for figure in FIGURES
        }
        red_marks: dict[tuple[str, ...], Any] = {
            (card.institution_id,): 1 if card.red_mark else 0 for card in cards
        }
        OVERDUE_REPORTS.set(overdue)
        for gauge, values in (
            (OPEN_REPORTS, open_reports),
            (CARD, card_values),
            (RED_MARK, red_marks),
        ):
            _replace_series(gauge, values, self._shown.setdefault(gauge, set()))

    async def run(self, stop: asyncio.Event, interval: float = 60.0) -> None:
        """Refresh now and then every ``interval`` (a few counter documents each time)."""
        while True:
            try:
                await self.refresh_gauges()
            except Exception:
                log.exception("report-card gauges failed; retrying")
            if await sleep_until_or_stop(stop, interval):
                return


def _replace_series(
    gauge: Gauge, values: dict[tuple[str, ...], Any], shown: set[tuple[str, ...]]
) -> None:
    """Set `gauge`'s series to `values` and remove those it showed before that are gone."""
    for labels, value in values.items():
        gauge.labels(*labels).set(value)
    for gone in shown - set(values):
        gauge.remove(*gone)
    shown.clear()
    shown.update(values)

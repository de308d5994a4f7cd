"""Report cards (services/sla/domain/cards.py) and the new policy key."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.sla.domain.cards import ReportCard, tally
from services.sla.domain.policy import PolicyError, default_policy_path, load_policy, parse_policy


def row(inst: str = "pemda-51.08", **facts: object) -> dict[str, object]:
    base: dict[str, object] = {
        "top_institution": inst,
        "open": True,
        "verified_on_time": None,
        "first_response_on_time": None,
        "resolved_on_time": None,
        "overdue": False,
        "first_response_overdue": False,
        "escalated": False,
    }
    return {**base, **facts}


def test_tally_counts_each_figure() -> None:
    rows = [
        (row(verified_on_time=True, first_response_on_time=True, resolved_on_time=True), 5),
        (row(first_response_on_time=False, resolved_on_time=False), 2),
        (row(overdue=True, first_response_overdue=True, escalated=True), None),
        (row(overdue=True, open=False), None),
        (row("nasional-pln", first_response_on_time=True), 4),
    ]
    cards = tally(rows, "2026-03")
    pemda = cards["pemda-51.08"]
    assert (pemda.received, pemda.verified_within_deadline) == (4, 1)
    assert (pemda.first_responses_within_deadline, pemda.resolved_within_deadline) == (1, 1)
    assert (pemda.overdue_now, pemda.escalated, pemda.first_responses_overdue) == (1, 1, 2)
    assert pemda.average_satisfaction == pytest.approx(3.5)
    assert pemda.red_mark
    pln = cards["nasional-pln"]
    assert (pln.received, pln.average_satisfaction, pln.red_mark) == (1, 4.0, False)


def test_empty_card() -> None:
    card = ReportCard("pemda-51", "2026-03")
    assert (card.average_satisfaction, card.red_mark) == (0.0, False)


def test_out_of_range_ratings_are_ignored() -> None:
    card = tally([(row(), 9), (row(), 0)], "2026-03")["pemda-51.08"]
    assert card.ratings == 0


def test_shipped_policy_has_a_ladder_interval() -> None:
    policy = load_policy(default_policy_path())
    assert policy.ladder_interval is not None and policy.ladder_interval.days == 1


BASE = Path(default_policy_path()).read_text()


def test_ladder_interval_is_optional() -> None:
    text = BASE.replace('ladder_interval = "1d"\n', "")
    policy = parse_policy(text, default_policy_path().parent)
    assert policy.ladder_interval is None


@pytest.mark.parametrize("value", ['"-1d"', '"0s"', '"soon"', "3"])
def test_bad_ladder_interval_names_the_line(value: str) -> None:
    text = BASE.replace('ladder_interval = "1d"', f"ladder_interval = {value}")
    line = next(n for n, t in enumerate(text.splitlines(), 1) if t.startswith("ladder_interval"))
    with pytest.raises(PolicyError) as err:
        parse_policy(text, default_policy_path().parent, source="policy.toml")
    assert err.value.line == line
    assert err.value.key == "escalation.ladder_interval"

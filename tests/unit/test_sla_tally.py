"""The counters' arithmetic (services/sla/tally.py): a report's contribution and the change
a write makes, equal to the report card's own tally. Which failures of the counters'
transaction are run again depends on what the database and the driver raise: that is tested
against the real database process, in tests/integration/test_sla_tally_transaction.py."""

from __future__ import annotations

from services.sla.domain.cards import tally
from services.sla.tally import add, change, contribution, from_reports, tally_ops
from tests.unit.test_sla_cards import row


def card(**facts: object) -> dict[str, object]:
    """A stored report's card facts: the report card's row, with what the gauges add."""
    return row(**{"period": "2026-03", "colour": "red", "handling_class": "complaint", **facts})


def test_a_new_report_counts_once_as_open_and_received() -> None:
    assert contribution(card()) == {
        "open|red|complaint": {"n": 1},
        "card|pemda-51.08|2026-03": {"received": 1},
    }
    assert contribution(None) == {}


def test_a_write_moves_only_what_changed() -> None:
    before = card()
    after = card(colour="yellow", first_response_on_time=True)
    assert change(before, None, after, None) == {
        "open|red|complaint": {"n": -1},
        "open|yellow|complaint": {"n": 1},
        "card|pemda-51.08|2026-03": {"first_responses_within_deadline": 1},
    }
    assert change(after, None, after, None) == {}  # a duplicate changes nothing
    assert change(after, None, after, 4) == {
        "card|pemda-51.08|2026-03": {"rating_sum": 4, "ratings": 1}
    }


def test_closing_and_overdue() -> None:
    overdue = card(overdue=True, first_response_overdue=True)
    closed = card(open=False, colour="green", overdue=True)
    assert change(overdue, None, closed, None) == {
        "open|red|complaint": {"n": -1},
        "overdue": {"n": -1},
        "card|pemda-51.08|2026-03": {"overdue_now": -1, "first_responses_overdue": -1},
    }


def test_sums_of_contributions_equal_the_report_cards() -> None:
    rows = [
        (card(verified_on_time=True, first_response_on_time=True, resolved_on_time=True), 5),
        (card(first_response_on_time=False, resolved_on_time=False), 2),
        (card(overdue=True, first_response_overdue=True, escalated=True), None),
        (card(overdue=True, open=False), None),
    ]
    counts = from_reports(rows)
    expected = tally(rows, "2026-03")["pemda-51.08"]
    figures = counts["card|pemda-51.08|2026-03"]
    for name in ("received", "verified_within_deadline", "overdue_now", "escalated"):
        assert figures.get(name, 0) == getattr(expected, name)
    assert figures["rating_sum"] == 7 and figures["ratings"] == 2
    assert counts["open|red|complaint"] == {"n": 3} and counts["overdue"] == {"n": 1}
    ops = {op._filter["_id"]: op._doc for op in tally_ops(add({}, counts))}
    assert ops["open|red|complaint"] == {
        "$inc": {"n": 3},
        "$setOnInsert": {"kind": "open", "colour": "red", "handling_class": "complaint"},
    }
    assert ops["card|pemda-51.08|2026-03"]["$setOnInsert"] == {
        "kind": "card",
        "institution": "pemda-51.08",
        "period": "2026-03",
    }

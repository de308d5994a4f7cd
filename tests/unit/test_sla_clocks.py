"""The clocks of one report (services/sla/domain/clocks.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.sla.domain.calendar import WorkingCalendar
from services.sla.domain.clocks import (
    BREACHED,
    MET,
    RUNNING,
    STOPPED,
    WARNED,
    CaseClocks,
    Transition,
    due_transitions,
    start_clocks,
)
from services.sla.domain.policy import Policy, default_policy_path, load_policy, parse_policy

TID = "7K3M-9QX2-DAC"
WITA = ZoneInfo("Asia/Makassar")
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # any moment: seconds mode ignores the calendar

SECONDS_POLICY = """
version = 1
[warning]
at_fraction = 0.8
[clocks.verification]
duration = "20s"
days = "working"
[clocks.first_response]
duration = "30s"
days = "calendar"
[clocks.resolution.information_request]
duration = "40s"
days = "working"
[clocks.resolution.complaint]
duration = "50s"
days = "working"
[clocks.resolution.dispute]
duration = "60s"
days = "working"
[clocks.resolution.field_inspection]
duration = "70s"
days = "calendar"
[clocks.auto_close]
duration = "80s"
days = "working"
[escalation]
ombudsman_after = "120s"
days = "calendar"
ladder = ["unit", "institution_admins", "national_admins"]
[extension]
max_count = 1
max_fraction = 0.5
"""


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def fast() -> Policy:
    return parse_policy(SECONDS_POLICY, Path("."))


def fast_case(policy: Policy, classification: str = "complaint", received: float = 0) -> CaseClocks:
    return start_clocks(
        TID,
        "pemda-51.08",
        "Asia/Makassar",
        classification,
        s(received),
        s(0),
        policy,
        WorkingCalendar(),
    )


def summary(case: CaseClocks) -> dict[str, tuple[datetime, datetime, datetime | None, str]]:
    return {c.name: (c.started_at, c.due_at, c.warn_at, c.state) for c in case.clocks}


def test_start_clocks_with_the_shipped_policy() -> None:
    policy = load_policy(default_policy_path())
    received = datetime(2026, 2, 23, 9, 30, tzinfo=WITA)  # Monday of an ordinary week
    routed = received + timedelta(minutes=5)
    case = start_clocks(
        TID,
        "pemda-51.08",
        "Asia/Makassar",
        "complaint",
        received,
        routed,
        policy,
        WorkingCalendar.from_policy(policy),
    )
    expected_due = {
        "first_response": datetime(2026, 2, 26, 23, 59, 59, 999999, WITA),  # 3 calendar days
        "resolution": datetime(2026, 3, 2, 23, 59, 59, 999999, WITA),  # 5 working days
        "ombudsman": datetime(2026, 4, 24, 23, 59, 59, 999999, WITA),  # 60 calendar days
    }
    assert [c.name for c in case.clocks] == ["first_response", "resolution", "ombudsman"]
    assert (case.tracking_id, case.institution_id, case.timezone) == (
        TID,
        "pemda-51.08",
        "Asia/Makassar",
    )
    for clock in case.clocks:
        assert clock.due_at == expected_due[clock.name]
        assert clock.state == RUNNING
        if clock.name == "ombudsman":
            assert clock.started_at == received and clock.warn_at is None
        else:
            assert clock.started_at == routed
            assert clock.warn_at is not None
            assert clock.started_at < clock.warn_at < clock.due_at
            assert clock.warn_at == routed + (clock.due_at - routed) * 0.8


def test_start_clocks_in_seconds_mode(fast: Policy) -> None:
    case = fast_case(fast, received=-10)
    assert summary(case) == {
        "first_response": (s(0), s(30), s(24), RUNNING),
        "resolution": (s(0), s(50), s(40), RUNNING),
        "ombudsman": (s(-10), s(110), None, RUNNING),  # counted from receipt
    }


@pytest.mark.parametrize(
    ("classification", "resolution_due"),
    [("aspiration", 50), ("complaint", 50), ("information_request", 40), ("unheard_of", 50)],
)
def test_resolution_clock_by_classification(
    fast: Policy, classification: str, resolution_due: int
) -> None:
    resolution = fast_case(fast, classification).clock("resolution")
    assert resolution is not None and resolution.due_at == s(resolution_due)


def kinds(transitions: list[Transition]) -> list[tuple[str, str, datetime, str]]:
    return [(t.kind, t.clock, t.due_at, t.escalation_level) for t in transitions]


def test_nothing_happens_before_the_warning(fast: Policy) -> None:
    case = fast_case(fast)
    after, transitions = due_transitions(case, s(23.999), fast.ladder)
    assert transitions == []
    assert after == case


def test_warning_once_then_breach_once(fast: Policy) -> None:
    case = fast_case(fast)
    case, transitions = due_transitions(case, s(24), fast.ladder)
    assert kinds(transitions) == [("warning", "first_response", s(30), "")]
    assert case.clock("first_response").state == WARNED  # type: ignore[union-attr]
    case, transitions = due_transitions(case, s(29), fast.ladder)
    assert transitions == []
    case, transitions = due_transitions(case, s(30), fast.ladder)
    assert kinds(transitions) == [("breach", "first_response", s(30), "unit")]
    assert case.clock("first_response").state == BREACHED  # type: ignore[union-attr]
    case, transitions = due_transitions(case, s(39), fast.ladder)
    assert transitions == []


def test_a_late_sweep_gives_everything_in_order_and_only_once(fast: Policy) -> None:
    case, transitions = due_transitions(fast_case(fast), s(10_000), fast.ladder)
    assert kinds(transitions) == [
        ("warning", "first_response", s(30), ""),
        ("breach", "first_response", s(30), "unit"),
        ("warning", "resolution", s(50), ""),
        ("breach", "resolution", s(50), "unit"),
        ("escalation", "ombudsman", s(120), "ombudsman"),
    ]
    assert {c.state for c in case.clocks} == {BREACHED}
    assert case.next_due_at is None
    again, more = due_transitions(case, s(20_000), fast.ladder)
    assert more == [] and again == case


def test_ombudsman_escalates_without_warning(fast: Policy) -> None:
    case = fast_case(fast)
    case = replace(case, clocks=tuple(c for c in case.clocks if c.name == "ombudsman"))
    case, transitions = due_transitions(case, s(119), fast.ladder)
    assert transitions == []
    case, transitions = due_transitions(case, s(120), fast.ladder)
    assert kinds(transitions) == [("escalation", "ombudsman", s(120), "ombudsman")]


def test_met_and_stopped_clocks_never_fire(fast: Policy) -> None:
    case = fast_case(fast)
    done = replace(
        case,
        clocks=tuple(replace(c, state=MET if i else STOPPED) for i, c in enumerate(case.clocks)),
    )
    assert done.next_due_at is None
    assert due_transitions(done, s(10_000), fast.ladder) == (done, [])


def test_empty_ladder_breaches_without_a_level(fast: Policy) -> None:
    _, transitions = due_transitions(fast_case(fast), s(30), ())
    assert kinds(transitions)[-1] == ("breach", "first_response", s(30), "")


def test_next_due_at_moves_forward(fast: Policy) -> None:
    case = fast_case(fast)
    seen = []
    while case.next_due_at is not None:
        seen.append(case.next_due_at)
        case, transitions = due_transitions(case, case.next_due_at, fast.ladder)
        assert len(transitions) == 1
    assert seen == [s(24), s(30), s(40), s(50), s(120)]


def test_event_ids_are_deterministic(fast: Policy) -> None:
    _, first = due_transitions(fast_case(fast), s(10_000), fast.ladder)
    _, second = due_transitions(fast_case(fast), s(50_000), fast.ladder)
    ids = [t.event_id(TID) for t in first]
    assert ids == [t.event_id(TID) for t in second]
    assert ids == [
        f"{TID}:first_response:warning",
        f"{TID}:first_response:breach",
        f"{TID}:resolution:warning",
        f"{TID}:resolution:breach",
        f"{TID}:ombudsman:escalation",
    ]

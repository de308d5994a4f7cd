"""Clocks driven by the actions on a case (services/sla/domain/actions.py), the ladder,
pauses and extensions, in seconds mode (hand-checkable elapsed time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.sla.domain.actions import (
    Action,
    ClockError,
    ExtensionTooLong,
    Rules,
    apply_action,
    extend_resolution,
)
from services.sla.domain.calendar import WorkingCalendar
from services.sla.domain.clocks import (
    AUTO_CLOSE,
    BREACHED,
    FIRST_RESPONSE,
    MET,
    OMBUDSMAN,
    RESOLUTION,
    RUNNING,
    STOPPED,
    VERIFICATION,
    WARNED,
    CaseClocks,
    due_transitions,
    start_clocks,
)
from services.sla.domain.policy import Policy, parse_policy
from services.sla.domain.status import card_facts, colour

TID = "7K3M-9QX2-DAC"
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)

POLICY = """
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
duration = "140s"
days = "working"
[clocks.resolution.field_inspection]
duration = "600s"
days = "calendar"
[clocks.auto_close]
duration = "100s"
days = "working"
[escalation]
ombudsman_after = "1000s"
days = "calendar"
ladder = ["unit", "institution_admins", "national_admins"]
ladder_interval = "10s"
[extension]
max_count = 1
max_fraction = 0.5
"""


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(POLICY, Path("."))


@pytest.fixture(scope="module")
def rules(policy: Policy) -> Rules:
    return Rules(policy, WorkingCalendar())


def routed(policy: Policy, *, queue: bool = False) -> CaseClocks:
    return start_clocks(
        TID,
        "verification-queue" if queue else "pemda-51.08",
        "Asia/Makassar",
        "complaint",
        s(0),
        s(0),
        policy,
        WorkingCalendar(),
        in_verification=queue,
    )


def act(case: CaseClocks, rules: Rules, name: str, at: float, **kw: object) -> CaseClocks:
    return apply_action(case, Action(name, s(at), **kw), rules)  # type: ignore[arg-type]


def clock(case: CaseClocks, name: str):  # type: ignore[no-untyped-def]
    c = case.clock(name)
    assert c is not None, name
    return c


def test_verification_queue_runs_verification_then_resolution_starts(
    policy: Policy, rules: Rules
) -> None:
    case = routed(policy, queue=True)
    assert [c.name for c in case.clocks] == [FIRST_RESPONSE, VERIFICATION, OMBUDSMAN]
    assert clock(case, VERIFICATION).due_at == s(20)
    case = act(
        case, rules, "verified", 5, to_state="assigned", institution_id="pemda-51.08/dinas-pu"
    )
    assert clock(case, VERIFICATION).state == MET
    assert clock(case, RESOLUTION).started_at == s(5)
    assert clock(case, RESOLUTION).due_at == s(55)
    assert case.institution_id == "pemda-51.08/dinas-pu"


def test_archived_stops_everything(policy: Policy, rules: Rules) -> None:
    case = act(routed(policy, queue=True), rules, "archived", 3, to_state="archived")
    assert {c.state for c in case.clocks} == {STOPPED}
    assert case.next_due_at is None
    assert due_transitions(case, s(10_000), policy.ladder, policy.ladder_interval)[1] == []


def test_responded_meets_first_response_and_turns_yellow(policy: Policy, rules: Rules) -> None:
    case = routed(policy)
    assert colour(case) == "red"
    case = act(case, rules, "responded", 10)
    assert clock(case, FIRST_RESPONSE).state == MET
    assert clock(case, FIRST_RESPONSE).stopped_at == s(10)
    assert colour(case) == "yellow"
    assert card_facts(case, s(0)).first_response_on_time is True


def test_handling_class_set_recomputes_from_the_start(policy: Policy, rules: Rules) -> None:
    case = act(routed(policy), rules, "handling_class_set", 10, handling_class="dispute")
    assert clock(case, RESOLUTION).due_at == s(140)
    assert clock(case, RESOLUTION).warn_at == s(112)
    assert clock(case, RESOLUTION).policy_key == "resolution.dispute"
    with pytest.raises(ClockError, match="handling_class"):
        act(case, rules, "handling_class_set", 11, handling_class="gossip")


def test_a_breached_clock_given_more_time_runs_again_in_a_new_cycle(
    policy: Policy, rules: Rules
) -> None:
    case, events = due_transitions(routed(policy), s(51), policy.ladder, policy.ladder_interval)
    assert clock(case, RESOLUTION).state == BREACHED
    case = act(case, rules, "handling_class_set", 52, handling_class="dispute")
    resolution = clock(case, RESOLUTION)
    assert (resolution.state, resolution.cycle, resolution.due_at) == (RUNNING, 1, s(140))
    case, events = due_transitions(case, s(140), policy.ladder, policy.ladder_interval)
    ids = [t.event_id(TID) for t in events if t.clock == RESOLUTION]
    assert ids == [f"{TID}:resolution#1:warning", f"{TID}:resolution#1:breach"]


def test_info_request_pauses_and_info_provided_resumes(policy: Policy, rules: Rules) -> None:
    case = act(routed(policy), rules, "info_requested", 10, to_state="awaiting_reporter")
    assert case.info_pending and clock(case, RESOLUTION).paused
    assert clock(case, FIRST_RESPONSE).state == MET  # asking the reporter answers them
    # nothing fires while paused, however long it lasts (the Ombudsman clock keeps running)
    paused, events = due_transitions(case, s(500), policy.ladder, policy.ladder_interval)
    assert [t.clock for t in events] == []
    case = act(case, rules, "info_provided", 40, to_state="in_progress")
    assert not case.info_pending
    assert clock(case, RESOLUTION).due_at == s(80)  # 50 s + 30 s paused
    assert clock(case, RESOLUTION).warn_at == s(64)


def test_resume_without_a_pending_request_is_refused(policy: Policy, rules: Rules) -> None:
    with pytest.raises(ClockError, match="no information request is pending"):
        act(routed(policy), rules, "info_provided", 5)


def test_a_second_information_request_while_one_is_pending_is_refused(
    policy: Policy, rules: Rules
) -> None:
    case = act(routed(policy), rules, "info_requested", 5)
    with pytest.raises(ClockError, match="already pending"):
        act(case, rules, "info_requested", 6)


def test_resolved_starts_auto_close_and_stops_the_ombudsman(policy: Policy, rules: Rules) -> None:
    case = act(routed(policy), rules, "resolved", 20, to_state="resolved")
    assert clock(case, RESOLUTION).state == MET
    assert clock(case, OMBUDSMAN).state == MET
    assert clock(case, AUTO_CLOSE).due_at == s(120)
    assert colour(case) == "green"
    case, events = due_transitions(case, s(120), policy.ladder, policy.ladder_interval)
    assert [(t.kind, t.event_id(TID)) for t in events] == [
        ("auto_close_due", f"{TID}:auto_close:auto_close_due")
    ]
    case = act(case, rules, "auto_closed", 121, to_state="closed")
    assert case.next_due_at is None


def test_rejected_restarts_resolution_and_the_ombudsman_clock(policy: Policy, rules: Rules) -> None:
    case = act(routed(policy), rules, "resolved", 20, to_state="resolved")
    case = act(case, rules, "rejected", 30, to_state="in_progress")
    assert clock(case, AUTO_CLOSE).state == STOPPED
    resolution = clock(case, RESOLUTION)
    assert (resolution.state, resolution.cycle, resolution.started_at) == (RUNNING, 1, s(30))
    assert resolution.due_at == s(80)
    assert clock(case, OMBUDSMAN).state == RUNNING
    assert clock(case, OMBUDSMAN).due_at == s(1000)  # still 60 "days" from receipt


def test_confirmed_stops_everything(policy: Policy, rules: Rules) -> None:
    case = act(routed(policy), rules, "resolved", 20, to_state="resolved")
    case = act(case, rules, "confirmed", 25, to_state="closed")
    assert case.next_due_at is None
    assert not card_facts(case, s(0)).open


def test_ladder_climbs_one_rung_per_interval_until_met(policy: Policy, rules: Rules) -> None:
    case = routed(policy)
    seen = []
    for t in (30, 39, 40, 55):
        case, events = due_transitions(case, s(t), policy.ladder, policy.ladder_interval)
        seen += [(t, e.clock, e.escalation_level) for e in events if e.kind == "breach"]
    assert seen == [
        (30, FIRST_RESPONSE, "unit"),
        (40, FIRST_RESPONSE, "institution_admins"),
        (55, FIRST_RESPONSE, "national_admins"),
        (55, RESOLUTION, "unit"),
    ]
    case = act(case, rules, "responded", 56)
    first = clock(case, FIRST_RESPONSE)
    assert (first.state, first.stopped_at) == (BREACHED, s(56))  # met late
    assert not first.overdue
    assert card_facts(case, s(0)).first_response_on_time is False
    case, events = due_transitions(case, s(1000), policy.ladder, policy.ladder_interval)
    assert [(e.clock, e.escalation_level) for e in events] == [
        (RESOLUTION, "institution_admins"),
        (RESOLUTION, "national_admins"),
        (OMBUDSMAN, "ombudsman"),
    ]
    ids = [e.event_id(TID) for e in events]
    assert ids[:2] == [
        f"{TID}:resolution:breach:institution_admins",
        f"{TID}:resolution:breach:national_admins",
    ]


def test_detection_points_are_the_warning_and_rung_times(policy: Policy) -> None:
    _, events = due_transitions(routed(policy), s(45), policy.ladder, policy.ladder_interval)
    assert [(e.kind, e.clock, e.point) for e in events] == [
        ("warning", FIRST_RESPONSE, s(24)),
        ("breach", FIRST_RESPONSE, s(30)),
        ("breach", FIRST_RESPONSE, s(40)),
        ("warning", RESOLUTION, s(40)),
    ]


def test_extension_once_within_the_cap(policy: Policy, rules: Rules) -> None:
    case = routed(policy)
    longer = extend_resolution(case, timedelta(seconds=25), s(10), rules)
    resolution = clock(longer, RESOLUTION)
    assert (resolution.due_at, resolution.warn_at, resolution.extensions) == (s(75), s(60), 1)
    with pytest.raises(ClockError, match="extended 1 time"):
        extend_resolution(longer, timedelta(seconds=1), s(11), rules)
    assert case == routed(policy)  # nothing changed on the original


def test_extension_beyond_the_cap_is_refused(policy: Policy, rules: Rules) -> None:
    with pytest.raises(ExtensionTooLong, match="exceeds the cap of 50%"):
        extend_resolution(routed(policy), timedelta(seconds=26), s(10), rules)


def test_extension_after_the_deadline_passed_is_refused(policy: Policy, rules: Rules) -> None:
    case, _ = due_transitions(routed(policy), s(51), policy.ladder, policy.ladder_interval)
    with pytest.raises(ClockError, match="already passed"):
        extend_resolution(case, timedelta(seconds=5), s(52), rules)


def test_extension_survives_a_pause(policy: Policy, rules: Rules) -> None:
    case = extend_resolution(routed(policy), timedelta(seconds=20), s(5), rules)
    case = act(case, rules, "info_requested", 10)
    case = act(case, rules, "info_provided", 20)
    assert clock(case, RESOLUTION).due_at == s(80)  # 50 + 20 extension + 10 paused


def test_escalated_report_card_facts(policy: Policy) -> None:
    from dataclasses import replace

    case, _ = due_transitions(routed(policy), s(1000), policy.ladder, policy.ladder_interval)
    case = replace(case, escalated=True)
    facts = card_facts(case, s(0))
    assert facts.top_institution == "pemda-51.08"
    assert facts.period == "2026-03"
    assert (facts.overdue, facts.first_response_overdue, facts.escalated) == (True, True, True)
    assert facts.colour == "red"


def test_warned_stays_warned_when_the_deadline_moves_out(policy: Policy, rules: Rules) -> None:
    case, _ = due_transitions(routed(policy), s(41), policy.ladder, policy.ladder_interval)
    assert clock(case, RESOLUTION).state == WARNED
    case = extend_resolution(case, timedelta(seconds=20), s(42), rules)
    assert clock(case, RESOLUTION).state == WARNED
    _, events = due_transitions(case, s(60), policy.ladder, policy.ladder_interval)
    assert [e.kind for e in events if e.clock == RESOLUTION] == []


# -- actions heard after the sweep: decided on the action's time ------------------------------


def test_an_answer_in_time_heard_after_the_breach_is_met_on_time(
    policy: Policy, rules: Rules
) -> None:
    """The officer answered at 29 s; the event reached sla after the sweep breached the 30 s
    deadline (and climbed a rung): met, not overdue, on time on the report card."""
    case, events = due_transitions(routed(policy), s(41), policy.ladder, policy.ladder_interval)
    assert clock(case, FIRST_RESPONSE).state == BREACHED
    assert card_facts(case, s(0)).first_response_overdue
    case = act(case, rules, "responded", 29)
    first = clock(case, FIRST_RESPONSE)
    assert (first.state, first.stopped_at, first.next_rung_at) == (MET, s(29), None)
    assert not first.overdue and not case.overdue
    facts = card_facts(case, s(0))
    assert facts.first_response_on_time is True and not facts.first_response_overdue
    # no more rungs for it
    _, later = due_transitions(case, s(60), policy.ladder, policy.ladder_interval)
    assert FIRST_RESPONSE not in {t.clock for t in later}


def test_an_answer_after_the_deadline_stays_breached(policy: Policy, rules: Rules) -> None:
    case, _ = due_transitions(routed(policy), s(31), policy.ladder, policy.ladder_interval)
    case = act(case, rules, "responded", 30.5)
    first = clock(case, FIRST_RESPONSE)
    assert (first.state, first.stopped_at) == (BREACHED, s(30.5))
    assert card_facts(case, s(0)).first_response_on_time is False


def test_a_resolution_in_time_heard_after_the_breach_is_on_time(
    policy: Policy, rules: Rules
) -> None:
    case, _ = due_transitions(routed(policy), s(52), policy.ladder, policy.ladder_interval)
    assert clock(case, RESOLUTION).state == BREACHED
    case = act(case, rules, "resolved", 49, to_state="resolved")
    assert clock(case, RESOLUTION).state == MET
    assert card_facts(case, s(0)).resolved_on_time is True


def test_the_ombudsman_hand_over_stays_a_fact_whatever_came_before_it(
    policy: Policy, rules: Rules
) -> None:
    case, events = due_transitions(routed(policy), s(1001), policy.ladder, policy.ladder_interval)
    assert OMBUDSMAN in {t.clock for t in events}
    case = act(case, rules, "resolved", 999, to_state="resolved")
    assert clock(case, OMBUDSMAN).state == BREACHED  # the Ombudsman has the report


def test_an_information_request_after_the_deadline_does_not_hold_it(
    policy: Policy, rules: Rules
) -> None:
    """Not swept yet (the sweep waits for the broker, say): the deadline at 50 s passed, the
    request at 60 s does not pause it, and the sweep breaches it."""
    case = act(routed(policy), rules, "responded", 5)
    case = act(case, rules, "info_requested", 60, to_state="awaiting_reporter")
    assert case.info_pending and not clock(case, RESOLUTION).paused
    case, events = due_transitions(case, s(61), policy.ladder, policy.ladder_interval)
    assert (RESOLUTION, "breach") in {(t.clock, t.kind) for t in events}
    case = act(case, rules, "info_provided", 70, to_state="in_progress")  # allowed, no change
    assert clock(case, RESOLUTION).due_at == s(50)


def test_extension_of_a_deadline_passed_but_not_yet_swept_is_refused(
    policy: Policy, rules: Rules
) -> None:
    case = routed(policy)
    assert clock(case, RESOLUTION).state == RUNNING  # the sweep has not seen it
    with pytest.raises(ClockError, match="already passed"):
        extend_resolution(case, timedelta(seconds=5), s(50.5), rules)
    paused = act(case, rules, "info_requested", 10)
    longer = extend_resolution(paused, timedelta(seconds=5), s(55), rules)  # paused: not passed
    assert clock(longer, RESOLUTION).extensions == 1


def test_resolved_after_the_ombudsman_deadline_is_still_handed_over(
    policy: Policy, rules: Rules
) -> None:
    """Unresolved at the deadline (POLICY: 1000 s) is what the law hands over: a resolution
    after it, within the hand-over margin or heard late, leaves the Ombudsman clock running;
    one made in time stops it."""
    late = act(routed(policy), rules, "resolved", 1001, to_state="resolved")
    assert clock(late, RESOLUTION).state == MET
    assert clock(late, OMBUDSMAN).state == RUNNING
    _, events = due_transitions(late, s(1001), policy.ladder, policy.ladder_interval)
    assert ("escalation", f"{TID}:ombudsman:escalation") in [
        (t.kind, t.event_id(TID)) for t in events
    ]
    in_time = act(routed(policy), rules, "resolved", 1000, to_state="resolved")
    assert clock(in_time, OMBUDSMAN).state == MET


def test_the_hand_over_waits_for_the_margin_after_the_deadline() -> None:
    """[escalation] handover_margin: the Ombudsman clock is acted on that long after its
    deadline (routing's last actions before it are published and heard by then); the
    escalation still names the deadline."""
    margined = parse_policy(
        POLICY.replace(
            'ladder_interval = "10s"', 'ladder_interval = "10s"\nhandover_margin = "60s"'
        ),
        Path("."),
    )
    assert margined.handover_margin == timedelta(seconds=60)
    case = routed(margined)
    ombudsman = clock(case, OMBUDSMAN)
    assert (ombudsman.due_at, ombudsman.next_at) == (s(1000), s(1060))
    # the other clocks are not affected
    assert clock(case, FIRST_RESPONSE).grace == timedelta(0)
    case, _ = due_transitions(case, s(999), margined.ladder, margined.ladder_interval)
    _, events = due_transitions(case, s(1059), margined.ladder, margined.ladder_interval)
    assert "escalation" not in [t.kind for t in events]
    _, events = due_transitions(case, s(1060), margined.ladder, margined.ladder_interval)
    [escalation] = [t for t in events if t.kind == "escalation"]
    assert escalation.due_at == escalation.point == s(1000)

"""How the actions on a case (routing's state machine) drive its clocks. Pure: no I/O.

* verification: runs while the report waits in the national verification queue; met at
  ``verified``, stopped at ``archived`` / ``not_authority``.
* first_response: met at ``responded`` (or anything that answers the reporter: an
  information request, a follow-up, a resolution).
* resolution: starts when an institution holds the case, is recomputed from its start on
  ``handling_class_set``, pauses on ``info_requested`` and resumes on ``info_provided``,
  is met at ``resolved`` and restarts (a new cycle) on ``rejected``.
* auto_close: starts at ``resolved``; stopped by ``rejected``, ``confirmed``, ``auto_closed``.
* ombudsman: counted from receipt; stops while the case is resolved or closed and resumes
  (same deadline: 60 days from receipt) when the reporter rejects the follow-up.
* ``confirmed`` / ``auto_closed`` / ``archived`` / ``not_authority`` stop every clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from services.sla.domain.calendar import (
    ExtensionError,
    Pause,
    WorkingCalendar,
    end_of_day,
    extend,
    warning_at,
)
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
    Clock,
    new_clock,
)
from services.sla.domain.policy import HANDLING_CLASSES, ClockPolicy, Policy

HOLDING_STATES = ("assigned", "in_progress", "awaiting_reporter")
ANSWERS = ("responded", "info_requested", "followed_up", "resolved")
TERMINAL = ("confirmed", "auto_closed", "archived", "not_authority")
PAUSABLE = (FIRST_RESPONSE, RESOLUTION)


class ClockError(ValueError):
    """An action or request the clocks cannot accept (e.g. a resume without a pause)."""


class ExtensionTooLong(ClockError):
    """An extension beyond the policy's cap."""


@dataclass(frozen=True)
class Action:
    name: str
    at: datetime
    to_state: str = ""
    institution_id: str = ""
    handling_class: str = ""
    new_due_at: datetime | None = None


@dataclass(frozen=True)
class Rules:
    policy: Policy
    calendar: WorkingCalendar

    def spec(self, clock: Clock) -> ClockPolicy:
        if clock.policy_key == "escalation.ombudsman":
            return self.policy.escalation_after
        return self.policy.clock(clock.policy_key)

    def recompute(self, clock: Clock, tz: str, now: datetime) -> Clock:
        """Due and warning times from the clock's start, pauses and extensions."""
        spec = self.spec(clock)
        due = self.calendar.deadline(clock.started_at, spec, tz, clock.pauses, now=now)
        if clock.extended_by:
            whole, rest = divmod(clock.extended_by, timedelta(days=1))
            if spec.days == "working" and not rest:
                day = self.calendar.nth_working_day_after(due.astimezone(due.tzinfo).date(), whole)
                due = end_of_day(day, tz)
            else:
                due = due + clock.extended_by
        warn = None
        if clock.warn_at is not None:
            warn = warning_at(clock.started_at, due, self.policy.warning_fraction)
        return replace(clock, due_at=due, warn_at=warn)


#: Clocks whose breach the sweep may take back when the action that meets them turns out to
#: have come in time: an officer answered at 23:58, the event reached sla after the sweep
#: breached the deadline at midnight. Not the Ombudsman hand-over (the Ombudsman has the
#: report: that stays a fact) nor auto-close (its breach is the closing itself).
ON_TIME_CORRECTABLE = (VERIFICATION, FIRST_RESPONSE, RESOLUTION)


def _stop(clock: Clock, at: datetime, met: bool) -> Clock:
    if clock.stopped_at is not None or clock.state in (MET, STOPPED):
        return clock
    if clock.state == BREACHED:
        if met and clock.name in ON_TIME_CORRECTABLE and at <= clock.due_at and not clock.paused:
            # Met in time, heard late: met, not overdue; the report card counts it on time.
            return replace(clock, state=MET, stopped_at=at, next_rung_at=None)
        return replace(clock, stopped_at=at, next_rung_at=None)  # met late: stays breached
    return replace(clock, state=MET if met else STOPPED, stopped_at=at)


def _stop_named(case: CaseClocks, names: tuple[str, ...], at: datetime, met: bool) -> CaseClocks:
    return replace(
        case,
        clocks=tuple(_stop(c, at, met) if c.name in names else c for c in case.clocks),
    )


def _close_pause(clock: Clock, at: datetime) -> Clock:
    if not clock.paused:
        return clock
    start, _ = clock.pauses[-1]
    pauses: tuple[Pause, ...] = (*clock.pauses[:-1], (start, max(at, start)))
    return replace(clock, pauses=pauses)


def apply_action(case: CaseClocks, action: Action, rules: Rules) -> CaseClocks:
    """The clocks after ``action``. Raises :class:`ClockError` for an action they refuse."""
    at, name = action.at, action.name
    if action.institution_id:
        case = replace(case, institution_id=action.institution_id)
    if action.to_state:
        case = replace(case, case_state=action.to_state)
    if name in ANSWERS:
        case = replace(case, responded=True)
        case = _stop_named(case, (FIRST_RESPONSE,), at, met=True)
    if name == "verified":
        case = _stop_named(case, (VERIFICATION,), at, met=True)
    if name in TERMINAL:
        case = _close_all_pauses(case, at)
        case = _stop_named(case, tuple(c.name for c in case.clocks), at, met=name != "archived")
        return replace(case, info_pending=False)
    if name == "handling_class_set" and action.handling_class:
        case = _set_handling_class(case, action.handling_class, at, rules)
    if name == "info_requested":
        case = _pause(case, at)
    elif name == "info_provided":
        case = _resume(case, at, rules)
    elif name == "resolved":
        case = _close_all_pauses(replace(case, info_pending=False), at)
        # Resolved after the Ombudsman's deadline (within the hand-over margin, or heard
        # late): the report was unresolved at 60 days, so its Ombudsman clock runs on to the
        # hand-over. Resolved in time, it stops.
        ombudsman = case.clock(OMBUDSMAN)
        passed = ombudsman is not None and ombudsman.state in (RUNNING, WARNED)
        passed = passed and ombudsman is not None and ombudsman.due_at < at
        case = _stop_named(case, (RESOLUTION,) if passed else (RESOLUTION, OMBUDSMAN), at, met=True)
        auto = new_clock(
            AUTO_CLOSE, "auto_close", at, rules.policy, rules.calendar, case.timezone, warns=False
        )
        previous = case.clock(AUTO_CLOSE)
        case = case.with_clock(replace(auto, cycle=previous.cycle + 1) if previous else auto)
    elif name == "rejected":
        case = _reopen(case, at, rules)
    elif name == "extended" and action.new_due_at is not None:
        resolution = case.clock(RESOLUTION)
        if resolution is not None and action.new_due_at > resolution.due_at:
            case = extend_resolution(case, action.new_due_at - resolution.due_at, at, rules)
    if case.case_state in HOLDING_STATES and case.clock(RESOLUTION) is None:
        case = case.with_clock(_resolution_clock(case, at, rules))
    return case


def _resolution_clock(case: CaseClocks, at: datetime, rules: Rules, cycle: int = 0) -> Clock:
    """A resolution clock starting at `at` for the case's current handling class."""
    return new_clock(
        RESOLUTION,
        f"resolution.{case.handling_class}",
        at,
        rules.policy,
        rules.calendar,
        case.timezone,
        cycle=cycle,
    )


def _set_handling_class(case: CaseClocks, handling: str, at: datetime, rules: Rules) -> CaseClocks:
    if handling not in HANDLING_CLASSES:
        raise ClockError(
            f"handling_class: {handling!r} is not one of {', '.join(HANDLING_CLASSES)}"
        )
    case = replace(case, handling_class=handling)
    clock = case.clock(RESOLUTION)
    if clock is None or clock.stopped_at is not None:
        return case
    updated = rules.recompute(
        replace(clock, policy_key=f"resolution.{handling}"), case.timezone, at
    )
    return case.with_clock(_rearm(clock, updated, at))


def _rearm(old: Clock, new: Clock, now: datetime) -> Clock:
    """After a deadline moved: a breached clock whose deadline is now ahead runs again (a new
    cycle, so its next warning and breach get new event ids); a warning already given stays."""
    if old.state == BREACHED and new.due_at > now:
        warned = new.warn_at is not None and new.warn_at <= now
        return replace(
            new,
            state=WARNED if warned else RUNNING,
            cycle=old.cycle + 1,
            rungs=0,
            next_rung_at=None,
        )
    if old.state == WARNED and new.warn_at is not None and new.warn_at > now:
        return replace(new, state=WARNED)
    return new


def _pause(case: CaseClocks, at: datetime) -> CaseClocks:
    """Pause the running deadlines while the reporter is asked for more information. A
    deadline that has passed already (the sweep had not got to it yet) is not paused: the
    request came too late to hold it, and the sweep breaches it."""
    if case.info_pending:
        raise ClockError("info_requested: an information request is already pending")
    clocks = tuple(
        replace(c, pauses=(*c.pauses, (at, None)))
        if c.name in PAUSABLE
        and c.stopped_at is None
        and c.state in (RUNNING, WARNED)
        and c.due_at > at
        else c
        for c in case.clocks
    )
    return replace(case, clocks=clocks, info_pending=True)


def _resume(case: CaseClocks, at: datetime, rules: Rules) -> CaseClocks:
    if not case.info_pending:
        raise ClockError("info_provided: no information request is pending (nothing to resume)")
    clocks = tuple(
        rules.recompute(_close_pause(c, at), case.timezone, at) if c.paused else c
        for c in case.clocks
    )
    return replace(case, clocks=clocks, info_pending=False)


def _close_all_pauses(case: CaseClocks, at: datetime) -> CaseClocks:
    return replace(case, clocks=tuple(_close_pause(c, at) for c in case.clocks))


def _reopen(case: CaseClocks, at: datetime, rules: Rules) -> CaseClocks:
    """The reporter rejected the follow-up: resolution starts again, auto-close stops, the
    Ombudsman clock (60 days from receipt) runs again."""
    case = _stop_named(case, (AUTO_CLOSE,), at, met=False)
    old = case.clock(RESOLUTION)
    case = case.with_clock(_resolution_clock(case, at, rules, cycle=old.cycle + 1 if old else 0))
    ombudsman = case.clock(OMBUDSMAN)
    if ombudsman is not None and ombudsman.state in (MET, STOPPED):
        case = case.with_clock(replace(ombudsman, state=RUNNING, stopped_at=None))
    elif ombudsman is not None and ombudsman.state == BREACHED:
        case = case.with_clock(replace(ombudsman, stopped_at=None))
    return case


def extend_resolution(
    case: CaseClocks, extension: timedelta, at: datetime, rules: Rules
) -> CaseClocks:
    """Extend the running resolution deadline once, within the policy's cap."""
    clock = case.clock(RESOLUTION)
    if clock is None:
        raise ClockError("clock: the case has no resolution deadline yet (no institution holds it)")
    if clock.stopped_at is not None or clock.state in (MET, STOPPED):
        raise ClockError("clock: the resolution deadline is no longer running")
    if clock.state == BREACHED or rules.recompute(clock, case.timezone, at).due_at <= at:
        # Passed, whether or not the sweep has breached it yet (e.g. sla serving while the
        # broker, and so the sweep, is away).
        raise ClockError("clock: the resolution deadline has already passed; it cannot be extended")
    spec = rules.spec(clock)
    if clock.extensions >= rules.policy.extension_max_count:
        raise ClockError(
            f"extension: the resolution deadline may be extended "
            f"{rules.policy.extension_max_count} time(s); it already was {clock.extensions}"
        )
    try:
        extend(
            clock.due_at,
            spec.duration,
            extension,
            clock.extensions,
            rules.policy,
            days=spec.days,
            calendar=rules.calendar,
            tz=case.timezone,
            extended_so_far=clock.extended_by,
        )
    except ExtensionError as exc:
        raise ExtensionTooLong(f"extension: {exc}") from None
    updated = replace(
        clock, extensions=clock.extensions + 1, extended_by=clock.extended_by + extension
    )
    updated = rules.recompute(updated, case.timezone, at)
    if clock.state == WARNED and updated.warn_at is not None and updated.warn_at > at:
        updated = replace(updated, state=WARNED)
    return case.with_clock(updated)

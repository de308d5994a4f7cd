"""The clocks of one report and what happens when they run out. Pure: no I/O.

Each clock warns once (at the policy's fraction of its time) and breaches once; the
Ombudsman clock escalates once. Event ids are derived from the report, the clock and the
transition, so the same transition always has the same id wherever it is computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from services.sla.domain.calendar import WorkingCalendar, warning_at
from services.sla.domain.policy import Policy

RUNNING, WARNED, BREACHED, MET, STOPPED = "running", "warned", "breached", "met", "stopped"
FIRST_RESPONSE, RESOLUTION, OMBUDSMAN = "first_response", "resolution", "ombudsman"

HANDLING_CLASS_FOR = {
    "information_request": "information_request",
    "complaint": "complaint",
    "aspiration": "complaint",
}


@dataclass(frozen=True)
class Clock:
    name: str
    started_at: datetime
    due_at: datetime
    warn_at: datetime | None
    state: str = RUNNING

    @property
    def next_at(self) -> datetime | None:
        if self.state == RUNNING:
            return self.warn_at or self.due_at
        if self.state == WARNED:
            return self.due_at
        return None


@dataclass(frozen=True)
class Transition:
    kind: str  # "warning" | "breach" | "escalation"
    clock: str
    due_at: datetime
    escalation_level: str = ""

    def event_id(self, tracking_id: str) -> str:
        return f"{tracking_id}:{self.clock}:{self.kind}"


@dataclass(frozen=True)
class CaseClocks:
    tracking_id: str
    institution_id: str
    timezone: str
    clocks: tuple[Clock, ...] = field(default_factory=tuple)

    def clock(self, name: str) -> Clock | None:
        return next((c for c in self.clocks if c.name == name), None)

    @property
    def next_due_at(self) -> datetime | None:
        times = [t for t in (c.next_at for c in self.clocks) if t is not None]
        return min(times) if times else None


def start_clocks(
    tracking_id: str,
    institution_id: str,
    timezone: str,
    classification: str,
    received_at: datetime,
    routed_at: datetime,
    policy: Policy,
    calendar: WorkingCalendar,
) -> CaseClocks:
    """The clocks a routed report starts with: first response and resolution from routing,
    the Ombudsman take-over from receipt."""
    handling = HANDLING_CLASS_FOR.get(classification, "complaint")
    specs = [
        (FIRST_RESPONSE, routed_at, policy.clock("first_response"), True),
        (RESOLUTION, routed_at, policy.resolution_clock(handling), True),
        (OMBUDSMAN, received_at, policy.escalation_after, False),
    ]
    clocks = []
    for name, start, spec, warns in specs:
        due = calendar.deadline(start, spec, timezone)
        warn = warning_at(start, due, policy.warning_fraction) if warns else None
        clocks.append(Clock(name, start, due, warn))
    return CaseClocks(tracking_id, institution_id, timezone, tuple(clocks))


def due_transitions(
    case: CaseClocks, now: datetime, ladder: tuple[str, ...]
) -> tuple[CaseClocks, list[Transition]]:
    """Advance every clock whose time has come; return the new state and what happened.

    A clock passed both its warning and its deadline since the last sweep gets both, in
    order. Breaches go to the first rung of the escalation ladder.
    """
    transitions: list[Transition] = []
    updated: list[Clock] = []
    for clock in case.clocks:
        current = clock
        if current.state == RUNNING and current.warn_at is not None and current.warn_at <= now:
            transitions.append(Transition("warning", current.name, current.due_at))
            current = replace(current, state=WARNED)
        if current.state in (RUNNING, WARNED) and current.due_at <= now:
            if current.name == OMBUDSMAN:
                transitions.append(
                    Transition("escalation", current.name, current.due_at, "ombudsman")
                )
            else:
                transitions.append(
                    Transition("breach", current.name, current.due_at, ladder[0] if ladder else "")
                )
            current = replace(current, state=BREACHED)
        updated.append(current)
    return replace(case, clocks=tuple(updated)), transitions

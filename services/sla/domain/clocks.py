"""The clocks of one report and what happens when they run out. Pure: no I/O.

Each clock warns once (at the policy's fraction of its time) and breaches once; a breached
clock that keeps running climbs the escalation ladder, one rung per ``ladder_interval``;
the Ombudsman clock escalates once; the auto-close clock says once that the reporter stayed
silent. Event ids are derived from the report, the clock, its cycle (a clock restarted by a
rejection starts a new cycle) and the transition, so the same transition always has the same
id wherever it is computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from services.sla.domain.calendar import Pause, WorkingCalendar, warning_at
from services.sla.domain.policy import Policy

RUNNING, WARNED, BREACHED, MET, STOPPED = "running", "warned", "breached", "met", "stopped"
VERIFICATION, FIRST_RESPONSE, RESOLUTION, OMBUDSMAN, AUTO_CLOSE = (
    "verification",
    "first_response",
    "resolution",
    "ombudsman",
    "auto_close",
)

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
    policy_key: str = ""  # e.g. "resolution.complaint"; "" for clocks stored before it existed
    pauses: tuple[Pause, ...] = ()
    extensions: int = 0
    extended_by: timedelta = timedelta(0)
    cycle: int = 0
    rungs: int = 0  # ladder rungs emitted since the breach
    next_rung_at: datetime | None = None
    stopped_at: datetime | None = None
    #: Time after the deadline before it is acted on: the Ombudsman clock's hand-over margin
    #: (Policy.handover_margin); 0 for every other clock.
    grace: timedelta = timedelta(0)

    @property
    def acted_at(self) -> datetime:
        """When the deadline is acted on (the sweep's breach or escalation)."""
        return self.due_at + self.grace

    @property
    def paused(self) -> bool:
        return bool(self.pauses) and self.pauses[-1][1] is None

    @property
    def next_at(self) -> datetime | None:
        if self.paused or self.stopped_at is not None:
            return None
        if self.state == RUNNING:
            return self.warn_at or self.acted_at
        if self.state == WARNED:
            return self.acted_at
        if self.state == BREACHED:
            return self.next_rung_at
        return None

    @property
    def overdue(self) -> bool:
        """Breached and still running (not yet met late or stopped)."""
        return self.state == BREACHED and self.stopped_at is None

    @property
    def label(self) -> str:
        return self.name if self.cycle == 0 else f"{self.name}#{self.cycle}"


@dataclass(frozen=True)
class Transition:
    kind: str  # "warning" | "breach" | "escalation" | "auto_close_due"
    clock: str
    due_at: datetime
    escalation_level: str = ""
    cycle: int = 0
    rung: int = 0
    point: datetime | None = None  # when it became due (warning point, deadline, rung time)

    def event_id(self, tracking_id: str) -> str:
        label = self.clock if self.cycle == 0 else f"{self.clock}#{self.cycle}"
        suffix = f":{self.escalation_level}" if self.kind == "breach" and self.rung else ""
        return f"{tracking_id}:{label}:{self.kind}{suffix}"


@dataclass(frozen=True)
class CaseClocks:
    tracking_id: str
    institution_id: str
    timezone: str
    clocks: tuple[Clock, ...] = field(default_factory=tuple)
    case_state: str = "assigned"
    responded: bool = False
    handling_class: str = "complaint"
    info_pending: bool = False
    escalated: bool = False

    def clock(self, name: str) -> Clock | None:
        return next((c for c in self.clocks if c.name == name), None)

    def with_clock(self, new: Clock) -> CaseClocks:
        if self.clock(new.name) is None:
            return replace(self, clocks=(*self.clocks, new))
        return replace(self, clocks=tuple(new if c.name == new.name else c for c in self.clocks))

    @property
    def next_due_at(self) -> datetime | None:
        times = [t for t in (c.next_at for c in self.clocks) if t is not None]
        return min(times) if times else None

    @property
    def overdue(self) -> bool:
        return any(c.overdue for c in self.clocks)


def new_clock(
    name: str,
    policy_key: str,
    start: datetime,
    policy: Policy,
    calendar: WorkingCalendar,
    timezone: str,
    *,
    warns: bool = True,
    cycle: int = 0,
) -> Clock:
    spec = (
        policy.escalation_after
        if policy_key == "escalation.ombudsman"
        else policy.clock(policy_key)
    )
    due = calendar.deadline(start, spec, timezone)
    warn = warning_at(start, due, policy.warning_fraction) if warns else None
    grace = policy.handover_margin if policy_key == "escalation.ombudsman" else timedelta(0)
    return Clock(name, start, due, warn, RUNNING, policy_key, cycle=cycle, grace=grace)


def start_clocks(
    tracking_id: str,
    institution_id: str,
    timezone: str,
    classification: str,
    received_at: datetime,
    routed_at: datetime,
    policy: Policy,
    calendar: WorkingCalendar,
    *,
    in_verification: bool = False,
) -> CaseClocks:
    """The clocks a routed report starts with: first response and resolution from routing
    (verification instead of resolution while it waits in the national verification queue),
    the Ombudsman take-over from receipt."""
    handling = HANDLING_CLASS_FOR.get(classification, "complaint")
    specs = [
        (FIRST_RESPONSE, "first_response", routed_at, True),
        (VERIFICATION, "verification", routed_at, True)
        if in_verification
        else (RESOLUTION, f"resolution.{handling}", routed_at, True),
        (OMBUDSMAN, "escalation.ombudsman", received_at, False),
    ]
    clocks = tuple(
        new_clock(name, key, start, policy, calendar, timezone, warns=warns)
        for name, key, start, warns in specs
    )
    state = "in_verification" if in_verification else "assigned"
    return CaseClocks(tracking_id, institution_id, timezone, clocks, state, False, handling)


def due_transitions(
    case: CaseClocks,
    now: datetime,
    ladder: tuple[str, ...],
    ladder_interval: timedelta | None = None,
) -> tuple[CaseClocks, list[Transition]]:
    """Advance every clock whose time has come; return the new state and what happened.

    A clock passed both its warning and its deadline since the last sweep gets both, in
    order. A breach goes to the first rung of the escalation ladder; with a
    ``ladder_interval`` each further interval the clock stays breached goes one rung up.
    """
    transitions: list[Transition] = []
    updated: list[Clock] = []
    for clock in case.clocks:
        current = clock
        if current.paused or current.stopped_at is not None:
            updated.append(current)
            continue
        if current.state == RUNNING and current.warn_at is not None and current.warn_at <= now:
            transitions.append(
                Transition(
                    "warning",
                    current.name,
                    current.due_at,
                    cycle=current.cycle,
                    point=current.warn_at,
                )
            )
            current = replace(current, state=WARNED)
        if current.state in (RUNNING, WARNED) and current.acted_at <= now:
            if current.name == OMBUDSMAN:
                transitions.append(
                    Transition(
                        "escalation",
                        current.name,
                        current.due_at,
                        "ombudsman",
                        point=current.due_at,
                    )
                )
                current = replace(current, state=BREACHED)
            elif current.name == AUTO_CLOSE:
                transitions.append(
                    Transition(
                        "auto_close_due",
                        current.name,
                        current.due_at,
                        cycle=current.cycle,
                        point=current.due_at,
                    )
                )
                current = replace(current, state=MET, stopped_at=current.due_at)
            else:
                current = replace(current, state=BREACHED, rungs=0)
                current = _climb(current, now, ladder, ladder_interval, transitions)
        elif current.state == BREACHED and current.next_rung_at is not None:
            current = _climb(current, now, ladder, ladder_interval, transitions)
        updated.append(current)
    return replace(case, clocks=tuple(updated)), transitions


def _climb(
    clock: Clock,
    now: datetime,
    ladder: tuple[str, ...],
    interval: timedelta | None,
    out: list[Transition],
) -> Clock:
    """Emit every ladder rung whose time has come (the first at the deadline)."""
    rungs = clock.rungs
    levels = ladder or ("",)
    while rungs < len(levels):
        at = clock.due_at + (interval or timedelta(0)) * rungs
        if at > now or (rungs > 0 and interval is None):
            break
        out.append(
            Transition("breach", clock.name, clock.due_at, levels[rungs], clock.cycle, rungs, at)
        )
        rungs += 1
    more = interval is not None and rungs < len(levels)
    next_rung = clock.due_at + interval * rungs if more and interval is not None else None
    return replace(clock, rungs=rungs, next_rung_at=next_rung)

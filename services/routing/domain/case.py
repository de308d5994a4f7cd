"""The case state machine: which role may do which action in which state, and what follows.

Pure: a :class:`CaseStatus` and a :class:`Command` give an :class:`Outcome` (or a domain
error). Institution checks that need the directory live in the use case layer.

``privacy_raised`` is not a transition: the reporter's privacy applies in every state (a
closed or archived report included) and leaves the state alone. Privacy is raised, never
lowered: a late event with a lower level than the case has keeps the higher one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from services.common.errors import (
    FailedPrecondition,
    PermissionDenied,
    ValidationError,
    Violation,
    require,
)
from services.common.status import (
    HANDLING_CLASSES,
    MAX_REOPENS,
    REASON_MAX,
    TEXT_MAX,
    CaseState,
    Colour,
    colour_of,
)

MAX_EVIDENCE = 20
MAX_EVIDENCE_REF = 500
VERIFICATION_QUEUE = "verification-queue"


class Role(StrEnum):
    OFFICER = "officer"
    INSTITUTION_ADMIN = "institution_admin"
    NATIONAL_ADMIN = "national_admin"
    REPORTER = "reporter"
    SYSTEM = "system"


ADMINS = frozenset({Role.NATIONAL_ADMIN})
INSTITUTION = frozenset({Role.OFFICER, Role.INSTITUTION_ADMIN, Role.NATIONAL_ADMIN})
REPORTER = frozenset({Role.REPORTER})
SYSTEM = frozenset({Role.SYSTEM})

S = CaseState
OPEN_AT_INSTITUTION = frozenset({S.ASSIGNED, S.IN_PROGRESS, S.AWAITING_REPORTER})
QUEUED = frozenset({S.IN_VERIFICATION, S.DEFERRED})
EVERY_STATE = frozenset(S)

# public -> confidential -> anonymous (the values of ReporterAction.privacy); "" unknown.
PRIVACY_RANK = {"public": 0, "confidential": 1, "anonymous": 2}
RAISED_PRIVACIES = ("confidential", "anonymous")


@dataclass(frozen=True)
class Transition:
    roles: frozenset[Role]
    sources: frozenset[CaseState]
    target: CaseState | None  # None: the state stays
    needs_reason: bool = False
    needs_text: bool = False
    needs_institution: bool = False


TRANSITIONS: dict[str, Transition] = {
    # admins: the national verification queue
    "verified": Transition(ADMINS, QUEUED, S.ASSIGNED, needs_institution=True),
    "deferred": Transition(ADMINS, frozenset({S.IN_VERIFICATION}), S.DEFERRED, needs_reason=True),
    "not_authority": Transition(ADMINS, QUEUED, S.ARCHIVED, needs_reason=True),
    "archived": Transition(ADMINS, QUEUED, S.ARCHIVED, needs_reason=True),
    # institutions
    "accepted": Transition(INSTITUTION, frozenset({S.ASSIGNED}), S.IN_PROGRESS),
    "forwarded": Transition(
        INSTITUTION, frozenset({S.ASSIGNED, S.IN_PROGRESS}), S.ASSIGNED, needs_institution=True
    ),
    "declined": Transition(
        INSTITUTION, frozenset({S.ASSIGNED, S.IN_PROGRESS}), S.IN_VERIFICATION, needs_reason=True
    ),
    "responded": Transition(
        INSTITUTION, frozenset({S.ASSIGNED, S.IN_PROGRESS}), S.IN_PROGRESS, needs_text=True
    ),
    "info_requested": Transition(
        INSTITUTION, frozenset({S.IN_PROGRESS}), S.AWAITING_REPORTER, needs_text=True
    ),
    "handling_class_set": Transition(INSTITUTION, OPEN_AT_INSTITUTION, None),
    "followed_up": Transition(
        INSTITUTION, frozenset({S.IN_PROGRESS, S.AWAITING_REPORTER}), None, needs_text=True
    ),
    "resolved": Transition(INSTITUTION, frozenset({S.IN_PROGRESS}), S.RESOLVED, needs_text=True),
    # the reporter, through intake
    "info_provided": Transition(REPORTER, frozenset({S.AWAITING_REPORTER}), S.IN_PROGRESS),
    "confirmed": Transition(REPORTER, frozenset({S.RESOLVED}), S.CLOSED),
    "rejected": Transition(REPORTER, frozenset({S.RESOLVED}), S.IN_PROGRESS),
    "privacy_raised": Transition(REPORTER, EVERY_STATE, None),  # not a transition
    # the system (sla's auto-close clock)
    "auto_closed": Transition(SYSTEM, frozenset({S.RESOLVED}), S.CLOSED),
}


@dataclass(frozen=True)
class CaseStatus:
    """What the state machine needs to know about a case."""

    state: CaseState
    institution_id: str
    responded: bool = False
    reopen_count: int = 0
    handling_class: str = ""
    privacy: str = ""  # "public", "confidential", "anonymous"; "" unknown

    @property
    def colour(self) -> Colour:
        return colour_of(self.state, self.responded)


@dataclass(frozen=True)
class Command:
    action: str
    role: Role
    actor_id: str = ""
    institution_id: str = ""  # the target of verified / forwarded
    text: str = ""
    reason: str = ""
    handling_class: str = ""
    evidence: tuple[str, ...] = field(default_factory=tuple)
    rating: int = 0  # the reporter's satisfaction with "confirmed" (1..5; 0: none)
    privacy: str = ""  # the new privacy of "privacy_raised": "confidential" or "anonymous"


@dataclass(frozen=True)
class Outcome:
    command: Command
    before: CaseStatus
    after: CaseStatus


def _validate(command: Command, rule: Transition) -> None:
    violations: list[Violation] = []
    text, reason = command.text.strip(), command.reason.strip()
    if rule.needs_text and not text:
        violations.append(Violation("text", "must not be empty"))
    if len(command.text) > TEXT_MAX:
        violations.append(Violation("text", f"must be at most {TEXT_MAX} characters"))
    if rule.needs_reason and not reason:
        violations.append(Violation("reason", "must not be empty"))
    if len(command.reason) > REASON_MAX:
        violations.append(Violation("reason", f"must be at most {REASON_MAX} characters"))
    if rule.needs_institution and not command.institution_id.strip():
        violations.append(Violation("institution_id", "must not be empty"))
    if command.action == "handling_class_set" and command.handling_class not in HANDLING_CLASSES:
        violations.append(
            Violation("handling_class", f"must be one of {', '.join(HANDLING_CLASSES)}")
        )
    if command.action == "privacy_raised" and command.privacy not in RAISED_PRIVACIES:
        violations.append(Violation("privacy", f"must be one of {', '.join(RAISED_PRIVACIES)}"))
    if len(command.evidence) > MAX_EVIDENCE:
        violations.append(Violation("evidence", f"must list at most {MAX_EVIDENCE} references"))
    if any(not e.strip() or len(e) > MAX_EVIDENCE_REF for e in command.evidence):
        violations.append(
            Violation("evidence", f"each reference must be 1..{MAX_EVIDENCE_REF} characters")
        )
    require(violations)


def apply(case: CaseStatus, command: Command) -> Outcome:
    """The outcome of ``command`` on ``case``; raises when the role, state or input forbid it."""
    rule = TRANSITIONS.get(command.action)
    if rule is None:
        raise ValidationError([Violation("action", f"unknown action {command.action!r}")])
    if command.role not in rule.roles:
        raise PermissionDenied(f"role {command.role} may not perform {command.action}")
    if case.state not in rule.sources:
        raise FailedPrecondition(
            f"action {command.action} is not allowed in state {case.state.value}"
        )
    if command.action == "rejected" and case.reopen_count >= MAX_REOPENS:
        raise FailedPrecondition(
            f"action rejected is not allowed in state {case.state.value}: "
            f"reopened {case.reopen_count} times already (limit {MAX_REOPENS})"
        )
    _validate(command, rule)
    after = replace(case, state=rule.target or case.state)
    if command.action in ("verified", "forwarded"):
        after = replace(after, institution_id=command.institution_id.strip(), responded=False)
    elif command.action == "declined":
        after = replace(after, institution_id=VERIFICATION_QUEUE, responded=False)
    elif command.action == "responded":
        after = replace(after, responded=True)
    elif command.action == "handling_class_set":
        after = replace(after, handling_class=command.handling_class)
    elif command.action == "rejected":
        after = replace(after, reopen_count=case.reopen_count + 1)
    elif command.action == "privacy_raised":
        after = replace(after, privacy=raised_privacy(case.privacy, command.privacy))
    return Outcome(command, case, after)


def raised_privacy(current: str, wanted: str) -> str:
    """The higher of the two: privacy is raised, never lowered (an unknown level ranks
    lowest, so it never replaces a known one)."""
    return wanted if PRIVACY_RANK.get(wanted, -1) > PRIVACY_RANK.get(current, -1) else current


def allowed_actions(case: CaseStatus, role: Role) -> list[str]:
    """Actions ``role`` may take on ``case`` now (what an officer's screen offers)."""
    return [
        action
        for action, rule in TRANSITIONS.items()
        if role in rule.roles
        and case.state in rule.sources
        and not (action == "rejected" and case.reopen_count >= MAX_REOPENS)
    ]


def initial_state(institution_id: str) -> CaseState:
    return S.IN_VERIFICATION if institution_id == VERIFICATION_QUEUE else S.ASSIGNED

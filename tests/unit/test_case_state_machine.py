"""Every action in every state: the legal ones move the case, the others are refused.
Raising the privacy is legal in every state, changes no state and never lowers."""

from __future__ import annotations

import pytest

from services.common.errors import FailedPrecondition, PermissionDenied, ValidationError
from services.common.status import ACTIONS, TEXT_MAX, CaseState, Colour
from services.routing.domain.case import (
    MAX_REOPENS,
    TRANSITIONS,
    VERIFICATION_QUEUE,
    CaseStatus,
    Command,
    Role,
    allowed_actions,
    apply,
    initial_state,
)

S = CaseState
UNIT = "pemda-51.08/dpupr"

# (action, role, from state) -> to state; everything not listed is illegal.
LEGAL: dict[tuple[str, Role], dict[CaseState, CaseState]] = {
    ("verified", Role.NATIONAL_ADMIN): {S.IN_VERIFICATION: S.ASSIGNED, S.DEFERRED: S.ASSIGNED},
    ("deferred", Role.NATIONAL_ADMIN): {S.IN_VERIFICATION: S.DEFERRED},
    ("not_authority", Role.NATIONAL_ADMIN): {
        S.IN_VERIFICATION: S.ARCHIVED,
        S.DEFERRED: S.ARCHIVED,
    },
    ("archived", Role.NATIONAL_ADMIN): {S.IN_VERIFICATION: S.ARCHIVED, S.DEFERRED: S.ARCHIVED},
    ("accepted", Role.OFFICER): {S.ASSIGNED: S.IN_PROGRESS},
    ("forwarded", Role.OFFICER): {S.ASSIGNED: S.ASSIGNED, S.IN_PROGRESS: S.ASSIGNED},
    ("declined", Role.OFFICER): {S.ASSIGNED: S.IN_VERIFICATION, S.IN_PROGRESS: S.IN_VERIFICATION},
    ("responded", Role.OFFICER): {S.ASSIGNED: S.IN_PROGRESS, S.IN_PROGRESS: S.IN_PROGRESS},
    ("info_requested", Role.OFFICER): {S.IN_PROGRESS: S.AWAITING_REPORTER},
    ("handling_class_set", Role.OFFICER): {
        S.ASSIGNED: S.ASSIGNED,
        S.IN_PROGRESS: S.IN_PROGRESS,
        S.AWAITING_REPORTER: S.AWAITING_REPORTER,
    },
    ("followed_up", Role.OFFICER): {
        S.IN_PROGRESS: S.IN_PROGRESS,
        S.AWAITING_REPORTER: S.AWAITING_REPORTER,
    },
    ("resolved", Role.OFFICER): {S.IN_PROGRESS: S.RESOLVED},
    ("info_provided", Role.REPORTER): {S.AWAITING_REPORTER: S.IN_PROGRESS},
    ("confirmed", Role.REPORTER): {S.RESOLVED: S.CLOSED},
    ("rejected", Role.REPORTER): {S.RESOLVED: S.IN_PROGRESS},
    # not a transition: every state, closed and archived included, and the state stays
    ("privacy_raised", Role.REPORTER): {s: s for s in S},
    ("auto_closed", Role.SYSTEM): {S.RESOLVED: S.CLOSED},
}


def command(action: str, role: Role) -> Command:
    """A command with every input its action could need, valid."""
    return Command(
        action=action,
        role=role,
        actor_id="officer-1",
        institution_id="pemda-51.08/disdukcapil",
        text="Sudah kami tindak lanjuti.",
        reason="bukan kewenangan kami",
        handling_class="complaint",
        evidence=("berkas/foto-1.jpg",),
        privacy="confidential",
    )


def case(state: CaseState) -> CaseStatus:
    return CaseStatus(state=state, institution_id=UNIT)


CASES = [
    (action, role, state, LEGAL[(action, role)].get(state))
    for (action, role) in LEGAL
    for state in S
]


def test_table_covers_every_action_of_the_shared_contract() -> None:
    assert {a for a, _ in LEGAL} == set(TRANSITIONS)
    assert set(TRANSITIONS) <= set(ACTIONS)
    # sla's extension and routing's refusal of a reporter action change no state
    assert set(ACTIONS) - set(TRANSITIONS) == {"extended", "reporter_action_refused"}


@pytest.mark.parametrize(("action", "role", "state", "to"), CASES)
def test_every_action_in_every_state(
    action: str, role: Role, state: CaseState, to: CaseState | None
) -> None:
    if to is None:
        with pytest.raises(FailedPrecondition) as info:
            apply(case(state), command(action, role))
        assert action in str(info.value) and state.value in str(info.value)
        assert action not in allowed_actions(case(state), role)
    else:
        outcome = apply(case(state), command(action, role))
        assert (outcome.before.state, outcome.after.state) == (state, to)
        assert action in allowed_actions(case(state), role)


@pytest.mark.parametrize("action", sorted(TRANSITIONS))
@pytest.mark.parametrize("role", list(Role))
def test_roles_that_may_not_act_are_denied(action: str, role: Role) -> None:
    rule = TRANSITIONS[action]
    if role in rule.roles:
        return
    state = next(iter(rule.sources))
    with pytest.raises(PermissionDenied):
        apply(case(state), command(action, role))


def test_institution_admins_and_national_admins_act_for_institutions() -> None:
    for role in (Role.INSTITUTION_ADMIN, Role.NATIONAL_ADMIN):
        assert apply(case(S.ASSIGNED), command("accepted", role)).after.state == S.IN_PROGRESS
    with pytest.raises(PermissionDenied):
        apply(case(S.IN_VERIFICATION), command("verified", Role.INSTITUTION_ADMIN))


def test_forward_and_verify_move_the_case_and_reset_the_response() -> None:
    start = CaseStatus(S.IN_PROGRESS, UNIT, responded=True)
    after = apply(start, command("forwarded", Role.OFFICER)).after
    assert after.institution_id == "pemda-51.08/disdukcapil" and not after.responded
    queued = CaseStatus(S.IN_VERIFICATION, VERIFICATION_QUEUE)
    assert apply(queued, command("verified", Role.NATIONAL_ADMIN)).after.institution_id == (
        "pemda-51.08/disdukcapil"
    )


def test_decline_returns_to_the_verification_queue() -> None:
    after = apply(case(S.ASSIGNED), command("declined", Role.OFFICER)).after
    assert (after.state, after.institution_id) == (S.IN_VERIFICATION, VERIFICATION_QUEUE)


def test_response_turns_the_case_yellow_and_resolution_green() -> None:
    assigned = case(S.ASSIGNED)
    assert assigned.colour == Colour.RED
    responded = apply(assigned, command("responded", Role.OFFICER)).after
    assert responded.responded and responded.colour == Colour.YELLOW
    resolved = apply(responded, command("resolved", Role.OFFICER)).after
    assert resolved.colour == Colour.GREEN


def test_handling_class_is_recorded_and_checked() -> None:
    after = apply(case(S.IN_PROGRESS), command("handling_class_set", Role.OFFICER)).after
    assert after.handling_class == "complaint"
    bad = Command("handling_class_set", Role.OFFICER, handling_class="urgent")
    with pytest.raises(ValidationError) as info:
        apply(case(S.IN_PROGRESS), bad)
    assert info.value.violations[0].field == "handling_class"


def test_reopening_is_bounded() -> None:
    status = case(S.RESOLVED)
    for n in range(1, MAX_REOPENS + 1):
        status = apply(status, command("rejected", Role.REPORTER)).after
        assert status.reopen_count == n and status.state == S.IN_PROGRESS
        status = apply(status, command("resolved", Role.OFFICER)).after
    with pytest.raises(FailedPrecondition, match="rejected"):
        apply(status, command("rejected", Role.REPORTER))
    assert "rejected" not in allowed_actions(status, Role.REPORTER)
    assert "confirmed" in allowed_actions(status, Role.REPORTER)


@pytest.mark.parametrize(
    ("action", "state", "changes", "field"),
    [
        ("responded", S.IN_PROGRESS, {"text": "   "}, "text"),
        ("resolved", S.IN_PROGRESS, {"text": ""}, "text"),
        ("followed_up", S.IN_PROGRESS, {"text": "x" * (TEXT_MAX + 1)}, "text"),
        ("declined", S.ASSIGNED, {"reason": ""}, "reason"),
        ("deferred", S.IN_VERIFICATION, {"reason": " "}, "reason"),
        ("archived", S.IN_VERIFICATION, {"reason": ""}, "reason"),
        ("forwarded", S.ASSIGNED, {"institution_id": ""}, "institution_id"),
        ("verified", S.IN_VERIFICATION, {"institution_id": ""}, "institution_id"),
        ("resolved", S.IN_PROGRESS, {"evidence": ("",)}, "evidence"),
        ("resolved", S.IN_PROGRESS, {"evidence": ("e",) * 21}, "evidence"),
        ("privacy_raised", S.CLOSED, {"privacy": ""}, "privacy"),
        ("privacy_raised", S.ARCHIVED, {"privacy": "public"}, "privacy"),
        ("privacy_raised", S.IN_VERIFICATION, {"privacy": "secret"}, "privacy"),
    ],
)
def test_bad_input_names_the_field(
    action: str, state: CaseState, changes: dict[str, object], field: str
) -> None:
    rule = TRANSITIONS[action]
    role = next(iter(sorted(rule.roles)))
    base = command(action, role)
    bad = Command(**{**base.__dict__, **changes})  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as info:
        apply(case(state), bad)
    assert [v.field for v in info.value.violations] == [field]


PRIVACY_LEVELS = ["public", "confidential", "anonymous"]


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("current", ["", *PRIVACY_LEVELS])
@pytest.mark.parametrize("wanted", ["confidential", "anonymous"])
def test_privacy_is_raised_in_every_state_and_never_lowered(
    state: CaseState, current: str, wanted: str
) -> None:
    start = CaseStatus(state, UNIT, responded=True, reopen_count=1, privacy=current)
    outcome = apply(start, Command("privacy_raised", Role.REPORTER, privacy=wanted))
    rank = {"": -1, **{p: n for n, p in enumerate(PRIVACY_LEVELS)}}
    expected = wanted if rank[wanted] > rank[current] else current
    assert outcome.after == CaseStatus(
        state, UNIT, responded=True, reopen_count=1, privacy=expected
    )


def test_a_late_lower_privacy_never_lowers() -> None:
    status = case(S.CLOSED)
    for wanted in ("anonymous", "confidential"):  # the raises arrive out of order
        status = apply(status, Command("privacy_raised", Role.REPORTER, privacy=wanted)).after
    assert (status.state, status.privacy) == (S.CLOSED, "anonymous")


def test_only_privacy_raised_changes_the_privacy() -> None:
    start = CaseStatus(S.IN_PROGRESS, UNIT, privacy="public")
    command = Command("responded", Role.OFFICER, text="Sudah.", privacy="anonymous")
    assert apply(start, command).after.privacy == "public"


def test_unknown_action_is_invalid() -> None:
    with pytest.raises(ValidationError, match="action"):
        apply(case(S.ASSIGNED), Command("teleported", Role.OFFICER))


def test_initial_state_follows_the_first_routing() -> None:
    assert initial_state(VERIFICATION_QUEUE) == S.IN_VERIFICATION
    assert initial_state(UNIT) == S.ASSIGNED

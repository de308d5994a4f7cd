"""What a reporter may do on their own report, and how their contact is shown back to them.
Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from services.common.errors import FailedPrecondition, Violation
from services.common.status import FINAL_STATES, CaseState
from services.intake.domain import Contact, Privacy

# Text and reason limits are routing's (services/common/status.py); a satisfaction comment
# stays with intake and sla.
COMMENT_MAX = 2_000


class ReporterCommand(StrEnum):
    ADD_INFORMATION = "add_information"
    CONFIRM_RESOLUTION = "confirm_resolution"
    REJECT_RESOLUTION = "reject_resolution"
    UPLOAD_EVIDENCE = "upload_evidence"


# The ReporterAction.action each command publishes (services/common/status.py ACTIONS).
EVENT_ACTION = {
    ReporterCommand.ADD_INFORMATION: "info_provided",
    ReporterCommand.CONFIRM_RESOLUTION: "confirmed",
    ReporterCommand.REJECT_RESOLUTION: "rejected",
}

REQUIRED_STATE = {
    ReporterCommand.ADD_INFORMATION: CaseState.AWAITING_REPORTER,
    ReporterCommand.CONFIRM_RESOLUTION: CaseState.RESOLVED,
    ReporterCommand.REJECT_RESOLUTION: CaseState.RESOLVED,
}

# Evidence may be added until the case is over.
EVIDENCE_CLOSED_STATES = FINAL_STATES  # no evidence once the case is final


@dataclass(frozen=True)
class CaseSnapshot:
    """What the rules need to know of a report."""

    state: str  # "" until routing acted on the case
    case_seq: int  # case actions applied so far
    # case_seq at the reporter's last action, -1 if none or routing refused it (case_view):
    # equal to case_seq, the reporter waits for their action to be handled.
    reporter_seq: int
    rejections: int


def check_allowed(cmd: ReporterCommand, case: CaseSnapshot, max_reopens: int) -> None:
    """Raise FailedPrecondition naming the state and the action when `cmd` is not allowed."""
    if cmd is ReporterCommand.UPLOAD_EVIDENCE:
        if case.state in EVIDENCE_CLOSED_STATES:
            raise FailedPrecondition(
                f"state: {cmd.value} is not allowed in state {case.state} (the report is over)"
            )
        return
    required = REQUIRED_STATE[cmd]
    current = case.state or "received"
    if case.state != required:
        raise FailedPrecondition(
            f"state: {cmd.value} is allowed only in state {required.value}; "
            f"the report is in state {current}"
        )
    if case.reporter_seq == case.case_seq:
        raise FailedPrecondition(
            f"state: {cmd.value} is not allowed now: your previous action on this report is "
            "still being handled"
        )
    if cmd is ReporterCommand.REJECT_RESOLUTION and case.rejections >= max_reopens:
        raise FailedPrecondition(
            f"state: {cmd.value} is not allowed: the report was already reopened "
            f"{case.rejections} times (the limit is {max_reopens}); confirm it, or turn to "
            "the Ombudsman RI"
        )


def allowed_commands(case: CaseSnapshot, max_reopens: int) -> list[str]:
    allowed = []
    for cmd in ReporterCommand:
        try:
            check_allowed(cmd, case, max_reopens)
        except FailedPrecondition:
            continue
        allowed.append(cmd.value)
    return allowed


def text_violations(name: str, value: str, limit: int, required: bool) -> list[Violation]:
    text = value.strip()
    if required and not text:
        return [Violation(name, "must not be empty")]
    if len(text) > limit:
        return [Violation(name, f"must be at most {limit} characters, got {len(text)}")]
    return []


def rating_violations(rating: int) -> list[Violation]:
    if not 1 <= rating <= 5:
        return [Violation("rating", f"must be 1 to 5, got {rating}")]
    return []


def mask_phone(phone: str) -> str:
    """'+6281234567890' -> '+62812****7890': enough to recognise, not enough to call."""
    digits = phone.strip()
    if len(digits) <= 6:
        return "*" * len(digits)
    head = digits[: min(6, len(digits) - 4)]
    return head + "*" * max(4, len(digits) - len(head) - 4) + digits[-4:]


def mask_email(email: str) -> str:
    """'siti.rahma@contoh.id' -> 's***@contoh.id'."""
    local, at, domain = email.strip().partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_name(name: str) -> str:
    """'Siti Rahma' -> 'S*** R***'."""
    return " ".join(f"{part[:1]}***" for part in name.split())


def mask_handle(handle: str) -> str:
    """'twitter:@sitirahma' -> 'twitter:@s***'."""
    platform, colon, account = handle.strip().rpartition(":")
    at = "@" if account.startswith("@") else ""
    account = account.removeprefix("@")
    return f"{platform}{colon}{at}{account[:1]}***"


def masked(contact: Contact | None) -> Contact:
    if contact is None:
        return Contact()
    return Contact(
        name=mask_name(contact.name) if contact.name else "",
        phone=mask_phone(contact.phone) if contact.phone else "",
        email=mask_email(contact.email) if contact.email else "",
        handle=mask_handle(contact.handle) if contact.handle else "",
    )


# Entries written before case actions existed that the public may see.
PUBLIC_PIPELINE_ACTIONS = frozenset({"received", "routed", "escalated"})


def visible_history(report: dict[str, Any], *, public: bool) -> list[dict[str, Any]]:
    """The history a viewer may see, oldest first. The public sees public actions only, and
    the institution's notes only on public reports; the reporter sees everything. Entries
    from case actions carry `public` and `note`; their `detail` is never shown."""
    show_notes = not public or report.get("privacy") == Privacy.PUBLIC.value
    out = []
    for h in sorted(report.get("history", []), key=lambda h: h["at"].timestamp()):
        from_case = "public" in h
        if public and not (h["public"] if from_case else h["action"] in PUBLIC_PIPELINE_ACTIONS):
            continue
        detail = (h.get("note", "") if show_notes else "") if from_case else h["detail"]
        out.append({"at": h["at"], "action": h["action"], "actor": h["actor"], "detail": detail})
    return out

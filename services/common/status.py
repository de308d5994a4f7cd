"""The case states every service agrees on, and the colours LAPOR! shows for them.

routing owns the state machine (services/routing); the others read states from
CaseAction events. Pure: no I/O.
"""

from __future__ import annotations

from enum import StrEnum


class CaseState(StrEnum):
    IN_VERIFICATION = "in_verification"  # national verification queue (admins)
    DEFERRED = "deferred"  # tunda: admins wait for something
    ASSIGNED = "assigned"  # at an institution or unit, not yet accepted
    IN_PROGRESS = "in_progress"  # accepted; being handled
    AWAITING_REPORTER = "awaiting_reporter"  # more information requested from the reporter
    RESOLVED = "resolved"  # follow-up given; the reporter may confirm or reject
    CLOSED = "closed"  # confirmed, or the reporter stayed silent
    ARCHIVED = "archived"  # spam, duplicate, not any institution's authority


#: States no action leads out of (routing's state machine): a closed or archived case.
FINAL_STATES = (CaseState.CLOSED, CaseState.ARCHIVED)

# Limits of what a reporter may do on a report. Routing's state machine enforces them and
# intake checks them before it accepts a reporter's action, so an action intake accepted is
# not refused by routing for its size or the number of reopens.
MAX_REOPENS = 2  # rejections of the follow-up (each reopens the report)
TEXT_MAX = 4000  # a text added to a report (officers' texts too)
REASON_MAX = 1000  # a reason (a reporter's rejection, an officer's decline or forward)
# Officers' and admins' actions on one report: every action adds to the report's history
# in routing, intake and sla (texts of up to TEXT_MAX), and a report must stay far below
# MongoDB's 16 MiB per document (300 x ~20 KB ~ 6 MB). The reporter's and the system's
# actions are not counted, so a report can always be confirmed, rejected or auto-closed.
MAX_CASE_ACTIONS = 300


class Colour(StrEnum):
    RED = "red"  # not followed up
    YELLOW = "yellow"  # in process
    GREEN = "green"  # followed up


ACTIONS = (
    # admins (verification queue)
    "verified", "deferred", "not_authority", "archived",
    # institutions
    "accepted", "forwarded", "declined", "responded", "info_requested", "handling_class_set",
    "followed_up", "resolved", "extended",
    # reporter (through intake) and system
    "info_provided", "confirmed", "rejected", "auto_closed", "privacy_raised",
    # routing could not apply a reporter's action intake had accepted (state changed meanwhile)
    "reporter_action_refused",
)  # fmt: skip

HANDLING_CLASSES = ("information_request", "complaint", "dispute", "field_inspection")


def colour_of(state: str, responded: bool = False) -> Colour:
    """Red until the institution follows up (a first response turns it yellow), yellow while
    handled, green once followed up."""
    if state in (CaseState.RESOLVED, CaseState.CLOSED):
        return Colour.GREEN
    if state in (CaseState.IN_PROGRESS, CaseState.AWAITING_REPORTER) or responded:
        return Colour.YELLOW
    return Colour.RED

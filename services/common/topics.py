"""Topic names: stable, documented in README.md's topic table."""

COMPLAINTS_RECEIVED = "lapor.complaints.received"
COMPLAINTS_ROUTED = "lapor.complaints.routed"
SLA_EVENTS = "lapor.sla.events"
NOTIFICATIONS = "lapor.notifications"
ESCALATIONS = "lapor.escalations"
CASE_ACTIONS = "lapor.cases.actions"
REPORTER_ACTIONS = "lapor.reporter.actions"

ALL_TOPICS = (
    COMPLAINTS_RECEIVED,
    COMPLAINTS_ROUTED,
    SLA_EVENTS,
    NOTIFICATIONS,
    ESCALATIONS,
    CASE_ACTIONS,
    REPORTER_ACTIONS,
)

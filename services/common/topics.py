"""Topic names: stable, documented in README.md's topic table."""

COMPLAINTS_RECEIVED = "lapor.complaints.received"
COMPLAINTS_ROUTED = "lapor.complaints.routed"
SLA_EVENTS = "lapor.sla.events"
NOTIFICATIONS = "lapor.notifications"
ESCALATIONS = "lapor.escalations"

ALL_TOPICS = (COMPLAINTS_RECEIVED, COMPLAINTS_ROUTED, SLA_EVENTS, NOTIFICATIONS, ESCALATIONS)

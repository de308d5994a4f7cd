"""Routing's own metrics (labels: bounded, never personal)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ROUTING_DECISIONS = Counter(
    "lapor_routing_decisions_total",
    "Routing decisions, by outcome (routed to an institution, or to the verification queue)",
    ["outcome"],
)
CASE_ACTIONS = Counter(
    "lapor_case_actions_total", "Actions applied to cases, by action", ["action"]
)
RULES_RELOADS = Counter(
    "lapor_routing_rules_reloads_total",
    "Attempts to reload the rules file, by outcome",
    ["outcome"],
)
RULES_COUNT = Gauge("lapor_routing_rules", "Routing rules in force")
CASES_TRIMMED = Counter(
    "lapor_routing_cases_trimmed_total",
    "Closed cases whose published events and text fingerprint were dropped "
    "(LAPOR_ROUTING_CLOSED_TRIM_DAYS after the last event written in a final state)",
)

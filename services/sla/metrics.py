"""SLA metrics, defined once. Labels are bounded: clock names, kinds, colours, handling
classes, top-level institutions (report cards only)."""

from prometheus_client import Counter, Gauge, Histogram

WARNINGS = Counter("lapor_sla_warnings_total", "Deadline warnings emitted, by clock", ["clock"])
BREACHES = Counter(
    "lapor_sla_breaches_total", "Deadline breaches emitted (every ladder rung), by clock", ["clock"]
)
ESCALATIONS = Counter(
    "lapor_sla_escalations_total", "Reports escalated to the Ombudsman", ["clock"]
)
AUTO_CLOSE_DUE = Counter(
    "lapor_sla_auto_close_due_total",
    "Reports whose reporter stayed silent after the follow-up",
    ["clock"],
)
DETECTION_LAG = Histogram(
    "lapor_sla_detection_lag_seconds",
    "Time from a warning point, deadline or ladder rung passing to the sweep acting on it",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
SWEEP_DURATION = Histogram(
    "lapor_sla_sweep_duration_seconds",
    "Duration of one sweep",
    buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
)
SWEEP_REPORTS = Counter("lapor_sla_swept_reports_total", "Reports moved by the sweep")
SWEEP_SET_ASIDE = Counter(
    "lapor_sla_sweep_set_aside_total",
    "Due reports the sweep could not process and set aside (sweep_error) for a later retry, "
    "each attempt",
)
OPEN_REPORTS = Gauge(
    "lapor_sla_open_reports",
    "Open reports, by status colour and handling class",
    ["colour", "handling_class"],
)
OVERDUE_REPORTS = Gauge("lapor_sla_overdue_reports", "Open reports with a breached running clock")
CONSUMER_LAG = Gauge(
    "lapor_sla_consumer_lag_messages",
    "Messages not yet consumed by this service's group (highwater - committed), by topic",
    ["topic"],
)
EXTENSIONS = Counter("lapor_sla_extensions_total", "Resolution deadlines extended")
CARD = Gauge(
    "lapor_sla_report_card",
    "Report card of a top-level institution for the current month, by figure",
    ["institution", "figure"],
)
RED_MARK = Gauge(
    "lapor_sla_red_mark",
    "1 when the institution has overdue first responses this month (raport merah)",
    ["institution"],
)
SWEEP_LAST_SUCCESS = Gauge(
    "lapor_sla_sweep_last_success_timestamp_seconds",
    "When this sla process last finished a deadline sweep round without an error (Unix time; "
    "0 until the first): a stalled sweep, or one that fails every round, stops moving it",
)
ESCALATIONS_HELD = Counter(
    "lapor_sla_escalations_held_total",
    "Ombudsman escalations the sweep held because sla had not yet heard every action "
    "published up to the deadline (services/sla/watermark.py), each time held",
)
ACTIONS_HEARD_UNTIL = Gauge(
    "lapor_sla_actions_heard_until_timestamp_seconds",
    "Every case action published before this time has been applied to the clocks (Unix time; "
    "0 until the first snapshot): Ombudsman deadlines after it are held",
)
BROKER_REACHABLE_SINCE = Gauge(
    "lapor_sla_broker_reachable_since_timestamp_seconds",
    "Since when every probe of the broker by this sla process succeeded (Unix time; 0 while "
    "it is unreachable)",
)

from prometheus_client import Counter

SUBMITTED = Counter(
    "lapor_intake_complaints_submitted_total",
    "Complaints accepted by intake, by channel and privacy (duplicate=true: an idempotent retry)",
    ["channel", "privacy", "duplicate"],
)

from prometheus_client import Counter, Histogram

WARNINGS = Counter("lapor_sla_warnings_total", "Deadline warnings emitted, by clock", ["clock"])
BREACHES = Counter("lapor_sla_breaches_total", "Deadline breaches emitted, by clock", ["clock"])
ESCALATIONS = Counter(
    "lapor_sla_escalations_total", "Reports escalated to the Ombudsman", ["clock"]
)
DETECTION_LAG = Histogram(
    "lapor_sla_detection_lag_seconds",
    "Time from a deadline (or warning point) passing to the sweep acting on it",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
SWEEP_DURATION = Histogram(
    "lapor_sla_sweep_duration_seconds",
    "Duration of one sweep",
    buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
)

from prometheus_client import Counter

SUBMITTED = Counter(
    "lapor_intake_complaints_submitted_total",
    "Complaints accepted by intake, by channel and privacy (duplicate=true: an idempotent retry)",
    ["channel", "privacy", "duplicate"],
)

EVIDENCE_ORPHANS_DELETED = Counter(
    "lapor_intake_evidence_orphans_deleted_total",
    "Evidence files deleted by the orphan sweep: stored in GridFS but never listed on their "
    "report (an intake process died between the two, or the listing failed)",
)

ACCESS_CODE_SEND_FAILURES = Counter(
    "lapor_intake_access_code_send_failures_total",
    "One-time access codes the webhook sender could not hand to the gateway, by reason: "
    "http_3xx/http_4xx/http_5xx (its reply), timeout, connection, tls (never retried: the "
    "reporter may ask for a new code)",
    ["reason"],
)

IDENTITIES_ERASED = Counter(
    "lapor_intake_identities_erased_total",
    "Reporters' sealed identities erased, by reason: final (the report had been closed or "
    "archived for LAPOR_INTAKE_IDENTITY_RETENTION_DAYS), age (received "
    "LAPOR_INTAKE_IDENTITY_MAX_DAYS ago, whatever its state)",
    ["reason"],
)
ERASURE_REASONS = ("final", "age")
for _reason in ERASURE_REASONS:  # both series exist from the start
    IDENTITIES_ERASED.labels(reason=_reason)

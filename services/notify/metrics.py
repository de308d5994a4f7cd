from prometheus_client import Counter

SENT = Counter(
    "lapor_notify_notifications_sent_total",
    "Reporter notifications sent, by template and provider",
    ["template", "provider"],
)

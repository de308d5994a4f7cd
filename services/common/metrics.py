"""Metrics every service shares, defined once. Service-specific ones live in each service.

Labels carry only bounded, non-personal values (method, code, topic, outcome).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

GRPC_REQUESTS = Counter(
    "lapor_grpc_requests_total",
    "gRPC requests handled, by method and status code",
    ["method", "code"],
)
GRPC_LATENCY = Histogram(
    "lapor_grpc_request_duration_seconds",
    "gRPC request latency, by method",
    ["method"],
    buckets=LATENCY_BUCKETS,
)
EVENTS_CONSUMED = Counter(
    "lapor_events_consumed_total",
    "Kafka events consumed, by topic and outcome (applied, duplicate, dead_lettered, ignored, "
    "deferred: kept until what it applies to is stored, stale: older than the consumer's "
    "de-duplication records are kept)",
    ["topic", "outcome"],
)
EVENT_HANDLING = Histogram(
    "lapor_event_handling_duration_seconds",
    "Time to durably handle a batch of consumed events, by topic",
    ["topic"],
    buckets=LATENCY_BUCKETS,
)
EVENT_RETRIES = Counter(
    "lapor_event_handling_retries_total", "Failed attempts to handle a consumed batch", ["topic"]
)
OUTBOX_PUBLISHED = Counter(
    "lapor_outbox_published_total", "Events published from the outbox, by topic", ["topic"]
)
OUTBOX_RELAY_ERRORS = Counter("lapor_outbox_relay_errors_total", "Outbox relay failures")
OUTBOX_OLDEST = Gauge(
    "lapor_outbox_oldest_pending_seconds",
    "Age of the oldest event waiting in an outbox queue at the relay's last round (0: none, "
    "or this process's relay stands by: another holds the relay's lease)",
    ["queue"],
)
OUTBOX_LAST_ROUND = Gauge(
    "lapor_outbox_relay_last_round_timestamp_seconds",
    "When the outbox relay last finished a round (Unix time)",
)
LEASE_HELD = Gauge(
    "lapor_lease_held",
    "1 while this process holds the lease (does the job: outbox-relay, sla-sweep), 0 while "
    "it stands by",
    ["lease"],
)
DEPENDENCY_UP = Gauge(
    "lapor_dependency_up", "1 when the dependency answered the last health probe", ["dependency"]
)
SERVING = Gauge("lapor_serving", "1 when the service reports SERVING on grpc.health.v1")
BACKFILL_PENDING = Gauge(
    "lapor_backfill_pending",
    "1 while an upgrade's data backfill has not yet succeeded in this process (retried), 0 once "
    "it has",
    ["backfill"],
)


def start_metrics_server(port: int, host: str = "0.0.0.0") -> int:
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_port)

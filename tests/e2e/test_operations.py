"""What SREs rely on: health, metrics, and settings that fail fast."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.stack.supervisor import SERVICES, Stack, health_status
from tests.support import eventually, intake_stub, submit_request


@pytest.mark.parametrize("name", SERVICES)
def test_health_reports_serving(stack: Stack, name: str) -> None:
    address = stack.services[name].grpc_address
    assert health_status(address) == "SERVING"


@pytest.mark.parametrize("name", SERVICES)
def test_metrics_answer_in_prometheus_text_format(stack: Stack, name: str) -> None:
    channel, stub = intake_stub(stack.services["intake"].grpc_address)
    with channel:
        stub.SubmitComplaint(submit_request(), timeout=5)

    def scrape() -> dict[str, object]:
        url = f"http://127.0.0.1:{stack.services[name].ports['metrics']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
        expected = {"lapor_events_consumed", "lapor_outbox_published", "lapor_serving"}
        return families if expected <= set(families) else {}

    families = eventually(scrape, what=f"{name} metrics")
    serving = families["lapor_serving"]
    assert [s.value for s in serving.samples] == [1.0]  # type: ignore[attr-defined]
    if name == "intake":
        assert "lapor_grpc_request_duration_seconds" in families
        assert "lapor_intake_complaints_submitted" in families


@pytest.mark.parametrize(
    ("missing", "env"),
    [
        (
            "LAPOR_MONGODB_URI",
            {
                "LAPOR_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
                "LAPOR_GRPC_PORT": "0",
                "LAPOR_METRICS_PORT": "0",
            },
        ),
        (
            "LAPOR_KAFKA_BOOTSTRAP_SERVERS",
            {
                "LAPOR_MONGODB_URI": "mongodb://127.0.0.1:1",
                "LAPOR_GRPC_PORT": "0",
                "LAPOR_METRICS_PORT": "0",
            },
        ),
        (
            "LAPOR_GRPC_PORT",
            {
                "LAPOR_MONGODB_URI": "mongodb://x:1",
                "LAPOR_KAFKA_BOOTSTRAP_SERVERS": "a:1",
                "LAPOR_GRPC_PORT": "http",
                "LAPOR_METRICS_PORT": "0",
            },
        ),
    ],
)
@pytest.mark.parametrize("service", ["routing", "notify"])
def test_a_missing_or_malformed_setting_stops_the_service_naming_it(
    service: str, missing: str, env: dict[str, str]
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LAPOR_")}
    result = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert missing in result.stderr
    assert "Traceback" not in result.stderr


def test_liveness_does_not_follow_the_dependencies(fresh_stack) -> None:  # type: ignore[no-untyped-def]
    import signal as _signal

    stack = fresh_stack()
    assert stack.mongo is not None
    stack.mongo.popen.send_signal(_signal.SIGTERM)
    stack.mongo.popen.wait(30)
    address = stack.services["routing"].grpc_address
    eventually(
        lambda: health_status(address) == "NOT_SERVING",
        timeout=20,
        what="readiness follows MongoDB",
    )
    assert health_status(address, "liveness") == "SERVING"

"""Two SLA monitor replicas at once, one SIGKILLed mid-sweep: every warning, breach and
escalation still reaches the topics, and a consumer de-duplicating by event id sees each
exactly once (none missing, none with two different contents)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from lapor.v1 import events_pb2

from services.common.topics import ESCALATIONS, SLA_EVENTS
from services.stack.devsecrets import service_env
from services.stack.supervisor import Stack, free_port, health_status
from tests.e2e.conftest import SECRETS
from tests.support import eventually, intake_stub, read_topic, submit_request

POLICY = """
version = 1
[warning]
at_fraction = 0.5
[clocks.verification]
duration = "20s"
days = "working"
[clocks.first_response]
duration = "8s"
days = "calendar"
[clocks.resolution.information_request]
duration = "12s"
days = "working"
[clocks.resolution.complaint]
duration = "12s"
days = "working"
[clocks.resolution.dispute]
duration = "20s"
days = "working"
[clocks.resolution.field_inspection]
duration = "30s"
days = "calendar"
[clocks.auto_close]
duration = "30s"
days = "working"
[escalation]
ombudsman_after = "20s"
days = "calendar"
ladder = ["unit", "institution_admins", "national_admins"]
ladder_interval = "2s"
[extension]
max_count = 1
max_fraction = 0.5
"""
REPORTS = 40
PER_REPORT = [
    "first_response:warning",
    "first_response:breach",
    "first_response:breach:institution_admins",
    "first_response:breach:national_admins",
    "resolution:warning",
    "resolution:breach",
    "resolution:breach:institution_admins",
    "resolution:breach:national_admins",
    "ombudsman:escalation",
]


def transition_ids(stack: Stack) -> list[tuple[str, bytes]]:
    """(event id, content without meta) of every warning, breach and escalation on the topics."""
    out = []
    for _key, value in read_topic(stack.bootstrap_servers, SLA_EVENTS, timeout=10):
        event = events_pb2.SlaEvent.FromString(value or b"")
        if event.WhichOneof("kind") in ("warning", "breached"):
            event_id = event.meta.event_id
            event.ClearField("meta")
            out.append((event_id, event.SerializeToString(deterministic=True)))
    for _key, value in read_topic(stack.bootstrap_servers, ESCALATIONS, timeout=10):
        esc = events_pb2.OmbudsmanEscalation.FromString(value or b"")
        out.append((esc.meta.event_id, esc.title.encode()))
    return out


def test_two_replicas_and_a_sigkill_lose_and_double_nothing(
    fresh_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    extra = {
        "LAPOR_SLA_POLICY_FILE": str(policy),
        "LAPOR_SLA_SWEEP_INTERVAL_SECONDS": "0.2",
        "LAPOR_SLA_ESCALATION_SETTLE_SECONDS": "1",
        "LAPOR_SLA_WATERMARK_INTERVAL_SECONDS": "0.5",
    }
    stack = fresh_stack(env={"sla": extra})
    port, metrics = free_port(), free_port()
    env = stack.service_env("sla", port, metrics, {**service_env("sla", SECRETS), **extra})
    with (tmp_path / "sla-2.log").open("ab") as log:
        second = subprocess.Popen(
            [sys.executable, "-m", "services.sla"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        eventually(lambda: health_status(f"127.0.0.1:{port}") == "SERVING", timeout=60)
        channel, intake = intake_stub(stack.services["intake"].grpc_address)
        with channel:
            tids = [
                intake.SubmitComplaint(submit_request(), timeout=10).tracking_id
                for _ in range(REPORTS)
            ]
        expected = {f"{t}:{suffix}" for t in tids for suffix in PER_REPORT}

        # SIGKILL the first replica as soon as the first warnings are going out.
        eventually(
            lambda: any(":warning" in i for i, _ in transition_ids(stack)),
            timeout=60,
            what="first warnings",
        )
        assert stack.stop_service("sla", signal.SIGKILL) == -signal.SIGKILL

        def all_there() -> bool:
            return {i for i, _ in transition_ids(stack) if i in expected} == expected

        eventually(all_there, timeout=120, interval=1.0, what="every transition")
        # Stop the surviving replica (its relays flush or stop) before reading: the killed
        # one publishes nothing more either, so the read below sees every copy there will
        # ever be, late ones included.
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
        seen = transition_ids(stack)
    finally:
        if second.poll() is None:
            second.send_signal(signal.SIGTERM)
            second.wait(20)
    ids = {i for i, _ in seen if i.split(":", 1)[0] in set(tids)}
    assert ids == expected  # none missing, none unexpected
    contents: dict[str, set[bytes]] = {}
    for event_id, content in seen:
        contents.setdefault(event_id, set()).add(content)
    assert all(len(c) == 1 for c in contents.values())  # a duplicate is the same event
    raw = sum(1 for i, _ in seen if i in expected)
    print(f"{len(expected)} transitions, {raw - len(expected)} redelivered copies")

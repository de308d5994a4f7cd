"""The SLA monitor end to end with a policy of seconds instead of days: a report nobody
answers is warned, breached up the ladder and escalated to the Ombudsman once, as an outside
consumer (kcat) sees it; officers extend a deadline over gRPC with their token."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from lapor.v1 import common_pb2, events_pb2, intake_pb2, sla_pb2, sla_pb2_grpc
from pymongo import MongoClient

from services.common.auth import issue_token
from services.common.topics import CASE_ACTIONS, ESCALATIONS, SLA_EVENTS
from services.stack.supervisor import Stack
from tests.e2e.conftest import SECRETS
from tests.kafka_offsets import Position, produce, wait_handled
from tests.support import eventually, intake_stub, read_topic, submit_request

T = TypeVar("T")

POLICY = """
version = 1
[warning]
at_fraction = 0.5
[clocks.verification]
duration = "20s"
days = "working"
[clocks.first_response]
duration = "6s"
days = "calendar"
[clocks.resolution.information_request]
duration = "60s"
days = "working"
[clocks.resolution.complaint]
duration = "60s"
days = "working"
[clocks.resolution.dispute]
duration = "80s"
days = "working"
[clocks.resolution.field_inspection]
duration = "90s"
days = "calendar"
[clocks.auto_close]
duration = "30s"
days = "working"
[escalation]
ombudsman_after = "14s"
days = "calendar"
ladder = ["unit", "institution_admins", "national_admins"]
ladder_interval = "2s"
[extension]
max_count = 1
max_fraction = 0.5
"""


def when(value: T, ok: bool) -> T | None:
    return value if ok else None


def token(institution: str, role: str = "officer") -> list[tuple[str, str]]:
    jwt = issue_token(SECRETS["jwt_key"], SECRETS["jwt_issuer"], "officer-7", institution, role)
    return [("authorization", f"Bearer {jwt}")]


ADMIN = token("kantor-staf-presiden", "national_admin")


@pytest.fixture
def seconds_stack(fresh_stack: Callable[..., Stack], tmp_path: Path) -> Stack:
    return start(fresh_stack, tmp_path, POLICY)


@pytest.fixture
def roomy_stack(fresh_stack: Callable[..., Stack], tmp_path: Path) -> Stack:
    """Deadlines far enough that a slow machine meets them before they pass."""
    policy = POLICY.replace('"6s"', '"120s"').replace('"14s"', '"600s"')
    return start(fresh_stack, tmp_path, policy)


def start(fresh_stack: Callable[..., Stack], tmp_path: Path, policy: str) -> Stack:
    path = tmp_path / "policy.toml"
    path.write_text(policy)
    return fresh_stack(
        env={
            "sla": {
                "LAPOR_SLA_POLICY_FILE": str(path),
                "LAPOR_SLA_SWEEP_INTERVAL_SECONDS": "0.2",
                "LAPOR_SLA_GAUGE_INTERVAL_SECONDS": "1",
                "LAPOR_SLA_LAG_INTERVAL_SECONDS": "1",
                # the escalation gate: seconds-scale policy, seconds-scale settle
                "LAPOR_SLA_ESCALATION_SETTLE_SECONDS": "1",
                "LAPOR_SLA_WATERMARK_INTERVAL_SECONDS": "0.5",
            }
        }
    )


def sla_events(stack: Stack, tracking_id: str) -> list[events_pb2.SlaEvent]:
    out = []
    for key, value in read_topic(stack.bootstrap_servers, SLA_EVENTS):
        if key == tracking_id.encode() and value is not None:
            out.append(events_pb2.SlaEvent.FromString(value))
    return out


def kinds(events: list[events_pb2.SlaEvent]) -> set[str]:
    out = set()
    for e in events:
        kind = e.WhichOneof("kind") or ""
        level = e.breached.escalation_level if kind == "breached" else ""
        out.add(f"{kind}:{level}" if level else kind)
    return out


def kcat_escalations(stack: Stack, tracking_id: str) -> list[events_pb2.OmbudsmanEscalation]:
    """What an outside consumer (kcat, librdkafka's CLI) reads from lapor.escalations."""
    listing = subprocess.run(
        ["kcat", "-C", "-b", stack.bootstrap_servers, "-t", ESCALATIONS, "-e", "-q"]
        + ["-f", "%k %p %o\n"],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.decode()
    found = []
    for line in listing.splitlines():
        key, partition, offset = line.split()
        if key != tracking_id:
            continue
        payload = subprocess.run(
            ["kcat", "-C", "-b", stack.bootstrap_servers, "-t", ESCALATIONS, "-p", partition]
            + ["-o", offset, "-c", "1", "-e", "-q", "-f", "%s"],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
        found.append(events_pb2.OmbudsmanEscalation.FromString(payload))
    return found


def status(stub: sla_pb2_grpc.SlaServiceStub, tracking_id: str) -> sla_pb2.ReportStatus:
    return stub.GetReportStatus(  # type: ignore[no-any-return]
        sla_pb2.GetReportStatusRequest(tracking_id=tracking_id), metadata=ADMIN, timeout=5
    )


def watched(stub: sla_pb2_grpc.SlaServiceStub, tracking_id: str) -> sla_pb2.ReportStatus | None:
    try:
        return status(stub, tracking_id)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
            return None
        raise


def test_unanswered_report_is_warned_breached_and_escalated_once(seconds_stack: Stack) -> None:
    stack = seconds_stack
    ichannel, intake = intake_stub(stack.services["intake"].grpc_address)
    with ichannel, grpc.insecure_channel(stack.services["sla"].grpc_address) as channel:
        sla = sla_pb2_grpc.SlaServiceStub(channel)
        reply = intake.SubmitComplaint(
            submit_request(
                privacy=common_pb2.PRIVACY_ANONYMOUS,
                title="Pungli di kantor kelurahan",
                body="Diminta bayar untuk surat pengantar",
            ),
            timeout=10,
        )
        tid = reply.tracking_id
        first = eventually(lambda: watched(sla, tid), timeout=60, what="clocks started")
        assert first.colour == common_pb2.STATUS_COLOUR_RED  # not followed up
        assert not first.overdue and not first.escalated
        seen = eventually(
            lambda: when(k := kinds(sla_events(stack, tid)), k >= {"warning"}),
            timeout=60,
            what="warning",
        )
        overdue = eventually(lambda: when(s := status(sla, tid), s.overdue), what="overdue")
        assert overdue.colour == common_pb2.STATUS_COLOUR_RED
        ladder = {"breached:unit", "breached:institution_admins", "breached:national_admins"}
        seen = eventually(
            lambda: when(k := kinds(sla_events(stack, tid)), k >= ladder), what="ladder"
        )
        assert {"deadlines_set", "warning"} <= seen
        final = eventually(lambda: when(s := status(sla, tid), s.escalated), what="escalated")
        assert final.overdue and final.colour == common_pb2.STATUS_COLOUR_RED
        escalations = eventually(lambda: kcat_escalations(stack, tid), what="kcat escalation")
    assert len(escalations) == 1
    esc = escalations[0]
    assert esc.meta.event_id == f"{tid}:ombudsman:escalation"
    assert esc.title == "Pungli di kantor kelurahan"
    assert esc.body == "Diminta bayar untuk surat pengantar"
    assert esc.institution.id.startswith("pemda-51.08")
    assert esc.institution.name and (esc.unit.name or not esc.unit.id)
    assert esc.topic and esc.classification != common_pb2.CLASSIFICATION_UNSPECIFIED
    assert esc.region_code == "51.08" and esc.reason
    assert "received" in [t.action for t in esc.timeline] or "routed" in [
        t.action for t in esc.timeline
    ]
    timeline = [t.action for t in esc.timeline]
    assert timeline.count("deadline_breach") >= 3 and "deadline_escalation" in timeline
    assert {d.clock for d in esc.deadlines} >= {"first_response", "ombudsman"}
    # the intake's tracking view shows it escalated
    channel2, tracking = intake_stub(stack.services["intake"].grpc_address)
    with channel2:
        view = eventually(
            lambda: (
                (
                    c := tracking.GetComplaint(
                        intake_pb2.GetComplaintRequest(tracking_id=tid), timeout=5
                    )
                ).escalated
                and c
            ),
            what="tracking view escalated",
        )
    assert view.status == common_pb2.COMPLAINT_STATUS_ESCALATED
    metrics = eventually(
        lambda: when(m := scrape(stack), "lapor_sla_consumer_lag_messages{" in m),
        what="metrics",
    )
    for series in (
        'lapor_sla_escalations_total{clock="ombudsman"}',
        'lapor_sla_breaches_total{clock="first_response"}',
        'lapor_sla_detection_lag_seconds_count{kind="warning"}',
        'lapor_sla_consumer_lag_messages{topic="lapor.cases.actions"}',
        "lapor_sla_sweep_duration_seconds_count",
        'lapor_sla_open_reports{colour="red",handling_class="complaint"}',
    ):
        assert series in metrics, series

    # Once: a later sweep's effect as the barrier. A second report submitted now is warned
    # by a sweep that runs well after the escalation (many sweeps of 0.2 s later); the
    # sweeps' events are published in the order they were written, so an escalation of the
    # first report written again by any sweep before that one would be on the topic by then.
    channel3, intake3 = intake_stub(stack.services["intake"].grpc_address)
    with channel3:
        later = intake3.SubmitComplaint(
            submit_request(privacy=common_pb2.PRIVACY_ANONYMOUS), timeout=10
        ).tracking_id
    eventually(
        lambda: "warning" in kinds(sla_events(stack, later)),
        timeout=60,
        what="the later report's warning",
    )
    assert [e.meta.event_id for e in kcat_escalations(stack, tid)] == [esc.meta.event_id]
    # sla counted one escalation per escalated report: the first one once, and the later
    # one if it has escalated meanwhile (its Ombudsman deadline is 14 s away)
    with grpc.insecure_channel(stack.services["sla"].grpc_address) as channel4:
        sla4 = sla_pb2_grpc.SlaServiceStub(channel4)

        def counted_once() -> tuple[float, int] | None:
            value = metric_value(scrape(stack), 'lapor_sla_escalations_total{clock="ombudsman"}')
            escalated = sum(status(sla4, t).escalated for t in (tid, later))
            return when((value, escalated), value == escalated)

        value, escalated = eventually(counted_once, what="one escalation counted per report")
    assert escalated >= 1 and value == float(escalated)


def metric_value(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def scrape(stack: Stack) -> str:
    port = stack.services["sla"].ports["metrics"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return str(reply.read().decode())


def test_extend_deadline_needs_the_holding_institution_and_stays_in_the_cap(
    seconds_stack: Stack,
) -> None:
    stack = seconds_stack
    ichannel, intake = intake_stub(stack.services["intake"].grpc_address)
    with ichannel, grpc.insecure_channel(stack.services["sla"].grpc_address) as channel:
        sla = sla_pb2_grpc.SlaServiceStub(channel)
        tid = intake.SubmitComplaint(submit_request(), timeout=10).tracking_id
        before = eventually(lambda: watched(sla, tid), timeout=60, what="clocks started")
        holder = before.institution.id
        due = {d.clock: d.due_at.ToDatetime() for d in before.deadlines}["resolution"]

        def extend(seconds: int, reason: str = "survey lapangan", **kw: object) -> object:
            return sla.ExtendDeadline(
                sla_pb2.ExtendDeadlineRequest(
                    tracking_id=tid, extension=Duration(seconds=seconds), reason=reason
                ),
                timeout=5,
                **kw,  # type: ignore[arg-type]
            )

        with pytest.raises(grpc.RpcError) as err:
            extend(5)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as err:
            extend(5, metadata=token("pemda-52"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
        assert err.value.details() == f"tracking_id: no report {tid!r}"  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as err:
            extend(31, metadata=token(holder))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert "extension" in err.value.details() and "cap" in err.value.details()  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as err:
            extend(5, reason="", metadata=token(holder))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert "reason" in err.value.details()  # type: ignore[attr-defined]
        after = extend(10, metadata=token(holder))
        new_due = {d.clock: d.due_at.ToDatetime() for d in after.deadlines}["resolution"]  # type: ignore[attr-defined]
        assert new_due - due == timedelta(seconds=10)
        with pytest.raises(grpc.RpcError) as err:
            extend(1, metadata=token(holder))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]

    def reporter_sees_it() -> bool:
        for e in sla_events(stack, tid):
            if e.WhichOneof("kind") == "deadlines_set":
                dues = {d.clock: d.due_at.ToDatetime() for d in e.deadlines_set.deadlines}
                if dues.get("resolution") == new_due:
                    return True
        return False

    eventually(reporter_sees_it, what="new deadline published")


def publish_action(stack: Stack, tracking_id: str, action: str, **fields: object) -> list[Position]:
    """Act as routing (the owner of the case state machine) on lapor.cases.actions: the
    event delivered twice (a redelivery); where both copies landed."""
    event = events_pb2.CaseAction(action=action, **fields)  # type: ignore[arg-type]
    event.meta.event_id = f"{tracking_id}:test:{action}"
    event.meta.tracking_id = tracking_id
    event.meta.producer = "routing"
    event.meta.occurred_at.GetCurrentTime()
    value = event.SerializeToString()
    return produce(stack.bootstrap_servers, CASE_ACTIONS, tracking_id, [value, value])


ACTIONS = ["responded", "info_requested", "info_provided", "resolved"]


def test_case_actions_drive_the_clocks(roomy_stack: Stack) -> None:
    stack = roomy_stack
    ichannel, intake = intake_stub(stack.services["intake"].grpc_address)
    copies: list[Position] = []
    with ichannel, grpc.insecure_channel(stack.services["sla"].grpc_address) as channel:
        sla = sla_pb2_grpc.SlaServiceStub(channel)
        tid = intake.SubmitComplaint(submit_request(), timeout=10).tracking_id
        eventually(lambda: watched(sla, tid), timeout=60, what="clocks started")
        copies += publish_action(stack, tid, "responded", to_state="in_progress")
        s = eventually(
            lambda: when(s := status(sla, tid), s.colour == common_pb2.STATUS_COLOUR_YELLOW),
            what="yellow after the first response",
        )
        assert {d.clock: d.state for d in s.deadlines}["first_response"] == "met"
        copies += publish_action(stack, tid, "info_requested", to_state="awaiting_reporter")
        eventually(lambda: status(sla, tid).paused, what="paused")
        due_paused = {d.clock: d.due_at.ToDatetime() for d in status(sla, tid).deadlines}
        copies += publish_action(stack, tid, "info_provided", to_state="in_progress")
        resumed = eventually(lambda: when(s := status(sla, tid), not s.paused), what="resumed")
        due = {d.clock: d.due_at.ToDatetime() for d in resumed.deadlines}
        assert due["resolution"] > due_paused["resolution"]  # the paused time is given back
        copies += publish_action(stack, tid, "resolved", to_state="resolved")
        done = eventually(
            lambda: when(s := status(sla, tid), s.colour == common_pb2.STATUS_COLOUR_GREEN),
            what="green after the resolution",
        )
        states = {d.clock: d.state for d in done.deadlines}
        assert states["resolution"] == "met" and states["auto_close"] == "running"
        assert states["ombudsman"] == "met"
    assert not done.escalated
    # Delivered twice, applied once: once sla's consumer has committed past every copy (it
    # commits after the work), its timeline of the report holds each action once, and no
    # copy was refused by the clocks (what a second application of an action would leave).
    wait_handled(stack.bootstrap_servers, "lapor-sla.lapor.cases.actions", CASE_ACTIONS, copies)
    client: MongoClient = MongoClient(stack.mongodb_uri, tz_aware=True)  # type: ignore[type-arg]
    try:
        doc = client["lapor_sla"]["clocks"].find_one({"_id": tid})
    finally:
        client.close()
    assert doc is not None
    acted = [
        e["action"]
        for e in doc["timeline"]
        if e["action"] in ACTIONS or e["action"].endswith("_refused")
    ]
    assert acted == ACTIONS

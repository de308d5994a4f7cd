"""`make run`'s launcher: starts everything, prints where it listens, stops cleanly on
Ctrl-C leaving no process behind, and a second run finds the first run's complaints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from services.stack.supervisor import SERVICES, free_port
from tests.support import dev_api_key, eventually, intake_stub, submit_request


def _launch(data: Path, ports: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAPOR_")}
    env.update(ports)
    env["LAPOR_DATA_DIR"] = str(data)
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.stack"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl-C stops everything" in line:
            return proc, lines
    proc.kill()
    raise AssertionError("launcher did not come up:\n" + "".join(lines))


def _stop(proc: subprocess.Popen[str]) -> list[int]:
    children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    assert len(children) >= 6  # broker, database, four services
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0
    return children


def test_run_prints_addresses_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    ports = {"LAPOR_EMBEDDED_MONGODB_PORT": str(free_port())}
    for name in SERVICES:
        ports[f"LAPOR_{name.upper()}_PORT"] = str(free_port())
        ports[f"LAPOR_{name.upper()}_METRICS_PORT"] = str(free_port())
    intake = f"127.0.0.1:{ports['LAPOR_INTAKE_PORT']}"

    proc, lines = _launch(tmp_path, ports)
    output = "".join(lines)
    assert "Every service reports SERVING" in output
    for name in SERVICES:
        assert f"127.0.0.1:{ports[f'LAPOR_{name.upper()}_PORT']}" in output
    key = dev_api_key(json.loads((tmp_path / "secrets.json").read_text()))
    channel, stub = intake_stub(intake, key)
    with channel:
        tracking_id = stub.SubmitComplaint(submit_request(), timeout=10).tracking_id
    children = _stop(proc)
    time.sleep(0.5)
    assert [
        pid
        for pid in children
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
    ] == []

    proc, _ = _launch(tmp_path, ports)
    try:
        from lapor.v1 import intake_pb2

        channel, stub = intake_stub(intake, key)
        with channel:

            def routed() -> intake_pb2.Complaint | None:
                c = stub.GetComplaint(
                    intake_pb2.GetComplaintRequest(tracking_id=tracking_id), timeout=5
                )
                return c if c.institution.id and c.notifications else None

            # Stopped right after the submit, the first run may not have routed it: the
            # second run's broker is new, and the outbox replay carries the event over.
            found = eventually(routed, what="the first run's complaint, routed and notified")
        assert found.tracking_id == tracking_id
        assert found.institution.id == "pemda-51.08/dpupr"
    finally:
        _stop(proc)

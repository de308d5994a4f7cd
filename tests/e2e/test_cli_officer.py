"""`lapor officer` run as a process against the running services, finding routing and the
development secret in a data folder like the one `make run` writes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from services.stack.supervisor import Stack, free_port
from tests.e2e.conftest import SECRETS
from tests.e2e.officer_support import Officers, admin, submit, token
from tests.support import marker

ROOT = Path(__file__).resolve().parents[2]
DPUPR = "pemda-51.08/dpupr"  # where potholes in Buleleng go
KTP = {
    "title": "E-KTP belum jadi",
    "body": "Sudah 3 bulan rekam e-KTP di Disdukcapil tapi blm jd juga, katanya blanko habis.",
    "region_code": "51.08",
}


class Cli:
    def __init__(self, data: Path) -> None:
        self.data = data

    def __call__(
        self,
        *argv: str,
        env: dict[str, str] | None = None,
        stdin: str = "",
        cwd: Path = ROOT,
    ) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("LAPOR_")}
        result = subprocess.run(
            [sys.executable, "-m", "services.cli", *argv],
            cwd=cwd,
            env={**clean, "LAPOR_DATA_DIR": str(self.data), **(env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def ok(self, *argv: str, **kwargs: object) -> str:
        result = self(*argv, **kwargs)  # type: ignore[arg-type]
        assert result.returncode == 0, result.stderr
        return result.stdout

    def refused(self, *argv: str, **kwargs: object) -> str:
        """A refused call: non-zero exit, nothing on stdout, one `error:` line on stderr."""
        result = self(*argv, **kwargs)  # type: ignore[arg-type]
        assert result.returncode != 0, result.stdout
        assert result.stdout == ""
        assert result.stderr.startswith("error: "), result.stderr
        return result.stderr

    def listed(self, *argv: str) -> dict[str, list[str]]:
        """Every row of a listing, through all its pages, by tracking id."""
        rows: dict[str, list[str]] = {}
        page: list[str] = []
        while True:
            result = self(*argv, "--page-size", "100", *page)
            assert result.returncode == 0, result.stderr
            lines = result.stdout.splitlines()
            if lines != ["no reports"]:
                header = re.split(r"\s{2,}", lines[0])
                assert header == [
                    "TRACKING ID", "STATE", "COLOUR", "OVERDUE", "TOPIC", "NEXT DEADLINE", "TITLE",
                ]  # fmt: skip
                for line in lines[1:]:
                    cells = re.split(r"\s{2,}", line)
                    rows[cells[0]] = cells
            more = re.search(r"--page-token (\S+)", result.stderr)
            if not more:
                return rows
            page = ["--page-token", more.group(1)]


@pytest.fixture(scope="module")
def cli(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    data = tmp_path_factory.mktemp("cli-data")
    (data / "stack.json").write_text(
        json.dumps({f"{n}_grpc": s.grpc_address for n, s in stack.services.items()})
    )
    (data / "secrets.json").write_text(json.dumps(SECRETS))
    return Cli(data)


def _field(output: str, label: str) -> str:
    match = re.search(rf"^{label}\s*: (.*)$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def test_officer_lists_accepts_and_responds_through_the_cli(stack: Stack, cli: Cli) -> None:
    title = f"Jalan berlubang {marker()}"
    tracking_id = cli.ok(
        "submit", "--title", title, "--body", "Jalan Cipto rusak parah, banyak lubang.",
        "--region", "51.08",
    ).strip()  # fmt: skip
    with Officers(stack) as api:
        assert api.routed(tracking_id).institution.id == DPUPR
        me = ("--dev-as", DPUPR)

        row = cli.listed("officer", "list", "--status", "assigned", *me)[tracking_id]
        assert row[1:5] == ["assigned", "red", "no", "jalan"]
        assert row[6] == title
        assert tracking_id not in cli.listed("officer", "list", "--status", "in_progress", *me)

        shown = cli.ok("officer", *me, "show", tracking_id)  # options before the subcommand
        assert _field(shown, "State").startswith("assigned (red)")
        assert _field(shown, "Institution").endswith(f"({DPUPR})")
        assert _field(shown, "You may").startswith("accept, forward")
        assert re.search(r"^  \S+ \S+ UTC  routed ", shown, re.MULTILINE), shown

        accepted = cli.ok("officer", "accept", tracking_id, *me, "--expected-version", "1")
        assert _field(accepted, "State").startswith("in_progress (yellow)")
        answer = "Laporan diterima, tim akan survei minggu ini."
        responded = cli.ok("officer", "respond", tracking_id, "--text", "-", *me, stdin=answer)
        assert "RESPONDED" in _field(responded, "State")
        assert f"      text: {answer}" in responded.splitlines()

        report = api.get(tracking_id, admin())
        assert report.state == "in_progress" and report.responded
        assert [h.action for h in report.history] == ["routed", "accepted", "responded"]
        assert report.history[-1].text == answer
        assert {h.actor_id for h in report.history[1:]} == {"dev-cli"}

        row = cli.listed("officer", "list", "--status", "in_progress", *me)[tracking_id]
        assert row[1:3] == ["in_progress", "yellow"]

        again = cli.refused("officer", "accept", tracking_id, *me)
        assert again == (
            "error: FAILED_PRECONDITION: action accepted is not allowed in state in_progress\n"
        )
        stale = cli.refused("officer", "respond", tracking_id, "--text", "x", *me, "--expected-version", "1")  # fmt: skip
        assert stale.startswith("error: FAILED_PRECONDITION: ") and "expected_version" in stale
        assert api.get(tracking_id, admin()).version == report.version


def test_foreign_officer_neither_sees_nor_acts(stack: Stack, cli: Cli) -> None:
    tracking_id = submit(stack, title=f"Jalan berlubang {marker()}", region_code="51.08")
    with Officers(stack) as api:
        assert api.routed(tracking_id).institution.id == DPUPR
        foreign = {"LAPOR_OFFICER_TOKEN": token("pemda-51.71/dpupr")}
        assert cli.refused("officer", "show", tracking_id, env=foreign).startswith(
            "error: NOT_FOUND: "
        )
        assert cli.refused("officer", "accept", tracking_id, env=foreign).startswith(
            "error: NOT_FOUND: "
        )
        assert tracking_id not in cli.listed("officer", "list", "--token", token("pemda-51.71"))
        unknown = cli.refused("officer", "show", tracking_id, "--token", token("pemda-99.99"))
        assert unknown.startswith("error: PERMISSION_DENIED: ")
        officer_queue = cli.refused("officer", "queue", "--dev-as", DPUPR)
        assert officer_queue.startswith("error: PERMISSION_DENIED: ")
        assert api.get(tracking_id, admin()).version == 1  # nothing changed

        assert tracking_id in cli.listed("officer", "list", "--dev-as", DPUPR)  # the holder does


def test_forward_and_the_rest_of_the_officer_actions(stack: Stack, cli: Cli) -> None:
    tracking_id = submit(stack, title=f"Jalan berlubang {marker()}", region_code="51.08")
    dishub = "pemda-51.08/dishub"
    with Officers(stack) as api:
        api.routed(tracking_id)
        no_reason = cli.refused(
            "officer", "forward", tracking_id, "--to", dishub, "--dev-as", DPUPR
        )
        assert no_reason.startswith("error: INVALID_ARGUMENT: ") and "reason" in no_reason
        forwarded = cli.ok(
            "officer", "forward", tracking_id, "--to", dishub, "--reason", "depan terminal",
            "--dev-as", DPUPR,
        )  # fmt: skip
        assert _field(forwarded, "Institution").endswith(f"({dishub})")
        me = ("--dev-as", dishub)
        cli.ok("officer", "accept", tracking_id, *me)
        classed = cli.ok("officer", "set-class", tracking_id, "--class", "field_inspection", *me)
        assert " class field_inspection " in _field(classed, "Region")
        cli.ok("officer", "follow-up", tracking_id, "--text", "Survei dijadwalkan.", *me)
        resolved = cli.ok(
            "officer", "resolve", tracking_id, "--text", "Sudah ditambal.",
            "--evidence", "foto/before.jpg", "--evidence", "foto/after.jpg", *me,
        )  # fmt: skip
        assert _field(resolved, "State").startswith("resolved (green)")
        assert "      evidence: foto/before.jpg, foto/after.jpg" in resolved.splitlines()
        report = api.get(tracking_id, admin())
    assert [h.action for h in report.history] == [
        "routed", "forwarded", "accepted", "handling_class_set", "followed_up", "resolved",
    ]  # fmt: skip
    assert report.history[1].reason == "depan terminal"
    assert report.history[-1].evidence == ["foto/before.jpg", "foto/after.jpg"]


def test_admins_work_the_verification_queue(stack: Stack, cli: Cli) -> None:
    declined_id = submit(stack, **{**KTP, "title": f"E-KTP belum jadi {marker()}"})
    spam_id = submit(stack, **{**KTP, "title": f"E-KTP belum jadi {marker()}"})
    unit = ("--dev-as", "pemda-51.08/disdukcapil")
    national = ("--dev-as", "national", "--role", "national_admin")
    with Officers(stack) as api:
        for tid in (declined_id, spam_id):
            api.routed(tid)
            declined = cli.ok("officer", "decline", tid, "--reason", "bukan kewenangan", *unit)
            assert _field(declined, "State").startswith("in_verification")
        queued = cli.listed("officer", "queue", "--status", "in_verification", *national)
        assert queued[declined_id][1] == "in_verification"
        assert spam_id in queued

        deferred = cli.ok("officer", "defer", declined_id, "--reason", "tunggu data", *national)
        assert _field(deferred, "State").startswith("deferred")
        assert declined_id in cli.listed("officer", "queue", "--status", "deferred", *national)
        verified = cli.ok(
            "officer", "verify", declined_id, "--to", "pemda-51/disdukcapil", *national
        )
        assert _field(verified, "State").startswith("assigned (red)")
        assert _field(verified, "Institution").endswith("(pemda-51/disdukcapil)")
        assert _field(verified, "Routing").startswith("rule:")  # admins see the explanation
        province = ("--dev-as", "pemda-51/disdukcapil")
        cli.ok("officer", "accept", declined_id, *province)
        asked = cli.ok("officer", "request-info", declined_id, "--text", "Nomor NIK?", *province)
        assert _field(asked, "State").startswith("awaiting_reporter")

        not_ours = cli.ok(
            "officer", "not-authority", spam_id, "--reason", "urusan swasta", *national
        )
        assert _field(not_ours, "State").startswith("archived")
        archived = cli.refused("officer", "archive", spam_id, "--reason", "spam", *national)
        assert archived.startswith("error: FAILED_PRECONDITION: ")
        assert [h.action for h in api.get(spam_id, admin()).history] == [
            "routed", "declined", "not_authority",
        ]  # fmt: skip


def test_credentials_and_addresses_are_checked_before_and_by_routing(
    stack: Stack, cli: Cli, tmp_path: Path
) -> None:
    tracking_id = "PD9Z-5S2Z-JY0"
    missing = cli.refused("officer", "show", tracking_id)
    assert "LAPOR_OFFICER_TOKEN" in missing and "--dev-as" in missing
    both = cli.refused("officer", "show", tracking_id, "--token", "t", "--dev-as", DPUPR)
    assert "not both" in both
    role = cli.refused("officer", "show", tracking_id, "--token", "t", "--role", "officer")
    assert "--role only applies with --dev-as" in role
    garbage = cli.refused("officer", "show", tracking_id, "--token", "not-a-jwt")
    assert garbage.startswith("error: UNAUTHENTICATED: authorization")
    expired = token(DPUPR, ttl=-3600)
    assert cli.refused("officer", "list", env={"LAPOR_OFFICER_TOKEN": expired}).startswith(
        "error: UNAUTHENTICATED: authorization: token expired"
    )
    elsewhere = Cli(tmp_path)  # no data folder of `make run`
    no_stack = elsewhere.refused("officer", "list", "--dev-as", DPUPR)
    assert "secrets.json" in no_stack and "--token" in no_stack
    address = f"127.0.0.1:{free_port()}"
    down = cli.refused("officer", "list", "--dev-as", DPUPR, "--routing", address)
    assert down.startswith("error: UNAVAILABLE: ") and address in down
    via_env = cli.refused("officer", "list", "--dev-as", DPUPR, env={"LAPOR_ROUTING_ADDR": address})
    assert via_env.startswith("error: UNAVAILABLE: ")
    assert cli.refused("officer", "show", "NOPE-NOPE-NOP", "--dev-as", DPUPR).startswith(
        "error: NOT_FOUND: "
    )

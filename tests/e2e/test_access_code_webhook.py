"""One-time access codes through the production sender, on a stack of its own with
LAPOR_ACCESS_CODE_SENDER=webhook pointing at an HTTP server of the test (`Gateway`, a
stand-in for an SMS gateway): RequestAccessCode → the gateway receives the code →
VerifyAccessCode → GetMyReport; a gateway failure is counted on intake's /metrics; intake's
log never holds the contact, the code, the message, the token or the URL's query; and a
plain-http URL to another host stops intake at start, naming the setting."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator

import grpc
import pytest
from lapor.v1 import reporter_pb2, reporter_pb2_grpc

from services.stack.supervisor import Stack
from tests.e2e.test_reporter_access import confidential, digits, request_code, verify
from tests.integration.test_access_code_webhook import QUERY_KEY, TOKEN, Gateway
from tests.support import eventually, intake_stub, marker

URL = "LAPOR_ACCESS_CODE_WEBHOOK_URL"


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    g = Gateway()
    yield g
    g.close()


def failures_on_metrics(stack: Stack, reason: str) -> float:
    url = f"http://127.0.0.1:{stack.services['intake'].ports['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    series = f'lapor_intake_access_code_send_failures_total{{reason="{reason}"}} '
    values = [float(line[len(series) :]) for line in text.splitlines() if line.startswith(series)]
    return values[0] if values else 0.0


def test_codes_reach_the_reporter_through_the_webhook(
    fresh_stack: Callable[..., Stack], gateway: Gateway
) -> None:
    webhook_env = {
        "LAPOR_ACCESS_CODE_SENDER": "webhook",
        URL: gateway.url,
        "LAPOR_ACCESS_CODE_WEBHOOK_TOKEN": TOKEN,
        "LAPOR_ACCESS_CODE_WEBHOOK_TIMEOUT_SECONDS": "5",
        "LAPOR_ACCESS_CODE_TTL_SECONDS": "300",
    }
    stack = fresh_stack(env={"intake": webhook_env})
    address = stack.services["intake"].grpc_address
    channel, intake = intake_stub(address)
    with channel, grpc.insecure_channel(address) as reporter_channel:
        reporter = reporter_pb2_grpc.ReporterServiceStub(reporter_channel)
        n = digits()
        phone, email = f"+62813{n}", f"warga.{n}@contoh.id"
        title = f"Pungli di kelurahan {marker()}"
        tid, _ = confidential(intake, f"0813{n}", email, title=title)
        reply = request_code(reporter, tid, f"0813 {n[:4]} {n[4:]}")
        assert reply.code_valid_seconds == 300
        sms = eventually(lambda: list(gateway.posted), what="the code at the gateway")[0]
        assert sms.headers["Authorization"] == f"Bearer {TOKEN}"
        body = sms.json()
        assert (body["channel"], body["to"]) == ("sms", phone)
        assert tid in body["text"] and "Berlaku 5 menit" in body["text"]
        assert tid not in body["reference"]
        issued = verify(reporter, tid, phone, sms.code())
        mine = reporter.GetMyReport(
            reporter_pb2.GetMyReportRequest(tracking_id=tid, access_token=issued.access_token),
            timeout=5,
        )
        assert mine.view.title == title

        gateway.status = 503  # the gateway refuses: counted, the reply unchanged
        before = failures_on_metrics(stack, "http_5xx")
        other, _ = confidential(intake, f"0813{digits()}", f"lain.{n}@contoh.id")
        assert request_code(reporter, other, f"LAIN.{n}@contoh.id").message == reply.message
        eventually(
            lambda: failures_on_metrics(stack, "http_5xx") == before + 1,
            what="the refused code on /metrics",
        )
        assert len(gateway.posted) == 2 and gateway.posted[1].json()["channel"] == "email"

    def failure_logged() -> str | None:
        text = stack.read_log("intake")
        return text if "could not hand" in text else None

    logged = eventually(failure_logged, what="the failure in intake's log")
    assert "handed to the webhook" in logged and '"status": 503' in logged
    private = [n, email, f"lain.{n}", TOKEN, QUERY_KEY, "Kode akses", "Jangan berikan"]
    private += [p.code() for p in gateway.posted]
    assert [needle for needle in private if needle in logged] == []

    # a gateway reached over plain http elsewhere than this host: intake refuses to start
    stack.stop_service("intake")
    bad = {**stack.services["intake"].env, URL: f"http://sms.contoh.go.id/kirim?key={QUERY_KEY}"}
    proc = stack.start_service("intake", bad)
    assert proc.popen.wait(timeout=60) == 2
    refused = stack.read_log("intake")
    assert f"configuration error: {URL}: must use https://" in refused
    assert QUERY_KEY not in refused

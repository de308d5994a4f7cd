"""The webhook sender against a real HTTP server on 127.0.0.1 (a stand-in for an SMS gateway
or e-mail relay, `Gateway`, also used by the e2e test): the POST's body and headers, one
POST per code whatever the reply, failures counted by reason and logged without the
contact, the code, the text or the URL's query, and never raised into RequestAccessCode."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.common.settings import Secret
from services.intake.access_codes import (
    AccessCodeMessage,
    ContactPoint,
    WebhookSettings,
    code_text,
)
from services.intake.access_store import code_sender
from services.intake.access_webhook import WebhookCodeSender
from tests.unit.test_reporter_access import EMAIL, PHONE, World, logged_fields

TOKEN = "token-rahasia-1708"
QUERY_KEY = "kunci-rahasia-di-query"
CODE_IN_TEXT = re.compile(r": (\d{6})\. ")


@dataclass
class Posted:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    def code(self) -> str:
        found = CODE_IN_TEXT.search(self.json()["text"])
        assert found, self.json()["text"]
        return found.group(1)


class Gateway:
    """An HTTP server in a thread that records every request and answers `status` (with
    `location` for a redirect), after `hold` is set when `hold` is given."""

    def __init__(self) -> None:
        self.posted: list[Posted] = []
        self.status = 202
        self.location = ""
        self.hold: threading.Event | None = None
        self.released = threading.Event()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                gateway.posted.append(Posted(self.path, dict(self.headers.items()), body))
                if gateway.hold is not None:
                    gateway.hold.wait(30)
                try:
                    self.send_response(gateway.status)
                    if gateway.location:
                        self.send_header("Location", gateway.location)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"status": "queued"}')
                except OSError:  # the sender gave up waiting (the timeout test)
                    pass

            def do_GET(self) -> None:  # noqa: N802 - a followed redirect would land here
                gateway.posted.append(Posted(self.path, dict(self.headers.items()), b""))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/kirim?key={QUERY_KEY}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    g = Gateway()
    yield g
    g.close()


def failures(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "lapor_intake_access_code_send_failures_total", {"reason": reason}
    )
    return value or 0.0


def sender(url: str, timeout: float = 5.0, ttl: int = 600) -> WebhookCodeSender:
    return WebhookCodeSender(WebhookSettings(url, Secret(TOKEN), timeout), timedelta(seconds=ttl))


def message(point: ContactPoint, code: str = "493817") -> AccessCodeMessage:
    return AccessCodeMessage(
        "PD9Z-5S2Z-JY0", point, "f" * 40, code, datetime.fromisoformat("2026-03-01T10:00+00:00")
    )


def assert_nothing_private(logged: str, *private: str) -> None:
    for needle in (PHONE, PHONE[3:], EMAIL.lower(), TOKEN, QUERY_KEY, "Kode akses", *private):
        assert needle not in logged, needle


async def test_a_code_is_posted_once_with_the_bearer_token(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    ttl = 300
    webhook = code_sender(
        "webhook",
        None,  # type: ignore[arg-type] - only the collection sender uses the database
        webhook=WebhookSettings(gateway.url, Secret(TOKEN), 5.0),
        code_ttl=timedelta(seconds=ttl),
    )
    assert isinstance(webhook, WebhookCodeSender)
    before = {r: failures(r) for r in ("http_5xx", "timeout", "connection")}
    with caplog.at_level(logging.DEBUG):
        await webhook.send(message(ContactPoint("phone", PHONE)))
        await webhook.send(message(ContactPoint("email", EMAIL.lower()), "000123"))
    sms, mail = gateway.posted
    assert sms.path == f"/kirim?key={QUERY_KEY}"
    assert sms.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sms.headers["Content-Type"] == "application/json; charset=utf-8"
    body = sms.json()
    assert set(body) == {"channel", "to", "text", "reference"}
    assert (body["channel"], body["to"]) == ("sms", PHONE)
    assert body["text"] == code_text("PD9Z-5S2Z-JY0", "493817", timedelta(seconds=ttl))
    assert "Berlaku 5 menit" in body["text"]
    assert re.fullmatch(r"[0-9a-f]{32}", body["reference"])
    assert (mail.json()["channel"], mail.json()["to"], mail.code()) == (
        "email",
        EMAIL.lower(),
        "000123",
    )
    assert mail.json()["reference"] != body["reference"]
    assert {r: failures(r) for r in before} == before
    logged = str(logged_fields(caplog))
    assert "handed to the webhook" in logged and "PD9Z-5S2Z-JY0" in logged
    assert_nothing_private(logged, "493817", "000123")


async def test_a_refusal_is_counted_not_retried_and_not_raised_into_the_request(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.status = 500
    world = World()
    world.access.sender = sender(gateway.url)
    tid = world.confidential()
    before = failures("http_5xx")
    with caplog.at_level(logging.DEBUG):
        reply = await world.request(tid, f"0{PHONE[3:]}")  # settles the background send
    assert "if this contact belongs" in reply
    assert len(gateway.posted) == 1  # once: a retry could deliver the same code twice
    assert failures("http_5xx") == before + 1
    records = [r for r in logged_fields(caplog) if "could not hand" in r["message"]]
    assert [(r["reason"], r["status"]) for r in records] == [("http_5xx", 500)]
    assert_nothing_private(str(logged_fields(caplog)), gateway.posted[0].code())
    # the code was made and is valid: the gateway's failure does not void it
    issued = await world.verify(tid, gateway.posted[0].code())
    assert issued.tracking_id == tid


async def test_a_redirect_is_a_failure_and_is_not_followed(gateway: Gateway) -> None:
    gateway.status = 307
    gateway.location = f"http://127.0.0.1:{gateway.port}/elsewhere"
    before = failures("http_3xx")
    await sender(gateway.url).send(message(ContactPoint("phone", PHONE)))
    assert [p.path for p in gateway.posted] == [f"/kirim?key={QUERY_KEY}"]
    assert failures("http_3xx") == before + 1


async def test_a_gateway_that_does_not_answer_in_time_is_a_timeout(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.hold = threading.Event()
    before = failures("timeout")
    with caplog.at_level(logging.DEBUG):
        await sender(gateway.url, timeout=0.2).send(message(ContactPoint("phone", PHONE)))
    gateway.hold.set()
    assert failures("timeout") == before + 1 and len(gateway.posted) == 1
    assert [r["reason"] for r in logged_fields(caplog) if "reason" in r] == ["timeout"]
    assert_nothing_private(str(logged_fields(caplog)), "493817")


async def test_no_gateway_listening_is_a_connection_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    before = failures("connection")
    with caplog.at_level(logging.DEBUG):
        await sender(f"http://127.0.0.1:{port}/kirim?key={QUERY_KEY}").send(
            message(ContactPoint("email", EMAIL.lower()))
        )
    assert failures("connection") == before + 1
    records = [r for r in logged_fields(caplog) if "reason" in r]
    assert [(r["reason"], r["error"]) for r in records] == [
        ("connection", "ConnectionRefusedError")
    ]
    assert_nothing_private(str(logged_fields(caplog)), "493817")

"""The production sender of one-time access codes (``LAPOR_ACCESS_CODE_SENDER=webhook``):
one JSON POST per code to an SMS gateway or an e-mail relay (docs/reporter-api.md, "Webhook
for SMS gateways and e-mail relays").

``POST <LAPOR_ACCESS_CODE_WEBHOOK_URL>`` with ``Authorization: Bearer <token>`` and
``{"channel": "sms"|"email", "to": ..., "text": ..., "reference": ...}``; any 2xx reply is a
hand-over, anything else a failure. Each code is posted **once**: no retry (a retry after a
timeout could deliver the same code twice; the reporter may ask for a new one), no redirect
followed (it would carry the contact elsewhere). A failure is counted in
``lapor_intake_access_code_send_failures_total{reason}`` and logged with its kind and HTTP
status only: never the URL, the contact, the text, the code or the reply's body.

The contact reaches this module in clear, in memory only (``AccessCodeMessage.contact``).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import ssl
import urllib.request
import uuid
from datetime import timedelta
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from services.intake.access_codes import (
    LOCAL_HOSTS,
    AccessCodeMessage,
    WebhookSettings,
    code_text,
)
from services.intake.metrics import ACCESS_CODE_SEND_FAILURES

log = logging.getLogger(__name__)

CHANNELS = {"phone": "sms", "email": "email"}
USER_AGENT = "lapor-intake-access-codes/1"
REPLY_READ_MAX = 64 * 1024  # the reply's body is read (to free the connection), not used


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx is the gateway's answer, not an instruction: following it would send the
    contact, the code and (for 307/308) the token to another address."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def webhook_body(message: AccessCodeMessage, valid_for: timedelta, reference: str) -> bytes:
    return json.dumps(
        {
            "channel": CHANNELS[message.contact.kind],
            "to": message.contact.value,
            "text": code_text(message.tracking_id, message.code, valid_for),
            "reference": reference,
        },
        ensure_ascii=False,
    ).encode("utf-8")


FAILURE_REASONS = ("http_3xx", "http_4xx", "http_5xx", "timeout", "connection", "tls")


class WebhookCodeSender:
    name = "webhook"

    def __init__(self, settings: WebhookSettings, valid_for: timedelta) -> None:
        self._settings = settings
        self._valid_for = valid_for
        host = (urlsplit(settings.url).hostname or "").lower()
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if host in LOCAL_HOSTS:  # a local relay: never through an http(s)_proxy
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)
        for reason in FAILURE_REASONS:  # series exist from the start: alerts see the first
            ACCESS_CODE_SEND_FAILURES.labels(reason=reason)

    async def ensure_indexes(self) -> None:
        return None

    async def send(self, message: AccessCodeMessage) -> None:
        reference = uuid.uuid4().hex  # lets the gateway tie its logs to ours; not the tracking id
        request = urllib.request.Request(
            self._settings.url,
            data=webhook_body(message, self._valid_for, reference),
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
        )
        request.add_unredirected_header("Authorization", f"Bearer {self._settings.token.reveal()}")
        fields = {"tracking_id": message.tracking_id, "reference": reference}
        status, reason, error = 0, "", ""
        try:
            status = await asyncio.to_thread(self._post, request)
        except TimeoutError as exc:
            reason, error = "timeout", type(exc).__name__
        except URLError as exc:  # connecting failed: the cause is in .reason
            cause = exc.reason
            error = type(cause).__name__
            if isinstance(cause, TimeoutError):
                reason = "timeout"
            elif isinstance(cause, ssl.SSLError):
                reason = "tls"
            else:
                reason = "connection"
        except ssl.SSLError as exc:
            reason, error = "tls", type(exc).__name__
        except (OSError, http.client.HTTPException) as exc:  # reset, a malformed reply
            reason, error = "connection", type(exc).__name__
        if not reason and not 200 <= status < 300:
            reason = f"http_{status // 100}xx"
        if reason:
            ACCESS_CODE_SEND_FAILURES.labels(reason=reason).inc()
            log.warning(
                "could not hand an access code to the webhook (not retried)",
                extra={
                    **fields,
                    "reason": reason,
                    **({"status": status} if status else {}),
                    **({"error": error} if error else {}),
                },
            )
            return
        log.info(
            "access code handed to the webhook",
            extra={**fields, "channel": CHANNELS[message.contact.kind], "status": status},
        )

    def _post(self, request: urllib.request.Request) -> int:
        """The HTTP status of the gateway's reply (blocking: runs in a thread)."""
        try:
            with self._opener.open(request, timeout=self._settings.timeout_seconds) as reply:
                reply.read(REPLY_READ_MAX)
                return int(reply.status)
        except HTTPError as exc:  # a reply, only not a 2xx one
            try:
                exc.read(REPLY_READ_MAX)
            except OSError:
                pass
            finally:
                exc.close()
            return int(exc.code)

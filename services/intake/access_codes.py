"""Access by verified contact, and the brake on guessing codes. Written against ports, so
the rules run over fakes in unit tests (the MongoDB adapters are in access_store.py).

A reporter who lost the follow-up code proves the report is theirs through the contact
stored with it (confidential and public reports; anonymous ones keep none):

1. ``RequestAccessCode(tracking_id, contact)``: when the contact's keyed hash equals the
   keyed hash of the stored (decrypted) contact, a numeric one-time code from ``secrets`` is
   made, only its keyed hash is stored with an expiry and an attempt budget, and the code
   goes out through the ``CodeSender`` port, in the background so that the reply takes as
   long whether or not a code was sent. The code is stored with the keyed hash of the
   contact it was sent to. The reply never tells whether the contact matched or the report
   exists. Requests are limited per tracking id and contact (its keyed hash), so a
   stranger's contact uses up its own count only, and per tracking id overall at
   ``REPORT_REQUESTS_FACTOR`` times that (a request refused for its contact is not counted
   there): requests with that many contacts or more use up the report's limit, and every
   contact is refused, the reporter's too, until the window moves on (sparing theirs would
   tell which contact is the reporter's).
2. ``VerifyAccessCode(tracking_id, contact, code)``: the code is tried only when the
   contact's keyed hash is the one stored with the pending code (a wrong contact uses none
   of its tries, and gets the same answer as a wrong code); each try takes one attempt of
   the code's budget atomically (so parallel guesses cannot exceed it); the right code is
   consumed (single use) and exchanged for an access token: 256 random bits, stored as a
   SHA-256, valid for a short time, accepted by the own-report calls instead of the
   follow-up code.

Every wrong follow-up code or access token for a tracking id is counted in MongoDB
(``GuessGuard``), shared by every intake replica; over the limit within the window, a wrong
one answers RESOURCE_EXHAUSTED with a retry delay until the oldest counted failure leaves
the window. Access-code tries are counted per tracking id and contact, each claimed before
the code is compared (``GuessGuard.claim``); over the limit every code for that contact is
refused, the right one included (else 10^6 codes could be guessed), while tries with
another contact count apart and cannot shut the reporter out. Unknown tracking ids are
counted the same way, so the limits do not tell whether a report exists. Every limit of
this module is decided in the write that counts (``AttemptLog.claim``), so parallel
requests cannot pass it.

The contact never leaves this module in clear except to the sender, which must deliver it;
what is stored or logged holds at most its keyed hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NoReturn, Protocol
from urllib.parse import urlsplit

from services.common.clock import Clock
from services.common.errors import PermissionDenied, ResourceExhausted, Violation, require
from services.common.ids import MalformedTrackingId, parse_tracking_id
from services.common.settings import Env, Secret, SettingsError
from services.intake.abuse import AbuseHasher
from services.intake.domain import EMAIL, Contact
from services.intake.phone import NotAPhoneNumber, to_e164

log = logging.getLogger(__name__)

Doc = dict[str, Any]

CODE_DIGITS = 6
TOKEN_PREFIX = "lat_"
TOKEN_PATTERN = re.compile(r"^lat_[A-Za-z0-9_\-]{43}$")
CONTACT_MAX = 254
SENDERS = ("collection", "log", "webhook")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")  # the only hosts a webhook may use http for
REQUESTED = (
    "if this contact belongs to the report, a code was sent to it; it is valid for "
    "{minutes} minutes"
)
NO_CODE_MATCH = (
    "tracking_id, contact, access_code: no valid access code matches this tracking id and "
    "contact (a code is valid once, for a limited time and a limited number of tries, with "
    "the contact it was sent to)"
)
NO_CONTACT = (
    "must not be empty: give the phone number or e-mail address the code was sent to, as in "
    "RequestAccessCode"
)
# The overall requests per tracking id, whatever the contact, as a multiple of the requests
# per tracking id and contact (LAPOR_ACCESS_CODE_REQUESTS_PER_REPORT).
REPORT_REQUESTS_FACTOR = 4
NO_TOKEN_MATCH = (
    "tracking_id, access_token: no report matches this tracking id and access token (it may "
    "have expired: ask for a new code)"
)


# --- settings ---------------------------------------------------------------------------

WEBHOOK_URL = "LAPOR_ACCESS_CODE_WEBHOOK_URL"
WEBHOOK_TOKEN = "LAPOR_ACCESS_CODE_WEBHOOK_TOKEN"
WEBHOOK_TIMEOUT = "LAPOR_ACCESS_CODE_WEBHOOK_TIMEOUT_SECONDS"


@dataclass(frozen=True)
class WebhookSettings:
    """Where the ``webhook`` sender POSTs codes (an SMS gateway or an e-mail relay). The URL
    may carry a key in its query: it is kept out of repr and of every message."""

    url: str = field(repr=False)
    token: Secret
    timeout_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: Env) -> WebhookSettings:
        if env.optional(WEBHOOK_URL) is None:
            raise SettingsError(f"{WEBHOOK_URL} is required when LAPOR_ACCESS_CODE_SENDER=webhook")
        url = env.text(WEBHOOK_URL)
        problem = webhook_url_problem(url)
        if problem:
            raise SettingsError(f"{WEBHOOK_URL}: {problem}")  # never the value: it may hold a key
        if env.optional(WEBHOOK_TOKEN) is None:
            raise SettingsError(
                f"{WEBHOOK_TOKEN} is required when LAPOR_ACCESS_CODE_SENDER=webhook "
                "(the gateway's bearer token)"
            )
        return cls(
            url=url,
            token=env.secret(WEBHOOK_TOKEN),
            timeout_seconds=env.number(WEBHOOK_TIMEOUT, 5.0, low=0.1, high=60.0),
        )


def webhook_url_problem(url: str) -> str | None:
    """Why `url` cannot be the webhook (https, or http to this host only), or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "is not a URL"
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        return "must be an https:// URL with a host"
    if parts.scheme == "http" and host not in LOCAL_HOSTS:
        return "must use https:// (http:// only for localhost, 127.0.0.1 or ::1)"
    if parts.username is not None or parts.password is not None:
        return f"must not hold credentials: put the token into {WEBHOOK_TOKEN}"
    return None


@dataclass(frozen=True)
class AccessSettings:
    sender: str = "collection"
    code_ttl: timedelta = timedelta(minutes=10)
    code_max_attempts: int = 5
    requests_per_report: int = 3  # per tracking id and contact; 0: no limit
    request_window: timedelta = timedelta(minutes=15)
    token_ttl: timedelta = timedelta(minutes=30)
    max_wrong_codes: int = 5  # 0: no limit
    wrong_codes_window: timedelta = timedelta(minutes=15)
    webhook: WebhookSettings | None = None  # sender "webhook" only

    @classmethod
    def from_env(cls, env: Env) -> AccessSettings:
        day = 86_400
        sender = env.choice("LAPOR_ACCESS_CODE_SENDER", SENDERS, "collection")
        return cls(
            sender=sender,
            code_ttl=timedelta(
                seconds=env.integer("LAPOR_ACCESS_CODE_TTL_SECONDS", 600, low=60, high=day)
            ),
            code_max_attempts=env.integer("LAPOR_ACCESS_CODE_MAX_ATTEMPTS", 5, low=1, high=20),
            requests_per_report=env.integer(
                "LAPOR_ACCESS_CODE_REQUESTS_PER_REPORT", 3, low=0, high=1000
            ),
            request_window=timedelta(
                seconds=env.integer(
                    "LAPOR_ACCESS_CODE_REQUEST_WINDOW_SECONDS", 900, low=1, high=day
                )
            ),
            token_ttl=timedelta(
                seconds=env.integer("LAPOR_ACCESS_TOKEN_TTL_SECONDS", 1800, low=60, high=day)
            ),
            max_wrong_codes=env.integer("LAPOR_REPORTER_MAX_WRONG_CODES", 5, low=0, high=1000),
            wrong_codes_window=timedelta(
                seconds=env.integer(
                    "LAPOR_REPORTER_WRONG_CODES_WINDOW_SECONDS", 900, low=1, high=day
                )
            ),
            webhook=WebhookSettings.from_env(env) if sender == "webhook" else None,
        )


# --- pure rules -------------------------------------------------------------------------


def new_access_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_text(tracking_id: str, code: str, valid_for: timedelta) -> str:
    """What the reporter reads: Indonesian, GSM-7 only and at most 160 characters (one SMS)
    for every tracking id, code and TTL setting (up to 1440 minutes)."""
    minutes = max(int(valid_for.total_seconds()) // 60, 1)
    return (
        f"Kode akses LAPOR! untuk laporan {tracking_id}: {code}. Berlaku {minutes} menit. "
        "Jangan berikan kepada siapa pun, termasuk petugas."
    )


def canonical_access_code(code: str) -> str:
    return "".join(code.split()).replace("-", "")


def access_code_violations(code: str) -> list[Violation]:
    text = canonical_access_code(code)
    if not text:
        return [Violation("access_code", "must not be empty")]
    if len(text) != CODE_DIGITS or not text.isascii() or not text.isdigit():
        return [Violation("access_code", f"must be the {CODE_DIGITS} digits that were sent")]
    return []


def new_access_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def is_access_token(credential: str) -> bool:
    """Access tokens carry a prefix no follow-up code has (Crockford symbols only), so one
    string can carry either credential."""
    return credential.strip().startswith(TOKEN_PREFIX)


def token_violations(token: str) -> list[Violation]:
    if not TOKEN_PATTERN.match(token.strip()):
        return [Violation("access_token", "is not an access token issued by VerifyAccessCode")]
    return []


def token_hash(token: str) -> str:
    """256 random bits need no key and no salt: a plain SHA-256 cannot be reversed."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


@dataclass(frozen=True)
class ContactPoint:
    """A way to reach the reporter, normalised as intake stores it: E.164 or an e-mail."""

    kind: str  # "phone" or "email"
    value: str = field(repr=False)


def parse_contact(raw: str) -> tuple[ContactPoint | None, list[Violation]]:
    text = raw.strip()
    if not text:
        return None, [Violation("contact", "must not be empty")]
    if len(text) > CONTACT_MAX:
        return None, [Violation("contact", f"must be at most {CONTACT_MAX} characters")]
    if "@" in text:
        if not EMAIL.match(text):
            return None, [Violation("contact", "is not an e-mail address")]
        return ContactPoint("email", text.lower()), []
    try:
        return ContactPoint("phone", to_e164(text)), []
    except NotAPhoneNumber as exc:
        return None, [Violation("contact", f"is not a phone number or an e-mail address: {exc}")]


def contact_points(contact: Contact | None) -> list[ContactPoint]:
    """The stored contact's ways to receive a code (a name or a social handle cannot)."""
    if contact is None:
        return []
    points = []
    if contact.phone.strip():
        points.append(ContactPoint("phone", contact.phone.strip()))
    if contact.email.strip():
        points.append(ContactPoint("email", contact.email.strip().lower()))
    return points


def retry_after(
    times: list[datetime], now: datetime, limit: int, window: timedelta
) -> float | None:
    """Seconds until fewer than `limit` of `times` fall within `window` before `now`; None
    when that is already so (a sliding window)."""
    if limit <= 0:
        return None
    recent = sorted(t for t in times if t > now - window)
    if len(recent) < limit:
        return None
    return max((recent[-limit] + window - now).total_seconds(), 1.0)


# --- ports ------------------------------------------------------------------------------


class AttemptLog(Protocol):
    """Times of recent attempts per key, shared by every replica."""

    async def times(self, key: str) -> list[datetime]: ...

    async def add(self, key: str, at: datetime, keep: int, expires_at: datetime) -> None:
        """Append `at`, keep the last `keep` times, forget the key after `expires_at`."""
        ...

    async def claim(
        self, key: str, at: datetime, limit: int, since: datetime, expires_at: datetime
    ) -> bool:
        """Append `at` only if fewer than `limit` times since `since` are kept, decided in
        the write itself (parallel claims cannot all pass); whether it was appended."""
        ...


class AccessCodeStore(Protocol):
    async def put(
        self,
        tracking_id: str,
        code_hash: str,
        contact_hash: str,
        expires_at: datetime,
        tries: int,
    ) -> None:
        """The report's one pending code, with the keyed hash of the contact it was sent to
        (a new one replaces the previous one)."""
        ...

    async def touch(self, tracking_id: str, expires_at: datetime) -> None:
        """A write as costly as `put` that leaves the report's code alone (no code for
        this request): the answer's timing must not tell whether the contact matched."""
        ...

    async def take_attempt(self, tracking_id: str, contact_hash: str, now: datetime) -> str | None:
        """Atomically use one try of the pending code if it was sent to `contact_hash`, has
        tries left and has not expired; its hash, or None (and no try used). As costly
        whether or not `contact_hash` is the code's: the timing must not tell."""
        ...

    async def consume(self, tracking_id: str, code_hash: str) -> bool:
        """Remove the code (single use); False when another request consumed it first."""
        ...


class AccessTokenStore(Protocol):
    async def issue(self, token_sha256: str, tracking_id: str, expires_at: datetime) -> None: ...

    async def valid(self, token_sha256: str, tracking_id: str, now: datetime) -> bool: ...


@dataclass(frozen=True)
class AccessCodeMessage:
    """What a sender delivers. `contact` is the only clear contact outside the sealed
    identity: a sender may use it to deliver, never store or log it."""

    tracking_id: str
    contact: ContactPoint = field(repr=False)
    contact_hash: str  # keyed (LAPOR_ABUSE_HASH_KEY), never reversible without the key
    code: str = field(repr=False)
    expires_at: datetime


class CodeSender(Protocol):
    name: str

    async def send(self, message: AccessCodeMessage) -> None: ...


# --- the guard against guessing ---------------------------------------------------------


@dataclass
class GuessGuard:
    """Wrong credentials per tracking id, in a sliding window, counted in the shared store.

    Two guards count apart: ``wrong`` for follow-up codes and access tokens, ``wrong-access``
    for the 6-digit access codes, so a stranger's wrong follow-up codes never block a
    reporter's way back in through an access code. The follow-up code and token paths
    (``check``, ``failed``) count wrong ones per tracking id and refuse only wrong ones over
    the limit (60 and 256 bits cannot be guessed, so the right one is always let in:
    knowing a tracking id must not be enough to lock its reporter out). The access code
    path (``claim``) counts every try per tracking id and contact before the code is
    compared, and over the limit refuses every code for that contact (10^6 codes can be
    guessed; the limit is what stops it); another contact's tries count apart, so knowing
    a tracking id is not enough to lock its reporter out here either."""

    log: AttemptLog
    clock: Clock
    limit: int = 5
    window: timedelta = timedelta(minutes=15)
    prefix: str = "wrong"

    @staticmethod
    def key(tracking_id: str, prefix: str = "wrong") -> str:
        return f"{prefix}:{tracking_id}"

    async def retry_after(self, tracking_id: str) -> float | None:
        if self.limit <= 0:
            return None
        times = await self.log.times(self.key(tracking_id, self.prefix))
        return retry_after(times, self.clock.now(), self.limit, self.window)

    async def check(self, tracking_id: str) -> None:
        blocked = await self.retry_after(tracking_id)
        if blocked is not None:
            raise too_many_wrong_codes(self.limit, self.window, blocked)

    async def failed(self, tracking_id: str) -> None:
        if self.limit <= 0:
            return
        now = self.clock.now()
        await self.log.add(self.key(tracking_id, self.prefix), now, self.limit, now + self.window)

    async def claim(self, tracking_id: str, contact_hash: str) -> None:
        """Count one access-code try for the tracking id and contact before the code is
        compared, in the write that decides (parallel tries cannot pass the limit); over
        the limit, RESOURCE_EXHAUSTED with the delay until the oldest try leaves the window.
        The right code counts too: it is used up, so that is at most one try per code."""
        if self.limit <= 0:
            return
        key = f"{self.key(tracking_id, self.prefix)}:{contact_hash}"
        now = self.clock.now()
        if await self.log.claim(key, now, self.limit, now - self.window, now + self.window):
            return
        wait = retry_after(await self.log.times(key), now, self.limit, self.window) or 1.0
        raise ResourceExhausted(
            f"tracking_id, contact: too many access-code tries for this report and contact "
            f"(at most {self.limit} every {int(self.window.total_seconds())} s); try again "
            f"in {int(wait + 0.999)} s",
            wait,
        )


async def refuse_wrong_code(
    guard: GuessGuard | None, tracking_id: str, blocked: float | None, message: str
) -> NoReturn:
    """Refuse a wrong follow-up code or token: RESOURCE_EXHAUSTED while the tracking id is
    over the wrong-code limit (`blocked`: the guard's retry delay, read before the check),
    else count it and answer PERMISSION_DENIED with `message`."""
    if guard is not None and blocked is not None:
        raise too_many_wrong_codes(guard.limit, guard.window, blocked)
    if guard is not None:
        await guard.failed(tracking_id)
    raise PermissionDenied(message)


def too_many_wrong_codes(limit: int, window: timedelta, wait: float) -> ResourceExhausted:
    return ResourceExhausted(
        f"tracking_id: too many wrong codes for this report (at most {limit} every "
        f"{int(window.total_seconds())} s); try again in {int(wait + 0.999)} s",
        wait,
    )


# --- use cases --------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeRequested:
    message: str
    valid_seconds: int
    code_length: int = CODE_DIGITS


@dataclass(frozen=True)
class IssuedToken:
    token: str = field(repr=False)
    tracking_id: str
    expires_at: datetime


class ReportReader(Protocol):
    async def get(self, tracking_id: str) -> Doc | None: ...


def _tracking_id(raw: str) -> tuple[str, list[Violation]]:
    try:
        return parse_tracking_id(raw), []
    except MalformedTrackingId as exc:
        return "", [Violation("tracking_id", str(exc))]


@dataclass
class AccessHandlers:
    reports: ReportReader
    open_contact: Callable[[Doc], Contact | None]
    hasher: AbuseHasher
    codes: AccessCodeStore
    tokens: AccessTokenStore
    attempts: AttemptLog
    guard: GuessGuard
    sender: CodeSender
    clock: Clock
    settings: AccessSettings = field(default_factory=AccessSettings)
    _sending: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)

    def _code_hash(self, tracking_id: str, code: str) -> str:
        # 10^6 codes: a plain hash would be reversed at once; keyed, it cannot be.
        return self.hasher.digest("access-code", f"{tracking_id}:{canonical_access_code(code)}")

    async def request_code(self, raw_tracking_id: str, raw_contact: str) -> CodeRequested:
        tracking_id, v = _tracking_id(raw_tracking_id)
        point, cv = parse_contact(raw_contact)
        require(v + cv)
        assert point is not None
        wanted = self.hasher.digest(point.kind, point.value)
        await self._count_request(tracking_id, wanted)
        doc = await self.reports.get(tracking_id)
        matched = False
        for stored in self._stored_points(doc) or [_NOBODY]:  # the same work when none
            digest = self.hasher.digest(stored.kind, stored.value)
            matched = hmac.compare_digest(digest, wanted) or matched
        now = self.clock.now()
        expires_at = now + self.settings.code_ttl
        if matched:
            code = new_access_code()
            await self.codes.put(
                tracking_id,
                self._code_hash(tracking_id, code),
                wanted,
                expires_at,
                self.settings.code_max_attempts,
            )
            self._dispatch(AccessCodeMessage(tracking_id, point, wanted, code, expires_at))
        else:
            await self.codes.touch(tracking_id, expires_at)
        seconds = int(self.settings.code_ttl.total_seconds())
        return CodeRequested(REQUESTED.format(minutes=max(seconds // 60, 1)), seconds)

    async def verify_code(
        self, raw_tracking_id: str, raw_contact: str, raw_code: str
    ) -> IssuedToken:
        tracking_id, v = _tracking_id(raw_tracking_id)
        if raw_contact.strip():
            point, cv = parse_contact(raw_contact)
        else:  # also what a client written before the field existed sends
            point, cv = None, [Violation("contact", NO_CONTACT)]
        require(v + cv + access_code_violations(raw_code))
        assert point is not None
        contact_hash = self.hasher.digest(point.kind, point.value)
        # Claimed before the code is compared, under this contact: another contact's tries
        # never count against the one the code was sent to.
        await self.guard.claim(tracking_id, contact_hash)
        now = self.clock.now()
        # Another contact than the code's finds no code and uses none of its tries: the
        # same calls and the same answer as a wrong code.
        stored = await self.codes.take_attempt(tracking_id, contact_hash, now)
        given = self._code_hash(tracking_id, raw_code)
        ok = hmac.compare_digest(stored or _NO_CODE, given) and stored is not None
        if not ok or stored is None:
            raise PermissionDenied(NO_CODE_MATCH)
        if not await self.codes.consume(tracking_id, stored):
            raise PermissionDenied(NO_CODE_MATCH)  # a parallel request used it first
        token = new_access_token()
        expires_at = now + self.settings.token_ttl
        await self.tokens.issue(token_hash(token), tracking_id, expires_at)
        return IssuedToken(token, tracking_id, expires_at)

    async def settle(self, wait_seconds: float | None = None) -> int:
        """Wait for the codes being sent: until every one is done (sent, or its failure
        logged), or for at most `wait_seconds`. Returns how many are still being sent
        (0: none). Shutdown calls it with a timeout before the clients close, so a reporter
        told a code was sent is not left without it; tests call it without one."""
        loop = asyncio.get_running_loop()
        deadline = None if wait_seconds is None else loop.time() + wait_seconds
        while pending := [t for t in self._sending if not t.done()]:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return len(pending)
            await asyncio.wait(pending, timeout=left)
        return 0

    def _stored_points(self, doc: Doc | None) -> list[ContactPoint]:
        if doc is None or not doc.get("reporter"):
            return []
        try:
            return contact_points(self.open_contact(doc))
        except Exception as exc:  # noqa: BLE001 - a key gone from the ring: no match
            log.warning(
                "could not open a reporter identity for an access code",
                extra={"tracking_id": doc.get("_id"), "error": type(exc).__name__},
            )
            return []

    async def _count_request(self, tracking_id: str, contact_hash: str) -> None:
        """Claim the request under the tracking id and contact, then under the tracking id
        overall (a higher limit), each in the write that decides. The contact's first: a
        request refused for its contact does not use up the report's overall limit, so
        one stranger's contact can exhaust only its own count."""
        limit, window = self.settings.requests_per_report, self.settings.request_window
        if limit <= 0:
            return
        now, seconds = self.clock.now(), int(window.total_seconds())
        overall = limit * REPORT_REQUESTS_FACTOR
        for key, most, what in (
            (
                f"request:{tracking_id}:{contact_hash}",
                limit,
                f"tracking_id, contact: at most {limit} access-code requests per report and "
                f"contact every {seconds} s",
            ),
            (
                f"request-report:{tracking_id}",
                overall,
                f"tracking_id: at most {overall} access-code requests per report every "
                f"{seconds} s, whatever the contact",
            ),
        ):
            if await self.attempts.claim(key, now, most, now - window, now + window):
                continue
            wait = retry_after(await self.attempts.times(key), now, most, window) or 1.0
            raise ResourceExhausted(f"{what}; try again in {int(wait + 0.999)} s", wait)

    def _dispatch(self, message: AccessCodeMessage) -> None:
        """Send in the background: the reply does not wait for (or reveal) a delivery."""
        task = asyncio.get_running_loop().create_task(self._send(message))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, message: AccessCodeMessage) -> None:
        try:
            await self.sender.send(message)
        except Exception as exc:  # noqa: BLE001 - never log the message: it holds the code
            log.warning(
                "could not send an access code",
                extra={
                    "tracking_id": message.tracking_id,
                    "sender": self.sender.name,
                    "error": type(exc).__name__,
                },
            )


_NO_CODE = "0" * 40  # compared against when there is no pending code: the same work
_NOBODY = ContactPoint("phone", "\x00")  # hashed when the report has no contact; never matches

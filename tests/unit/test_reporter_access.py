"""Access by verified contact and the brake on guessing codes, over fakes of our own ports:
one-time codes sent only to the stored contact, the same reply whatever happened, codes
single use with a bounded number of tries and an expiry, tried only with the contact they
were sent to, access tokens accepted instead of the follow-up code, wrong codes counted per
tracking id (known or not), access-code requests and tries per tracking id and contact, so
that a stranger who knows a tracking id cannot shut its reporter out."""

from __future__ import annotations

import contextlib
import itertools
import logging
from datetime import datetime, timedelta
from typing import Any

import pytest

from services.common.clock import ManualClock
from services.common.errors import PermissionDenied, ResourceExhausted, ValidationError
from services.common.ids import new_tracking_id
from services.common.settings import Env, SettingsError
from services.intake.abuse import AbuseHasher
from services.intake.access_codes import (
    NO_CODE_MATCH,
    NO_CONTACT,
    NO_TOKEN_MATCH,
    AccessCodeMessage,
    AccessHandlers,
    AccessSettings,
    ContactPoint,
    GuessGuard,
    access_code_violations,
    new_access_code,
    new_access_token,
    parse_contact,
    retry_after,
    token_hash,
)
from services.intake.access_store import LogCodeSender
from services.intake.domain import Contact
from services.intake.reporter import NO_MATCH, ReporterHandlers, credential
from tests.unit.test_reporter_usecases import CODE, FakeReports, verify

PHONE = "+6281234567890"
EMAIL = "Siti.Rahma@Contoh.id"
STRANGER = "081299998888"  # not the report's contact
CONTACTS = {"sealed": Contact("Siti Rahma", PHONE, EMAIL)}


class Calls:
    """What the fakes were asked, in order: the path a request took."""

    def __init__(self) -> None:
        self.log: list[str] = []


class FakeAttempts:
    def __init__(self, calls: Calls) -> None:
        self.rows: dict[str, list[datetime]] = {}
        self.calls = calls

    async def times(self, key: str) -> list[datetime]:
        self.calls.log.append(f"times {key.split(':')[0]}")
        return list(self.rows.get(key, []))

    async def add(self, key: str, at: datetime, keep: int, expires_at: datetime) -> None:
        self.calls.log.append(f"add {key.split(':')[0]}")
        self.rows[key] = [*self.rows.get(key, []), at][-keep:]

    async def claim(
        self, key: str, at: datetime, limit: int, since: datetime, expires_at: datetime
    ) -> bool:
        self.calls.log.append(f"claim {key.split(':')[0]}")
        kept = self.rows.get(key, [])
        if len(kept) >= limit and kept[-limit] >= since:
            return False
        self.rows[key] = [*kept, at][-limit:]
        return True


class FakeCodes:
    def __init__(self, calls: Calls) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.calls = calls

    async def put(
        self,
        tracking_id: str,
        code_hash: str,
        contact_hash: str,
        expires_at: datetime,
        tries: int,
    ) -> None:
        self.calls.log.append("put")
        self.rows[tracking_id] = {
            "hash": code_hash,
            "contact_hash": contact_hash,
            "expires_at": expires_at,
            "tries": tries,
        }

    async def touch(self, tracking_id: str, expires_at: datetime) -> None:
        self.calls.log.append("put")  # as costly as put, on purpose

    async def take_attempt(self, tracking_id: str, contact_hash: str, now: datetime) -> str | None:
        self.calls.log.append("take_attempt")
        row = self.rows.get(tracking_id)
        if row is None or row["contact_hash"] != contact_hash:
            return None
        if row["expires_at"] <= now or row["tries"] <= 0:
            return None
        row["tries"] -= 1
        return str(row["hash"])

    async def consume(self, tracking_id: str, code_hash: str) -> bool:
        row = self.rows.get(tracking_id)
        if row is None or row["hash"] != code_hash:
            return False
        del self.rows[tracking_id]
        return True


class FakeTokens:
    def __init__(self, calls: Calls) -> None:
        self.rows: dict[str, tuple[str, datetime]] = {}
        self.calls = calls

    async def issue(self, token_sha256: str, tracking_id: str, expires_at: datetime) -> None:
        self.rows[token_sha256] = (tracking_id, expires_at)

    async def valid(self, token_sha256: str, tracking_id: str, now: datetime) -> bool:
        self.calls.log.append("token")
        row = self.rows.get(token_sha256)
        return row is not None and row[0] == tracking_id and row[1] > now


class FakeSender:
    name = "fake"

    def __init__(self) -> None:
        self.sent: list[AccessCodeMessage] = []
        self.fail = False

    async def send(self, message: AccessCodeMessage) -> None:
        if self.fail:
            raise RuntimeError(f"gateway refused {message.contact.value} code {message.code}")
        self.sent.append(message)


class CountingReports(FakeReports):
    def __init__(self, calls: Calls) -> None:
        super().__init__()
        self.calls = calls

    async def get(self, tracking_id: str) -> dict[str, Any] | None:
        self.calls.log.append("get")
        return await super().get(tracking_id)


class World:
    def __init__(self, settings: AccessSettings | None = None) -> None:
        self.settings = settings or AccessSettings()
        self.calls = Calls()
        self.clock = ManualClock()
        self.reports = CountingReports(self.calls)
        self.attempts = FakeAttempts(self.calls)
        self.codes = FakeCodes(self.calls)
        self.tokens = FakeTokens(self.calls)
        self.sender = FakeSender()
        self.hasher = AbuseHasher(b"k" * 32)
        self.guard = GuessGuard(
            self.attempts,
            self.clock,
            self.settings.max_wrong_codes,
            self.settings.wrong_codes_window,
        )
        self.access_guard = GuessGuard(  # counts apart, as reporter_wiring builds them
            self.attempts,
            self.clock,
            self.settings.max_wrong_codes,
            self.settings.wrong_codes_window,
            prefix="wrong-access",
        )
        ids = itertools.count(1)

        def open_contact(doc: dict[str, Any]) -> Contact | None:
            return CONTACTS.get(doc["reporter"]) if doc.get("reporter") else None

        self.reporter = ReporterHandlers(
            reports=self.reports,
            verify=verify,
            open_contact=open_contact,
            clock=self.clock,
            new_event_id=lambda: f"ev{next(ids)}",
            guard=self.guard,
            tokens=self.tokens,
        )
        self.access = AccessHandlers(
            reports=self.reports,
            open_contact=open_contact,
            hasher=self.hasher,
            codes=self.codes,
            tokens=self.tokens,
            attempts=self.attempts,
            guard=self.access_guard,
            sender=self.sender,
            clock=self.clock,
            settings=self.settings,
        )

    def confidential(self, **fields: Any) -> str:
        return self.reports.add(privacy="confidential", reporter="sealed", **fields)

    async def request(self, tid: str, contact: str) -> str:
        reply = await self.access.request_code(tid, contact)
        await self.access.settle()
        return reply.message

    async def code_for(self, tid: str, contact: str = PHONE) -> str:
        before = len(self.sender.sent)
        await self.request(tid, contact)
        assert len(self.sender.sent) == before + 1
        return self.sender.sent[-1].code

    async def verify(self, tid: str, code: str, contact: str = PHONE) -> Any:
        return await self.access.verify_code(tid, contact, code)


def other_than(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


_RESERVED = set(vars(logging.makeLogRecord({})))


def logged_fields(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """What the JSON log formatter writes of each record: the message and the extras."""
    return [
        {"message": r.getMessage(), **{k: v for k, v in vars(r).items() if k not in _RESERVED}}
        for r in caplog.records
    ]


@pytest.fixture
def world() -> World:
    return World()


@pytest.mark.parametrize(
    "given", ["081234567890", "62 812-3456-7890", "+62 (812) 3456 7890", "0062812.3456.7890"]
)
async def test_a_code_goes_to_the_stored_phone_however_it_is_written(
    world: World, given: str
) -> None:
    tid = world.confidential()
    code = await world.code_for(tid, given)
    message = world.sender.sent[0]
    assert message.tracking_id == tid and message.contact == ContactPoint("phone", PHONE)
    assert message.contact_hash == world.hasher.digest("phone", PHONE)
    assert len(code) == 6 and code.isdigit()
    stored = world.codes.rows[tid]
    assert code not in str(stored) and PHONE not in str(stored)
    assert stored["expires_at"] == world.clock.now() + timedelta(minutes=10)
    assert PHONE not in repr(message) and code not in repr(message)


async def test_a_code_goes_to_the_stored_email_in_any_case(world: World) -> None:
    tid = world.confidential()
    await world.code_for(tid, "  siti.rahma@CONTOH.id ")
    assert world.sender.sent[0].contact == ContactPoint("email", EMAIL.lower())


async def test_the_reply_never_tells_whether_the_contact_or_the_report_matched(
    world: World,
) -> None:
    tid = world.confidential()
    anonymous = world.reports.add(privacy="anonymous")
    public_without_contact = world.reports.add()
    matched = await world.request(tid, PHONE)
    replies = {
        await world.request(tid, "081299998888"),
        await world.request(tid, "orang.lain@contoh.id"),
        await world.request(anonymous, PHONE),
        await world.request(public_without_contact, PHONE),
        await world.request(new_tracking_id(), PHONE),
    }
    assert replies == {matched}
    assert "if this contact belongs to the report" in matched
    assert [m.tracking_id for m in world.sender.sent] == [tid]


async def test_every_request_takes_the_same_path_matched_or_not(world: World) -> None:
    tid = world.confidential()
    paths = []
    for target, contact in [(tid, PHONE), (tid, "081299998888"), (new_tracking_id(), PHONE)]:
        world.calls.log.clear()
        await world.request(target, contact)
        paths.append(list(world.calls.log))
    assert (
        paths[0]
        == paths[1]
        == paths[2]
        == [
            "claim request",
            "claim request-report",
            "get",
            "put",
        ]
    )


async def test_a_wrong_contact_does_not_void_the_pending_code(world: World) -> None:
    tid = world.confidential()
    code = await world.code_for(tid)
    await world.request(tid, "081299998888")
    assert (await world.verify(tid, code)).tracking_id == tid


async def test_malformed_requests_name_the_field(world: World) -> None:
    with pytest.raises(ValidationError) as err:
        await world.access.request_code("ABC", "08-12")
    assert {v.field for v in err.value.violations} == {"tracking_id", "contact"}
    for bad in ("", "siti@", "x" * 300, "hubungi saya"):
        assert parse_contact(bad)[1][0].field == "contact"
    with pytest.raises(ValidationError) as code_err:
        await world.verify(new_tracking_id(), "12345")
    assert [v.field for v in code_err.value.violations] == ["access_code"]
    for missing in ("", "  "):  # what a client written before the field existed sends
        with pytest.raises(ValidationError) as no_contact:
            await world.verify(new_tracking_id(), "123456", missing)
        assert [(v.field, v.rule) for v in no_contact.value.violations] == [("contact", NO_CONTACT)]
    with pytest.raises(ValidationError) as bad_contact:
        await world.verify("ABC", "123456", "hubungi saya")
    assert {v.field for v in bad_contact.value.violations} == {"tracking_id", "contact"}
    assert access_code_violations("123 456") == access_code_violations("123-456") == []
    assert access_code_violations("１２３４５６") != []  # full-width digits are not digits here
    assert world.sender.sent == [] and world.calls.log == []


async def test_requests_per_tracking_id_and_contact_are_limited_known_or_not(
    world: World,
) -> None:
    tid, unknown = world.confidential(), new_tracking_id()
    for target in (tid, unknown):
        for _ in range(3):
            await world.request(target, PHONE)
        with pytest.raises(ResourceExhausted) as err:
            await world.request(target, "0812 3456 7890")  # the same contact written so
        assert err.value.retry_after_seconds == 900
        assert str(err.value).startswith(
            "tracking_id, contact: at most 3 access-code requests per report and contact "
            "every 900 s; try again in 900 s"
        )
    assert len(world.sender.sent) == 3
    world.clock.advance(timedelta(minutes=15, seconds=1))
    await world.request(tid, PHONE)
    assert len(world.sender.sent) == 4


async def test_a_strangers_requests_do_not_use_up_the_reporters(world: World) -> None:
    """Someone who knows only the tracking id (public listings print it) asks with another
    contact until refused: the reporter's requests count apart and still get a code."""
    tid = world.confidential()
    for _ in range(3):
        await world.request(tid, STRANGER)
    with pytest.raises(ResourceExhausted):
        await world.request(tid, STRANGER)
    await world.code_for(tid, "0812-3456-7890")
    assert [m.contact for m in world.sender.sent] == [ContactPoint("phone", PHONE)]


async def test_a_report_takes_four_times_the_requests_of_one_contact_whatever_the_contact(
    world: World,
) -> None:
    """The overall limit per tracking id is 4 x 3. A request refused for its contact does
    not count overall, so one contact alone never reaches it; over it, every contact is
    refused, the report's too (sparing it would tell which contact is the report's)."""
    tid = world.confidential()
    for _ in range(10):  # 3 pass, 7 are refused for their contact and not counted overall
        with contextlib.suppress(ResourceExhausted):
            await world.request(tid, STRANGER)
    await world.code_for(tid)  # the reporter: the 4th of 12
    for n in range(8):
        await world.request(tid, f"0812999900{n:02d}")
    with pytest.raises(ResourceExhausted) as err:
        await world.request(tid, "orang.lain@contoh.id")
    assert str(err.value) == (
        "tracking_id: at most 12 access-code requests per report every 900 s, whatever the "
        "contact; try again in 900 s"
    )
    assert err.value.retry_after_seconds == 900
    with pytest.raises(ResourceExhausted):
        await world.request(tid, PHONE)
    world.clock.advance(timedelta(minutes=15, seconds=1))
    await world.code_for(tid)
    assert len(world.sender.sent) == 2


async def test_the_code_buys_a_token_the_own_report_calls_accept(world: World) -> None:
    tid = world.confidential(state="resolved", case_seq=1)
    issued = await world.verify(tid, await world.code_for(tid))
    assert issued.expires_at == world.clock.now() + timedelta(minutes=30)
    assert issued.token not in repr(issued)
    assert token_hash(issued.token) in world.tokens.rows  # only the hash is kept
    assert issued.token not in str(world.tokens.rows)
    mine = await world.reporter.my_report(tid, issued.token)
    assert mine.contact.phone == "+62812****7890"
    record = await world.reporter.confirm_resolution(tid, issued.token, 5, "")
    assert record.action == "confirmed"
    other = world.confidential()
    with pytest.raises(PermissionDenied) as err:
        await world.reporter.my_report(other, issued.token)  # tokens are per report
    assert str(err.value) == NO_TOKEN_MATCH
    world.clock.advance(timedelta(minutes=30))
    with pytest.raises(PermissionDenied):
        await world.reporter.my_report(tid, issued.token)


async def test_a_code_is_single_use_expires_and_has_bounded_tries(world: World) -> None:
    tid = world.confidential()
    code = await world.code_for(tid)
    await world.verify(tid, code)
    with pytest.raises(PermissionDenied) as used:
        await world.verify(tid, code)
    assert str(used.value) == NO_CODE_MATCH
    late = await world.code_for(tid)
    world.clock.advance(timedelta(minutes=10))
    with pytest.raises(PermissionDenied):
        await world.verify(tid, late)
    world.clock.advance(timedelta(minutes=20))  # the tries above leave the window
    code = await world.code_for(tid)
    for _ in range(4):
        with pytest.raises(PermissionDenied):
            await world.verify(tid, other_than(code))
    world.clock.advance(timedelta(minutes=1))
    await world.verify(tid, code)  # the 5th try, right: accepted
    world.clock.advance(timedelta(minutes=20))
    code = await world.code_for(tid)
    world.access_guard.limit = 100  # the per-code budget alone
    for _ in range(5):
        with pytest.raises(PermissionDenied):
            await world.verify(tid, other_than(code))
    with pytest.raises(PermissionDenied):
        await world.verify(tid, code)  # void after 5 tries


async def test_wrong_follow_up_codes_are_limited_but_never_lock_the_reporter_out(
    world: World,
) -> None:
    """Over the limit a wrong code gets RESOURCE_EXHAUSTED; the right one is let in: a
    60-bit code cannot be guessed, and a stranger who knows the tracking id must not be
    able to lock its reporter out."""
    tid = world.confidential()
    for _ in range(5):
        with pytest.raises(PermissionDenied) as wrong:
            await world.reporter.my_report(tid, "WXYZ-WXYZ-WXYZ")
        assert str(wrong.value) == NO_MATCH
        world.clock.advance(timedelta(minutes=1))
    with pytest.raises(ResourceExhausted) as err:
        await world.reporter.my_report(tid, "WXYZ-WXYZ-WXYZ")
    assert err.value.retry_after_seconds == 10 * 60  # the first failure leaves in 10 min
    assert "too many wrong codes" in str(err.value)
    assert (await world.reporter.my_report(tid, CODE)).report["_id"] == tid
    with pytest.raises(ResourceExhausted):
        await world.reporter.add_information(tid, "WXYZ-WXYZ-WXYZ", "lokasi")
    world.clock.advance(timedelta(minutes=10))
    with pytest.raises(PermissionDenied):  # the 2nd..5th still count: one more is let through
        await world.reporter.my_report(tid, "WXYZ-WXYZ-WXYZ")


async def test_access_codes_count_apart_from_follow_up_codes_and_tokens(world: World) -> None:
    """Wrong follow-up codes and tokens count together; wrong 6-digit access codes count on
    their own, so a stranger's wrong follow-up codes never block the way back in by an
    access code, and over their own limit access codes are refused whatever the code."""
    tid = world.confidential()
    with pytest.raises(PermissionDenied):
        await world.reporter.my_report(tid, new_access_token())
    for _ in range(4):
        with pytest.raises(PermissionDenied):
            await world.reporter.reject_resolution(tid, "WXYZ-WXYZ-WXYZ", "belum")
    with pytest.raises(ResourceExhausted):
        await world.reporter.my_report(tid, "WXYZ-WXYZ-WXYZ")
    code = await world.code_for(tid)
    issued = await world.verify(tid, code)  # not blocked by the others
    assert issued.tracking_id == tid
    world.access_guard.limit = 3  # the right code above was a try too
    code = await world.code_for(tid)
    for _ in range(2):
        with pytest.raises(PermissionDenied):
            await world.verify(tid, other_than(code))
    with pytest.raises(ResourceExhausted) as err:
        await world.verify(tid, code)  # even the right one: 10^6 can be guessed
    assert str(err.value).startswith(
        "tracking_id, contact: too many access-code tries for this report and contact "
        "(at most 3 every 900 s)"
    )


async def test_a_strangers_wrong_codes_neither_use_the_codes_tries_nor_lock_the_reporter_out(
    world: World,
) -> None:
    """The stranger sends codes with another contact until refused, the right code among
    them: none is tried against the pending code (its tries are intact), they are counted
    under the stranger's contact, and the reporter's code still opens the report."""
    tid = world.confidential()
    code = await world.code_for(tid)
    for given in [code, *(other_than(code) for _ in range(4))]:  # the right code: not tried
        with pytest.raises(PermissionDenied) as err:
            await world.verify(tid, given, STRANGER)
        assert str(err.value) == NO_CODE_MATCH
    for _ in range(2):
        with pytest.raises(ResourceExhausted):
            await world.verify(tid, other_than(code), STRANGER)
    with pytest.raises(PermissionDenied):  # another stranger's contact: a count of its own
        await world.verify(tid, code, "orang.lain@contoh.id")
    assert world.codes.rows[tid]["tries"] == 5
    issued = await world.verify(tid, code, "0812 3456 7890")
    assert issued.tracking_id == tid


async def test_a_wrong_contact_gets_the_answer_and_the_path_of_a_wrong_code(
    world: World,
) -> None:
    """The answer does not tell whether the contact was the code's: the same status and
    message, the same calls to the stores."""
    tid = world.confidential()  # a phone and an e-mail address: the code goes to the latter
    code = await world.code_for(tid, EMAIL)
    answers = []
    for given, contact in [(code, PHONE), (other_than(code), EMAIL), (code, STRANGER)]:
        world.calls.log.clear()
        with pytest.raises(PermissionDenied) as err:
            await world.verify(tid, given, contact)
        answers.append((type(err.value), str(err.value), list(world.calls.log)))
    assert (
        answers == [(PermissionDenied, NO_CODE_MATCH, ["claim wrong-access", "take_attempt"])] * 3
    )
    assert world.codes.rows[tid]["tries"] == 4  # only the try with the code's contact


async def test_an_unknown_tracking_id_takes_the_same_path_and_the_same_limit(
    world: World,
) -> None:
    known, unknown = world.confidential(), new_tracking_id()
    paths: dict[str, list[list[str]]] = {known: [], unknown: []}
    for tid in (known, unknown):
        for credential_ in ("WXYZ-WXYZ-WXYZ", new_access_token()):
            world.calls.log.clear()
            with pytest.raises(PermissionDenied):
                await world.reporter.my_report(tid, credential_)
            paths[tid].append(list(world.calls.log))
        world.calls.log.clear()
        with pytest.raises(PermissionDenied):
            await world.verify(tid, "123456")
        paths[tid].append(list(world.calls.log))
        for _ in range(3):  # the access code counted apart: 2 + 3 wrong follow-up codes
            with pytest.raises(PermissionDenied):
                await world.reporter.my_report(tid, "WXYZ-WXYZ-WXYZ")
        with pytest.raises(ResourceExhausted):
            await world.reporter.my_report(tid, "WXYZ-WXYZ-WXYZ")
    assert paths[known] == paths[unknown]
    assert paths[known][0] == ["times wrong", "get", "add wrong"]
    assert paths[known][1] == ["times wrong", "get", "token", "add wrong"]
    assert paths[known][2] == ["claim wrong-access", "take_attempt"]


async def test_the_guard_can_be_switched_off(world: World) -> None:
    world.guard.limit = 0
    tid = world.confidential()
    for _ in range(20):
        with pytest.raises(PermissionDenied):
            await world.reporter.my_report(tid, "WXYZ-WXYZ-WXYZ")
    assert world.attempts.rows == {}
    assert (await world.reporter.my_report(tid, CODE)).report["_id"] == tid


def test_the_sliding_window() -> None:
    now = datetime.fromisoformat("2026-03-01T10:00:00+00:00")
    window = timedelta(minutes=15)
    minutes = [now - timedelta(minutes=m) for m in (20, 14, 10, 3, 2, 1)]
    assert retry_after(minutes, now, 5, window) == 60.0  # the one of 14 min ago leaves in 1
    assert retry_after(minutes[1:4], now, 5, window) is None
    assert retry_after(minutes, now, 0, window) is None
    assert retry_after([now] * 5, now, 5, window) == 900.0


async def test_one_credential_per_request(world: World) -> None:
    token = new_access_token()
    assert credential("", token) == token
    assert credential(CODE, "") == CODE
    with pytest.raises(ValidationError) as both:
        credential(CODE, token)
    assert [v.field for v in both.value.violations] == ["access_token"]
    with pytest.raises(ValidationError) as bad:
        await world.reporter.my_report(world.confidential(), credential("", "not-a-token"))
    assert [v.field for v in bad.value.violations] == ["access_token"]
    assert world.attempts.rows == {}  # malformed: never reaches the lookup, not counted


async def test_a_failing_sender_neither_fails_the_request_nor_logs_the_code(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.sender.fail = True
    tid = world.confidential()
    with caplog.at_level(logging.DEBUG):
        reply = await world.request(tid, PHONE)
    assert "if this contact belongs" in reply
    logged = str(logged_fields(caplog))
    assert "could not send an access code" in logged and "RuntimeError" in logged
    assert "81234567890" not in logged and "gateway refused" not in logged


async def test_the_log_sender_logs_neither_code_nor_contact(
    caplog: pytest.LogCaptureFixture,
) -> None:
    message = AccessCodeMessage(
        "PD9Z-5S2Z-JY0",
        ContactPoint("phone", PHONE),
        "f" * 40,
        "493817",
        datetime.fromisoformat("2026-03-01T10:00:00+00:00"),
    )
    with caplog.at_level(logging.DEBUG):
        await LogCodeSender().send(message)
    assert len(caplog.records) == 1
    text = str(logged_fields(caplog))
    assert "PD9Z-5S2Z-JY0" in text and "phone" in text
    assert "493817" not in text and "81234567890" not in text and "f" * 40 not in text


def test_codes_and_tokens_are_random() -> None:
    codes = {new_access_code() for _ in range(200)}
    assert len(codes) > 190 and all(len(c) == 6 and c.isdigit() for c in codes)
    tokens = {new_access_token() for _ in range(50)}
    assert len(tokens) == 50 and all(t.startswith("lat_") and len(t) == 47 for t in tokens)


def test_access_settings_from_the_environment() -> None:
    defaults = AccessSettings.from_env(Env({}))
    assert defaults == AccessSettings()
    assert (defaults.sender, defaults.code_ttl, defaults.max_wrong_codes) == (
        "collection",
        timedelta(minutes=10),
        5,
    )
    custom = AccessSettings.from_env(
        Env(
            {
                "LAPOR_ACCESS_CODE_SENDER": "log",
                "LAPOR_ACCESS_CODE_TTL_SECONDS": "300",
                "LAPOR_ACCESS_CODE_MAX_ATTEMPTS": "3",
                "LAPOR_ACCESS_CODE_REQUESTS_PER_REPORT": "0",
                "LAPOR_ACCESS_CODE_REQUEST_WINDOW_SECONDS": "60",
                "LAPOR_ACCESS_TOKEN_TTL_SECONDS": "600",
                "LAPOR_REPORTER_MAX_WRONG_CODES": "10",
                "LAPOR_REPORTER_WRONG_CODES_WINDOW_SECONDS": "3600",
            }
        )
    )
    assert custom == AccessSettings(
        "log",
        timedelta(minutes=5),
        3,
        0,
        timedelta(minutes=1),
        timedelta(minutes=10),
        10,
        timedelta(hours=1),
    )
    with pytest.raises(SettingsError, match="LAPOR_ACCESS_CODE_SENDER"):
        AccessSettings.from_env(Env({"LAPOR_ACCESS_CODE_SENDER": "sms"}))
    with pytest.raises(SettingsError, match="LAPOR_ACCESS_CODE_TTL_SECONDS"):
        AccessSettings.from_env(Env({"LAPOR_ACCESS_CODE_TTL_SECONDS": "5"}))

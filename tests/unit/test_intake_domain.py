"""Intake's domain rules (services/intake/domain.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from services.intake.domain import (
    BODY_MAX,
    TITLE_MAX,
    Channel,
    Classification,
    Colour,
    Contact,
    Privacy,
    Status,
    SubmitComplaint,
    colour_for,
    fingerprint,
    receive,
    validate,
)

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
KNOWN = {"51", "51.08", "31.71"}
REPORTER = Contact("Made Wirawan", "+62 812-3456-7890", "made@example.id")


def cmd(**overrides: object) -> SubmitComplaint:
    fields: dict[str, object] = {
        "channel": Channel.WEB,
        "privacy": Privacy.PUBLIC,
        "classification": Classification.COMPLAINT,
        "title": "Jalan berlubang",
        "body": "Sudah tiga bulan jalan rusak.",
        "region_code": "51.08",
        "reporter": REPORTER,
        "idempotency_key": "web-123",
    }
    fields.update(overrides)
    return SubmitComplaint(**fields)  # type: ignore[arg-type]


def fields_of(c: SubmitComplaint) -> list[str]:
    return [v.field for v in validate(c, KNOWN.__contains__)]


def test_a_good_command_has_no_violations() -> None:
    assert fields_of(cmd()) == []
    assert fields_of(cmd(region_code=" 51 ", idempotency_key="", reporter=Contact())) == []


@pytest.mark.parametrize("name", ["channel", "privacy", "classification"])
def test_missing_enum_is_named_with_the_choices(name: str) -> None:
    violations = validate(cmd(**{name: None}), KNOWN.__contains__)
    assert [v.field for v in violations] == [name]
    assert "must be one of" in violations[0].rule


@pytest.mark.parametrize(("name", "limit"), [("title", TITLE_MAX), ("body", BODY_MAX)])
def test_text_rules(name: str, limit: int) -> None:
    assert fields_of(cmd(**{name: ""})) == [name]
    assert fields_of(cmd(**{name: " \t\n "})) == [name]
    assert fields_of(cmd(**{name: "x" * limit})) == []
    too_long = validate(cmd(**{name: "x" * (limit + 1)}), KNOWN.__contains__)
    assert [v.field for v in too_long] == [name]
    assert f"at most {limit}" in too_long[0].rule


@pytest.mark.parametrize("code", ["", "  ", "5", "510", "51.8", "51.08.01", "ab", "51-08"])
def test_region_code_shape(code: str) -> None:
    seen: list[str] = []

    def known(region: str) -> bool:
        seen.append(region)
        return True

    violations = validate(cmd(region_code=code), known)
    assert [v.field for v in violations] == ["region_code"]
    assert seen == []  # the directory is only asked about well-formed codes


def test_region_code_must_exist_and_is_checked_stripped() -> None:
    seen: list[str] = []

    def known(code: str) -> bool:
        seen.append(code)
        return code in KNOWN

    violations = validate(cmd(region_code=" 99.01 "), known)
    assert seen == ["99.01"]
    assert [(v.field, v.rule) for v in violations] == [
        ("region_code", "99.01 is not a province or regency/city code")
    ]


@pytest.mark.parametrize("key", ["a", "A-z_0.9:x", "k" * 128])
def test_good_idempotency_keys(key: str) -> None:
    assert fields_of(cmd(idempotency_key=key)) == []


@pytest.mark.parametrize("key", ["k" * 129, "has space", "slash/", "é", "semi;colon"])
def test_bad_idempotency_keys(key: str) -> None:
    assert fields_of(cmd(idempotency_key=key)) == ["idempotency_key"]


@pytest.mark.parametrize("email", ["made@example.id", " made@example.id ", "a.b+c@mail.co.id"])
def test_good_emails(email: str) -> None:
    assert fields_of(cmd(reporter=Contact(email=email))) == []


@pytest.mark.parametrize("email", ["made", "made@", "@example.id", "a@b", "a@b.c", "a b@c.id"])
def test_bad_emails(email: str) -> None:
    assert fields_of(cmd(reporter=Contact(email=email))) == ["reporter.email"]


@pytest.mark.parametrize("phone", ["+6281234567890", "0812-3456-7890", "0361 222 333"])
def test_good_phones(phone: str) -> None:
    assert fields_of(cmd(reporter=Contact(phone=phone))) == []


@pytest.mark.parametrize("phone", ["12345", "+62abc4567890", "--081234567", "0" * 21])
def test_bad_phones(phone: str) -> None:
    assert fields_of(cmd(reporter=Contact(phone=phone))) == ["reporter.phone"]


def test_reporter_name_length() -> None:
    assert fields_of(cmd(reporter=Contact(name="n" * 200))) == []
    assert fields_of(cmd(reporter=Contact(name="n" * 201))) == ["reporter.name"]


def test_anonymous_reporters_skip_contact_validation() -> None:
    junk = Contact(name="n" * 500, phone="call me", email="not-an-email")
    assert fields_of(cmd(privacy=Privacy.ANONYMOUS, reporter=junk)) == []
    assert fields_of(cmd(privacy=Privacy.CONFIDENTIAL, reporter=junk)) == [
        "reporter.email",
        "reporter.phone",
        "reporter.name",
    ]


def test_all_violations_are_reported_together() -> None:
    bad = cmd(channel=None, title="", body="", region_code="x", idempotency_key="a b")
    assert fields_of(bad) == ["channel", "title", "body", "region_code", "idempotency_key"]


def test_receive_strips_and_keeps_the_reporter() -> None:
    c = receive(
        cmd(
            title="  Jalan  ",
            body="\n isi \n",
            region_code=" 51.08 ",
            reporter=Contact(" Made ", " 0812345678 ", " m@x.id "),
        ),
        "7K3M-9QX2-DAC",
        NOW,
    )
    assert (c.title, c.body, c.region_code) == ("Jalan", "isi", "51.08")
    assert c.reporter == Contact("Made", "+62812345678", "m@x.id")  # phone in E.164
    assert c.reachable
    assert c.tracking_id == "7K3M-9QX2-DAC"
    assert c.received_at == NOW
    assert (c.channel, c.privacy, c.classification) == (
        Channel.WEB,
        Privacy.PUBLIC,
        Classification.COMPLAINT,
    )


def test_receive_without_contact_keeps_no_reporter() -> None:
    c = receive(cmd(reporter=Contact(" ", "", "")), "T", NOW)
    assert c.reporter is None
    assert not c.reachable
    named = receive(cmd(reporter=Contact(name="Made")), "T", NOW)
    assert named.reporter == Contact("Made", "", "")
    assert not named.reachable


def test_anonymous_drops_the_reporter_even_when_given() -> None:
    c = receive(cmd(privacy=Privacy.ANONYMOUS), "T", NOW)
    assert c.reporter is None
    assert not c.reachable
    assert "Made" not in repr(c)
    assert "made@example.id" not in repr(c)


def test_anonymous_fingerprint_does_not_depend_on_the_dropped_reporter() -> None:
    with_reporter = receive(cmd(privacy=Privacy.ANONYMOUS), "T", NOW)
    without = receive(cmd(privacy=Privacy.ANONYMOUS, reporter=Contact()), "T", NOW)
    assert with_reporter.fingerprint == without.fingerprint


def test_idempotency_scope_is_per_channel() -> None:
    web = receive(cmd(idempotency_key="k-1"), "T1", NOW)
    sms = receive(cmd(channel=Channel.SMS, idempotency_key="k-1"), "T2", NOW)
    assert web.idempotency_scope == "web:k-1"
    assert sms.idempotency_scope == "sms:k-1"


def test_without_a_key_every_report_has_its_own_scope() -> None:
    a = receive(cmd(idempotency_key=""), "T1", NOW)
    b = receive(cmd(idempotency_key=""), "T2", NOW)
    assert a.idempotency_scope == "web:none:T1"
    assert a.idempotency_scope != b.idempotency_scope


def test_fingerprint_is_stable() -> None:
    fp = fingerprint(cmd())
    assert fp == fingerprint(cmd())
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert receive(cmd(), "T", NOW).fingerprint == fp
    # Surrounding whitespace and the idempotency key are not part of the request.
    assert fingerprint(cmd(title=" Jalan berlubang ", idempotency_key="other")) == fp


@pytest.mark.parametrize(
    "change",
    [
        {"channel": Channel.SMS},
        {"privacy": Privacy.CONFIDENTIAL},
        {"classification": Classification.ASPIRATION},
        {"title": "Jalan berlubang!"},
        {"body": "Sudah empat bulan jalan rusak."},
        {"region_code": "51"},
    ],
)
def test_any_report_field_change_changes_the_fingerprint(change: dict[str, object]) -> None:
    assert fingerprint(cmd(**change)) != fingerprint(cmd())


@pytest.mark.parametrize(
    "reporter",
    [
        replace(REPORTER, name="Made W."),
        replace(REPORTER, phone="+62 812-3456-7891"),
        replace(REPORTER, email="made@example.com"),
        Contact(),
    ],
)
def test_the_fingerprint_holds_no_trace_of_the_reporter(reporter: Contact) -> None:
    # The fingerprint is stored in clear: a hash of a phone number is brute-forced quickly.
    assert fingerprint(cmd(reporter=reporter)) == fingerprint(cmd())


@pytest.mark.parametrize(
    ("status", "responded", "colour"),
    [
        (Status.RECEIVED, False, Colour.RED),
        (Status.ROUTED, False, Colour.RED),
        (Status.IN_VERIFICATION, False, Colour.RED),
        (Status.ESCALATED, False, Colour.RED),
        (Status.ROUTED, True, Colour.YELLOW),
        (Status.IN_PROGRESS, False, Colour.YELLOW),
        (Status.FOLLOWED_UP, False, Colour.GREEN),
        (Status.CLOSED, False, Colour.GREEN),
        (Status.CLOSED, True, Colour.GREEN),
    ],
)
def test_colour_for(status: Status, responded: bool, colour: Colour) -> None:
    assert colour_for(status, responded) is colour

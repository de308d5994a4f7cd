"""Channel rules, phone numbers, SMS lengths, acknowledgements, credentials, follow-up
codes, keyed contact hashes and privacy raising: pure logic, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.common.errors import FailedPrecondition, PermissionDenied, Unauthenticated
from services.common.settings import Env, SettingsError
from services.intake import sms
from services.intake.abuse import DEDUPE_PREFIX, AbuseHasher, dedupe_bucket, dedupe_key
from services.intake.acknowledgement import FIRST_RESPONSE_DAYS, acknowledgement
from services.intake.channel_auth import (
    ChannelClients,
    authorize,
    config_entry,
    derive_dev_key,
)
from services.intake.channel_wiring import ChannelSettings
from services.intake.channels import idempotency_scope, prepare
from services.intake.domain import (
    Channel,
    Classification,
    Contact,
    InstitutionOrigin,
    Privacy,
    SmsOrigin,
    SocialOrigin,
    SubmitComplaint,
)
from services.intake.followup import (
    canonical,
    hash_follow_up_code,
    new_follow_up_code,
    verify_follow_up_code,
)
from services.intake.limits import Limit
from services.intake.phone import NotAPhoneNumber, to_e164
from services.intake.privacy import check_raise
from services.sla.domain.policy import default_policy_path, load_policy

CMD = SubmitComplaint(
    Channel.WEB, Privacy.PUBLIC, Classification.COMPLAINT, "Judul", "Isi", "51.08"
)


@pytest.mark.parametrize(
    "raw",
    ["08123456789", "628123456789", "+628123456789", "+62 812-3456-789", "0062 812 3456 789",
     "(0812) 3456.789", "+62 0812 3456 789"],
)  # fmt: skip
def test_indonesian_numbers_in_every_common_form(raw: str) -> None:
    assert to_e164(raw) == "+628123456789"


def test_landlines_and_foreign_numbers() -> None:
    assert to_e164("(0361) 222-333") == "+62361222333"
    assert to_e164("+60 12-345 6789") == "+60123456789"


@pytest.mark.parametrize(
    "raw", ["", "12345", "0812", "081234567890123", "+62 abc", "--0812345678", "01234567890",
            "+0812345678",
            "08١٢٣٤٥٦٧٨٩",  # Arabic-Indic digits: \d matches them, SMS cannot reach them
            "0812３４５６７８９"],  # full-width digits
)  # fmt: skip
def test_not_phone_numbers(raw: str) -> None:
    with pytest.raises(NotAPhoneNumber):
        to_e164(raw)


def test_sms_lengths() -> None:
    assert sms.segments("a" * 160) == 1 and sms.segments("a" * 161) == 2
    assert sms.segments("a" * sms.MAX_GSM7_SEPTETS) == sms.MAX_SEGMENTS
    assert sms.gsm7_septets("€") == 2 and sms.gsm7_septets("ą") is None
    assert sms.segments("ą" * 70) == 1 and sms.segments("ą" * 71) == 2
    assert sms.segments("ą" * sms.MAX_UCS2_UNITS) == sms.MAX_SEGMENTS


@pytest.mark.parametrize("duplicate", [False, True])
@pytest.mark.parametrize("channel", [Channel.SMS, Channel.SOCIAL_MEDIA])
def test_acknowledgement_fits_one_sms(channel: Channel, duplicate: bool) -> None:
    text = acknowledgement(channel, "7K3M-9QX2-DAC", duplicate)
    assert "7K3M-9QX2-DAC" in text and sms.fits_one_sms(text)
    assert acknowledgement(Channel.WEB, "7K3M-9QX2-DAC", duplicate) == ""


def test_the_acknowledgement_promises_the_first_response_clock_of_the_sla_policy() -> None:
    clock = load_policy(default_policy_path()).clock("first_response")
    assert clock.whole_days == FIRST_RESPONSE_DAYS
    text = acknowledgement(Channel.SMS, "7K3M-9QX2-DAC", duplicate=False)
    assert f"paling lambat {FIRST_RESPONSE_DAYS} hari" in text
    assert ("hari kerja" in text) == (clock.days == "working")


def test_sms_folds_into_the_report() -> None:
    cmd = SubmitComplaint(
        Channel.SMS,
        Privacy.CONFIDENTIAL,
        Classification.COMPLAINT,
        "",
        "",
        "51.08",
        sms=SmsOrigin("0812 3456 789", "Lampu jalan mati. " * 10),
    )
    prepared, violations = prepare(cmd)
    assert violations == []
    assert prepared.reporter.phone == "+628123456789"
    assert prepared.body == ("Lampu jalan mati. " * 10).strip()
    assert prepared.title.endswith("…") and len(prepared.title) <= 61


def test_channel_fields_belong_to_their_channel() -> None:
    _, v = prepare(CMD.__class__(**{**CMD.__dict__, "sms": SmsOrigin("0812345678", "x")}))
    assert [x.field for x in v] == ["sms"]
    _, v = prepare(CMD.__class__(**{**CMD.__dict__, "channel": Channel.SOCIAL_MEDIA}))
    assert [x.field for x in v] == ["social_media"]


def test_social_and_institution_rules() -> None:
    social = SubmitComplaint(
        Channel.SOCIAL_MEDIA, Privacy.PUBLIC, Classification.COMPLAINT, "t", "b", "51",
        social=SocialOrigin("X", "@warga", "12345"),
    )  # fmt: skip
    prepared, v = prepare(social)
    assert v == [] and prepared.reporter.handle == "x:@warga"
    bad = SubmitComplaint(
        Channel.INSTITUTION_SYSTEM, Privacy.PUBLIC, Classification.COMPLAINT, "t", "b", "51",
        institution=InstitutionOrigin("Bad System!", ""),
    )  # fmt: skip
    assert [x.field for x in prepare(bad)[1]] == [
        "institution_reference.source_system",
        "institution_reference.reference",
    ]
    good = SubmitComplaint(
        Channel.INSTITUTION_SYSTEM, Privacy.PUBLIC, Classification.COMPLAINT, "t", "b", "51",
        idempotency_key="ignored", institution=InstitutionOrigin("aduan-buleleng", "A/17"),
    )  # fmt: skip
    hasher = AbuseHasher(b"k" * 32)
    key = hasher.reference_key("aduan-buleleng", "A/17")
    assert (
        idempotency_scope(good, reference_key=key)
        == f"institution_system:refh:aduan-buleleng:{key}"
    )
    assert "A/17" not in key and len(key) == 40  # the reference is kept only as a keyed hash
    assert key == hasher.reference_key("aduan-buleleng", " A/17 ")
    assert key != hasher.reference_key("aduan-tabanan", "A/17")  # scoped by source system


def test_clients_authenticate_by_key_and_are_bound_to_channels() -> None:
    key = derive_dev_key("secret", "sms-gateway")
    clients = ChannelClients.parse(
        config_entry("sms-gateway", [Channel.SMS], key)
        + ","
        + config_entry("web", [Channel.WEB, Channel.MOBILE_APP], "w" * 32)
    )
    client = clients.authenticate(key)
    assert client.client_id == "sms-gateway"
    authorize(client, Channel.SMS)
    with pytest.raises(PermissionDenied, match="channel"):
        authorize(client, Channel.WEB)
    for wrong in (None, "", "x" * 40):
        with pytest.raises(Unauthenticated, match="x-api-key"):
            clients.authenticate(wrong)


@pytest.mark.parametrize(
    "text", ["nope", "a:web", "a:fax:" + "0" * 64, "a:web:1234", "a:web:" + "0" * 64 + ",a:sms:" + "1" * 64]
)  # fmt: skip
def test_bad_client_settings_name_the_setting(text: str) -> None:
    with pytest.raises(SettingsError, match="LAPOR_INTAKE_CLIENTS"):
        ChannelClients.parse(text)


def test_follow_up_codes() -> None:
    code = new_follow_up_code()
    assert len(canonical(code)) == 12 and code.count("-") == 2
    stored = hash_follow_up_code(code)
    assert canonical(code) not in stored
    assert verify_follow_up_code(stored, code)
    assert verify_follow_up_code([hash_follow_up_code("other"), stored], code.lower())
    assert not verify_follow_up_code(stored, new_follow_up_code())
    assert not verify_follow_up_code([], code) and not verify_follow_up_code(stored, "")
    assert hash_follow_up_code(code) != stored  # salted


def test_contact_hashes_are_keyed_and_dedupe_covers_the_next_window() -> None:
    a, b = AbuseHasher(b"k" * 32), AbuseHasher(b"z" * 32)
    contact = Contact(phone="+628123456789", email="Siti@Contoh.ID")
    assert a.contact_keys(contact) != b.contact_keys(contact)
    assert all("8123456789" not in k for k in a.contact_keys(contact))
    cmd = SubmitComplaint(
        Channel.WEB, Privacy.ANONYMOUS, Classification.COMPLAINT, "t", "b", "51", contact
    )
    window = timedelta(minutes=10)
    at = datetime(2026, 1, 5, 9, 9, tzinfo=UTC)
    first = a.dedupe_keys(cmd, "fp", at, window)
    later = a.dedupe_keys(cmd, "fp", at + timedelta(minutes=9), window)
    assert set(first) & set(later)
    assert not set(first) & set(a.dedupe_keys(cmd, "fp", at + timedelta(minutes=21), window))
    assert a.dedupe_keys(CMD, "fp", at, window) == []  # no contact: nothing to dedupe on


DEDUPE_AT = datetime(2026, 1, 5, 9, 9, tzinfo=UTC)
DEDUPE_WINDOW = timedelta(minutes=10)


def dedupe(cmd: SubmitComplaint, fp: str = "fp", after: timedelta = timedelta(0)) -> set[str]:
    """The keys intake derives: after prepare(), which normalises the phone first."""
    prepared, violations = prepare(cmd)
    assert violations == []
    hasher = AbuseHasher(b"k" * 32)
    return set(hasher.dedupe_keys(prepared, fp, DEDUPE_AT + after, DEDUPE_WINDOW))


def reported_by(contact: Contact, privacy: Privacy = Privacy.PUBLIC) -> SubmitComplaint:
    return SubmitComplaint(
        Channel.WEB, privacy, Classification.COMPLAINT, "Judul", "Isi", "51.08", contact
    )


def test_dedupe_has_two_keys_per_contact_and_the_first_contacts_keys_are_unchanged() -> None:
    a = AbuseHasher(b"k" * 32)
    cmd = reported_by(Contact(phone="+628123456789", email="siti@contoh.id", handle="x:@siti"))
    keys = a.dedupe_keys(cmd, "fp", DEDUPE_AT, DEDUPE_WINDOW)
    assert len(keys) == len(set(keys)) == 6
    bucket = dedupe_bucket(DEDUPE_AT, DEDUPE_WINDOW)
    phone_base = a.digest("dedupe", f"{a.contact_keys(Contact(phone='+628123456789'))[0]}:fp")
    assert keys[:2] == [dedupe_key(bucket, phone_base), dedupe_key(bucket + 1, phone_base)]
    for contact in [Contact(email="siti@contoh.id"), Contact(handle="x:@siti")]:
        alone = a.dedupe_keys(reported_by(contact), "fp", DEDUPE_AT, DEDUPE_WINDOW)
        assert len(alone) == 2 and set(alone) <= set(keys)


def test_a_resend_sharing_only_the_email_is_caught() -> None:
    first = dedupe(reported_by(Contact(phone="0812 3456 789", email="Siti@Contoh.ID")))
    resend = dedupe(reported_by(Contact(email=" siti@contoh.id ")), after=timedelta(minutes=9))
    assert first & resend
    other = dedupe(reported_by(Contact(phone="0812 3456 789")), after=timedelta(minutes=9))
    assert first & other and not resend & other  # the phone links the first to this one


def test_a_resend_sharing_only_the_phone_however_written_is_caught() -> None:
    first = dedupe(reported_by(Contact(phone="08123456789", email="siti@contoh.id")))
    resend = dedupe(reported_by(Contact(phone="+62 812-3456-789", email="lain@contoh.id")))
    assert first & resend
    # sent at 9:09 in 10-minute windows: caught until the next window ends (9:20)
    later = dedupe(reported_by(Contact(phone="+62 812-3456-789")), after=timedelta(minutes=10))
    assert first & later
    expired = dedupe(reported_by(Contact(phone="+62 812-3456-789")), after=timedelta(minutes=11))
    assert not first & expired


def test_a_different_report_or_reporter_is_not_caught() -> None:
    contact = Contact(phone="08123456789", email="siti@contoh.id", handle="x:@siti")
    first = dedupe(reported_by(contact))
    assert not first & dedupe(reported_by(contact), fp="another text")
    assert not first & dedupe(reported_by(Contact(phone="0812 9999 0000", email="lain@contoh.id")))


def test_anonymous_reports_get_dedupe_keys_of_hashes_only() -> None:
    contact = Contact(name="Siti", phone="0812 3456 789", email="siti@contoh.id")
    keys = dedupe(reported_by(contact, Privacy.ANONYMOUS))
    assert len(keys) == 4
    again = dedupe(reported_by(Contact(email="siti@contoh.id"), Privacy.ANONYMOUS))
    assert keys & again
    for key in keys:
        bucket, digest = key.removeprefix(DEDUPE_PREFIX).split(":")
        assert bucket.isdigit() and len(digest) == 40 and set(digest) <= set("0123456789abcdef")
        assert "8123456789" not in key and "siti" not in key and "contoh" not in key


def test_limit_windows() -> None:
    limit = Limit("client", 5, timedelta(minutes=1))
    index, end = limit.window_of(datetime(2026, 1, 5, 9, 0, 30, tzinfo=UTC))
    assert end == datetime(2026, 1, 5, 9, 1, tzinfo=UTC)
    assert limit.window_of(datetime(2026, 1, 5, 9, 0, 59, tzinfo=UTC))[0] == index


def test_privacy_only_rises() -> None:
    assert check_raise(Privacy.PUBLIC, Privacy.CONFIDENTIAL)
    assert check_raise(Privacy.CONFIDENTIAL, Privacy.ANONYMOUS)
    assert not check_raise(Privacy.CONFIDENTIAL, Privacy.CONFIDENTIAL)
    for current, lower in [
        (Privacy.CONFIDENTIAL, Privacy.PUBLIC),
        (Privacy.ANONYMOUS, Privacy.CONFIDENTIAL),
    ]:
        with pytest.raises(FailedPrecondition, match="never lowered"):
            check_raise(current, lower)


def test_the_anonymous_scope_retention_setting() -> None:
    client = config_entry("web-portal", [Channel.WEB], "s" * 40)
    base = {"LAPOR_ABUSE_HASH_KEY": "k" * 32, "LAPOR_INTAKE_CLIENTS": client}
    assert ChannelSettings.from_env(Env(base)).anonymous_scope_retention == timedelta(days=7)
    kept = ChannelSettings.from_env(Env({**base, "LAPOR_INTAKE_ANONYMOUS_SCOPE_DAYS": "0"}))
    assert kept.anonymous_scope_retention == timedelta(0)
    with pytest.raises(SettingsError, match="LAPOR_INTAKE_ANONYMOUS_SCOPE_DAYS"):
        ChannelSettings.from_env(Env({**base, "LAPOR_INTAKE_ANONYMOUS_SCOPE_DAYS": "-1"}))


def test_the_identity_retention_setting() -> None:
    client = config_entry("web-portal", [Channel.WEB], "s" * 40)
    base = {"LAPOR_ABUSE_HASH_KEY": "k" * 32, "LAPOR_INTAKE_CLIENTS": client}
    assert ChannelSettings.from_env(Env(base)).identity_retention == timedelta(days=365)
    shorter = ChannelSettings.from_env(Env({**base, "LAPOR_INTAKE_IDENTITY_RETENTION_DAYS": "30"}))
    assert shorter.identity_retention == timedelta(days=30)
    kept = ChannelSettings.from_env(Env({**base, "LAPOR_INTAKE_IDENTITY_RETENTION_DAYS": "0"}))
    assert kept.identity_retention == timedelta(0)
    for bad in ("-1", "a year"):
        with pytest.raises(SettingsError, match="LAPOR_INTAKE_IDENTITY_RETENTION_DAYS"):
            ChannelSettings.from_env(Env({**base, "LAPOR_INTAKE_IDENTITY_RETENTION_DAYS": bad}))

"""The webhook sender's rules without a network: the text a reporter reads (one SMS: GSM-7
only, at most 160 characters, with the code, the tracking id and the real validity) and the
settings, refused at start with the setting's name (and never its value: the URL may hold a
key)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from services.common.ids import new_tracking_id
from services.common.settings import Env, Secret, SettingsError
from services.intake.access_codes import (
    AccessCodeMessage,
    AccessSettings,
    ContactPoint,
    WebhookSettings,
    code_text,
    new_access_code,
)
from services.intake.access_webhook import webhook_body

# GSM 03.38 default alphabet (the extension table's characters take two septets: excluded).
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
URL = "LAPOR_ACCESS_CODE_WEBHOOK_URL"
TOKEN = "LAPOR_ACCESS_CODE_WEBHOOK_TOKEN"
TIMEOUT = "LAPOR_ACCESS_CODE_WEBHOOK_TIMEOUT_SECONDS"


def test_the_alphabet_is_gsm7s() -> None:
    assert len(GSM7) == 127  # 128 positions, one of them the escape to the extension table


@pytest.mark.parametrize(
    ("seconds", "minutes"), [(60, 1), (90, 1), (600, 10), (3599, 59), (86_400, 1440)]
)
def test_the_text_fits_one_sms(seconds: int, minutes: int) -> None:
    for code in ("000000", "999999", new_access_code()):
        tid = new_tracking_id()
        text = code_text(tid, code, timedelta(seconds=seconds))
        assert len(text) <= 160, text
        assert set(text) <= GSM7, set(text) - GSM7
        assert f"laporan {tid}: {code}." in text
        assert f"Berlaku {minutes} menit." in text
        assert text.startswith("Kode akses LAPOR!") and "Jangan berikan" in text


def message(kind: str, value: str) -> AccessCodeMessage:
    return AccessCodeMessage(
        "PD9Z-5S2Z-JY0",
        ContactPoint(kind, value),
        "f" * 40,
        "493817",
        datetime.fromisoformat("2026-03-01T10:00:00+00:00"),
    )


def test_the_body_names_the_channel_and_hides_the_tracking_id_from_the_reference() -> None:
    sms = json.loads(webhook_body(message("phone", "+6281234567890"), timedelta(minutes=5), "r1"))
    assert sms == {
        "channel": "sms",
        "to": "+6281234567890",
        "text": code_text("PD9Z-5S2Z-JY0", "493817", timedelta(minutes=5)),
        "reference": "r1",
    }
    mail = json.loads(webhook_body(message("email", "siti@contoh.id"), timedelta(minutes=5), "r2"))
    assert (mail["channel"], mail["to"]) == ("email", "siti@contoh.id")


def webhook_env(**overrides: str) -> Env:
    values = {
        "LAPOR_ACCESS_CODE_SENDER": "webhook",
        URL: "https://sms.contoh.go.id/kirim?key=rahasia-gateway",
        TOKEN: "token-rahasia-1708",
    }
    values.update(overrides)
    return Env({k: v for k, v in values.items() if v != "-"})


def test_webhook_settings_from_the_environment() -> None:
    settings = AccessSettings.from_env(webhook_env())
    assert settings.sender == "webhook"
    assert settings.webhook == WebhookSettings(
        "https://sms.contoh.go.id/kirim?key=rahasia-gateway", Secret("token-rahasia-1708"), 5.0
    )
    assert "rahasia" not in repr(settings)
    custom = AccessSettings.from_env(webhook_env(**{TIMEOUT: "2.5"})).webhook
    assert custom is not None and custom.timeout_seconds == 2.5
    for local in ("http://localhost:8080/kirim", "http://127.0.0.1/kirim", "http://[::1]:81/"):
        assert AccessSettings.from_env(webhook_env(**{URL: local})).webhook is not None
    # other senders neither need nor read the webhook's settings
    other = AccessSettings.from_env(Env({URL: "ftp://x", "LAPOR_ACCESS_CODE_SENDER": "log"}))
    assert other.webhook is None


@pytest.mark.parametrize(
    ("overrides", "setting", "says"),
    [
        ({URL: "-"}, URL, "required when LAPOR_ACCESS_CODE_SENDER=webhook"),
        ({URL: "http://sms.contoh.go.id/kirim?key=rahasia"}, URL, "must use https://"),
        ({URL: "http://10.0.0.5/kirim?key=rahasia"}, URL, "must use https://"),
        ({URL: "ftp://sms.contoh.go.id/rahasia"}, URL, "https:// URL"),
        ({URL: "sms.contoh.go.id/kirim?key=rahasia"}, URL, "https:// URL"),
        ({URL: "https:///kirim?key=rahasia"}, URL, "with a host"),
        ({URL: "https://sms.contoh.go.id:99999/rahasia"}, URL, "not a URL"),
        ({URL: "https://u:rahasia@sms.contoh.go.id/"}, URL, "must not hold credentials"),
        ({TOKEN: "-"}, TOKEN, "required"),
        ({TIMEOUT: "0"}, TIMEOUT, "outside"),
        ({TIMEOUT: "lima"}, TIMEOUT, "not a number"),
    ],
)
def test_bad_webhook_settings_stop_the_start_naming_the_setting(
    overrides: dict[str, str], setting: str, says: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        AccessSettings.from_env(webhook_env(**overrides))
    text = str(refused.value)
    assert text.startswith(setting) and says in text
    assert "rahasia" not in text

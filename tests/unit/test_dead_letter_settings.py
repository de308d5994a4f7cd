"""LAPOR_DEAD_LETTER_RETENTION_DAYS (services/common/settings.py)."""

from __future__ import annotations

import pytest

from services.common.deadletter import DEFAULT_RETENTION_DAYS, DeadLetters
from services.common.settings import CommonSettings, Env, SettingsError

GOOD = {
    "LAPOR_KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9092",
    "LAPOR_MONGODB_URI": "mongodb://db-1:27017/",
    "LAPOR_GRPC_PORT": "50051",
    "LAPOR_METRICS_PORT": "9101",
}


def settings(**changes: str) -> CommonSettings:
    return CommonSettings.from_env("notify", Env({**GOOD, **changes}))


def test_dead_letters_are_kept_thirty_days_by_default() -> None:
    assert settings().dead_letter_retention_days == 30 == DEFAULT_RETENTION_DAYS


def test_the_retention_is_read_in_days() -> None:
    s = settings(LAPOR_DEAD_LETTER_RETENTION_DAYS=" 7 ")
    assert s.dead_letter_retention_days == 7
    assert DeadLetters(None, s.dead_letter_retention_days).expire_after_seconds == 7 * 86400  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [("0", "outside 1..3650"), ("3651", "outside 1..3650"), ("30d", "not an integer")],
)
def test_a_bad_retention_is_named(raw: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=f"^LAPOR_DEAD_LETTER_RETENTION_DAYS.*{problem}"):
        settings(LAPOR_DEAD_LETTER_RETENTION_DAYS=raw)

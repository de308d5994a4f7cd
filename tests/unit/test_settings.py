"""Settings from the environment (services/common/settings.py)."""

from __future__ import annotations

import pytest

from services.common.settings import CommonSettings, Env, Secret, SettingsError

URI = "mongodb://lapor:s3cr3t-pw@db-1:27017,db-2:27017/?replicaSet=rs0"
GOOD = {
    "LAPOR_KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9092, kafka-2:9092",
    "LAPOR_MONGODB_URI": URI,
    "LAPOR_GRPC_PORT": "50051",
    "LAPOR_METRICS_PORT": " 9101 ",
}


def settings(**changes: str | None) -> CommonSettings:
    env = {**GOOD, **changes}
    return CommonSettings.from_env("intake", Env({k: v for k, v in env.items() if v is not None}))


def test_happy_path_with_defaults() -> None:
    s = settings()
    assert s.service == "intake"
    assert s.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert s.kafka.security_protocol == "PLAINTEXT"
    assert s.kafka.sasl_password is None
    assert s.kafka.fetch_max_wait_ms == 500  # Kafka's own: its brokers answer on new data
    assert s.mongodb_uri.reveal() == URI
    assert s.mongodb_database == "lapor_intake"
    assert (s.grpc_host, s.grpc_port, s.metrics_port) == ("127.0.0.1", 50051, 9101)
    assert s.log_level == "INFO"


def test_optional_settings_are_read() -> None:
    s = settings(
        LAPOR_MONGODB_DATABASE="other",
        LAPOR_GRPC_HOST="0.0.0.0",
        LAPOR_LOG_LEVEL="DEBUG",
        LAPOR_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        LAPOR_KAFKA_SASL_PASSWORD="kafka-pw",
        LAPOR_KAFKA_FETCH_MAX_WAIT_MS="20",
    )
    assert (s.mongodb_database, s.grpc_host, s.log_level) == ("other", "0.0.0.0", "DEBUG")
    assert s.kafka.fetch_max_wait_ms == 20
    assert s.kafka.security_protocol == "SASL_SSL"
    assert s.kafka.sasl_password == Secret("kafka-pw")


@pytest.mark.parametrize(
    "name",
    ["LAPOR_KAFKA_BOOTSTRAP_SERVERS", "LAPOR_MONGODB_URI", "LAPOR_GRPC_PORT", "LAPOR_METRICS_PORT"],
)
@pytest.mark.parametrize("missing", [None, "", "   "])
def test_missing_required_setting_is_named(name: str, missing: str | None) -> None:
    with pytest.raises(SettingsError, match=f"^{name} is required but not set$"):
        settings(**{name: missing})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LAPOR_GRPC_PORT", "abc"),
        ("LAPOR_GRPC_PORT", "70000"),
        ("LAPOR_METRICS_PORT", "-1"),
        ("LAPOR_METRICS_PORT", "91.5"),
        ("LAPOR_KAFKA_BOOTSTRAP_SERVERS", "localhost"),
        ("LAPOR_KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2"),
        ("LAPOR_MONGODB_URI", "http://x"),
        ("LAPOR_LOG_LEVEL", "LOUD"),
        ("LAPOR_KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("LAPOR_KAFKA_FETCH_MAX_WAIT_MS", "0"),
        ("LAPOR_KAFKA_FETCH_MAX_WAIT_MS", "fast"),
    ],
)
def test_malformed_setting_is_named(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}\\b"):
        settings(**{name: value})


def test_port_bounds() -> None:
    assert settings(LAPOR_GRPC_PORT="0").grpc_port == 0
    assert settings(LAPOR_GRPC_PORT="65535").grpc_port == 65535
    with pytest.raises(SettingsError, match="outside 0..65535"):
        settings(LAPOR_GRPC_PORT="65536")


def test_bad_mongodb_uri_message_does_not_echo_it() -> None:
    with pytest.raises(SettingsError) as err:
        settings(LAPOR_MONGODB_URI="mongo://lapor:s3cr3t-pw@db")
    assert "s3cr3t" not in str(err.value)


def test_secret_never_shows_its_value() -> None:
    secret = Secret("hunter2")
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", format(secret), f"{secret!s}"]
    for text in shown:
        assert "hunter2" not in text
    assert repr(secret) == "Secret('********')"
    assert "hunter2" not in repr([secret, {"k": secret}])
    assert secret.reveal() == "hunter2"
    assert secret == Secret("hunter2") and secret != Secret("other")


def test_settings_repr_does_not_leak_credentials() -> None:
    s = settings(LAPOR_KAFKA_SASL_PASSWORD="kafka-pw")
    text = f"{s!r} {s}"
    assert "s3cr3t" not in text
    assert "kafka-pw" not in text
    assert "mongodb_uri=Secret('********')" in text

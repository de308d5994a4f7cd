"""Typed settings read from the environment, failing fast with the setting's name."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it."""


class Secret:
    """A value that never shows itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


class Env:
    """Reads settings from a mapping (os.environ by default)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if environ is None else environ

    def text(self, name: str, default: str | None = None) -> str:
        value = self._env.get(name)
        if value is None or value.strip() == "":
            if default is None:
                raise SettingsError(f"{name} is required but not set")
            return default
        return value.strip()

    def secret(self, name: str, default: str | None = None) -> Secret:
        return Secret(self.text(name, default))

    def optional(self, name: str) -> str | None:
        value = self._env.get(name)
        return value.strip() if value and value.strip() else None

    def integer(
        self, name: str, default: int | None = None, *, low: int = 0, high: int = 2**31
    ) -> int:
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":
            if default is None:
                raise SettingsError(f"{name} is required but not set")
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not an integer") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}={value} is outside {low}..{high}")
        return value

    def number(self, name: str, default: float, *, low: float = 0.0, high: float = 1e9) -> float:
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = float(raw.strip())
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a number") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}={value} is outside {low}..{high}")
        return value

    def port(self, name: str, default: int | None = None) -> int:
        return self.integer(name, default, low=0, high=65535)

    def hostports(self, name: str, default: str | None = None) -> str:
        value = self.text(name, default)
        parts = [p.strip() for p in value.split(",")]
        for part in parts:
            if not _HOSTPORT.match(part):
                raise SettingsError(f"{name}={value!r}: {part!r} is not host:port")
        return ",".join(parts)

    def mongodb_uri(self, name: str) -> Secret:
        value = self.text(name)
        if not value.startswith(("mongodb://", "mongodb+srv://")):
            raise SettingsError(f"{name} must start with mongodb:// or mongodb+srv://")
        return Secret(value)

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.text(name, default)
        if value not in choices:
            raise SettingsError(f"{name}={value!r} must be one of {', '.join(choices)}")
        return value


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str
    security_protocol: str
    sasl_mechanism: str | None
    sasl_username: str | None
    sasl_password: Secret | None
    ssl_cafile: str | None
    # How long a broker may hold a consumer's fetch on a quiet partition. Kafka answers as
    # soon as data arrives, so the wait costs no latency there and its default (500 ms)
    # keeps idle consumers from polling; the embedded mock broker answers only when the
    # wait is over, so the embedded stack sets 20 ms (services/stack/supervisor.py).
    fetch_max_wait_ms: int = 500

    @classmethod
    def from_env(cls, env: Env) -> KafkaSettings:
        password = env.optional("LAPOR_KAFKA_SASL_PASSWORD")
        return cls(
            bootstrap_servers=env.hostports("LAPOR_KAFKA_BOOTSTRAP_SERVERS"),
            security_protocol=env.choice(
                "LAPOR_KAFKA_SECURITY_PROTOCOL",
                ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
                "PLAINTEXT",
            ),
            sasl_mechanism=env.optional("LAPOR_KAFKA_SASL_MECHANISM"),
            sasl_username=env.optional("LAPOR_KAFKA_SASL_USERNAME"),
            sasl_password=Secret(password) if password else None,
            ssl_cafile=env.optional("LAPOR_KAFKA_SSL_CAFILE"),
            fetch_max_wait_ms=env.integer("LAPOR_KAFKA_FETCH_MAX_WAIT_MS", 500, low=1, high=30000),
        )


@dataclass(frozen=True)
class CommonSettings:
    """What every service needs: where Kafka and MongoDB are, where to listen."""

    service: str
    kafka: KafkaSettings
    mongodb_uri: Secret
    mongodb_database: str
    grpc_host: str
    grpc_port: int
    metrics_port: int
    log_level: str
    outbox_replay: bool = False
    # Days a parked event stays in the service's dead_letters collection before the
    # database deletes it (TTL index, services/common/deadletter.py): parked events can
    # hold a confidential report's title and body.
    dead_letter_retention_days: int = 30
    # Seconds the outbox relay waits for new events when no write in this process woke it:
    # events written on another replica wait up to this for the active relay (the lease's
    # holder, services/common/lease.py), which polls its database this often when idle.
    outbox_poll_seconds: float = 0.5
    # Seconds a lease (the active outbox relay, sla's sweep) lasts without renewal: how long
    # a killed holder's job waits before another replica takes it over.
    lease_ttl_seconds: float = 10.0
    # This process's name as a lease holder (LAPOR_INSTANCE_ID: the pod's name in
    # Kubernetes). Unique among a service's running processes and kept across a restart, so a
    # restarted process takes its own lease back at once instead of after the TTL. None:
    # host name, process id and a random suffix (a restart then waits for the TTL).
    instance_id: str | None = None

    @classmethod
    def from_env(cls, service: str, env: Env | None = None) -> CommonSettings:
        env = env or Env()
        lease_ttl = env.number("LAPOR_LEASE_TTL_SECONDS", 10.0, low=1.0, high=600.0)
        poll = env.number("LAPOR_OUTBOX_POLL_SECONDS", 0.5, low=0.01, high=60.0)
        if poll > lease_ttl / 4:
            raise SettingsError(
                f"LAPOR_OUTBOX_POLL_SECONDS={poll} must be at most a quarter of "
                f"LAPOR_LEASE_TTL_SECONDS ({lease_ttl}): the active relay renews its lease "
                "between rounds"
            )
        return cls(
            service=service,
            kafka=KafkaSettings.from_env(env),
            mongodb_uri=env.mongodb_uri("LAPOR_MONGODB_URI"),
            mongodb_database=env.text("LAPOR_MONGODB_DATABASE", f"lapor_{service}"),
            grpc_host=env.text("LAPOR_GRPC_HOST", "127.0.0.1"),
            grpc_port=env.port("LAPOR_GRPC_PORT"),
            metrics_port=env.port("LAPOR_METRICS_PORT"),
            log_level=env.choice("LAPOR_LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
            outbox_replay=env.choice("LAPOR_OUTBOX_REPLAY", ("0", "1"), "0") == "1",
            dead_letter_retention_days=env.integer(
                "LAPOR_DEAD_LETTER_RETENTION_DAYS", 30, low=1, high=3650
            ),
            outbox_poll_seconds=poll,
            lease_ttl_seconds=lease_ttl,
            instance_id=env.text("LAPOR_INSTANCE_ID", "").strip() or None,
        )

"""The CLI talks plain gRPC only to this machine: anywhere else over TLS, so an API key or
an officer's token never crosses a network in clear text."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from services.cli import connection
from services.cli.connection import CliError, open_channel


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(
        connection.grpc, "insecure_channel", lambda a: calls.append(("plain", a)) or "plain"
    )
    monkeypatch.setattr(
        connection.grpc, "secure_channel", lambda a, c: calls.append(("tls", a)) or "tls"
    )
    monkeypatch.delenv("LAPOR_CLI_INSECURE", raising=False)
    monkeypatch.delenv("LAPOR_CLI_CA_FILE", raising=False)
    return calls


@pytest.mark.parametrize("address", ["127.0.0.1:50051", "localhost:50052", "[::1]:50051"])
def test_this_machine_is_plain(opened: list[tuple[str, object]], address: str) -> None:
    open_channel(address)
    assert opened == [("plain", address)]


@pytest.mark.parametrize("address", ["lapor.example.go.id:443", "10.0.0.7:50051", "[fd00::1]:1"])
def test_anywhere_else_is_tls(opened: list[tuple[str, object]], address: str) -> None:
    open_channel(address)
    assert opened == [("tls", address)]


def test_plain_elsewhere_only_on_purpose(
    opened: list[tuple[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAPOR_CLI_INSECURE", "1")
    open_channel("10.0.0.7:50051")
    assert opened == [("plain", "10.0.0.7:50051")]


def test_a_ca_bundle_is_read_and_a_missing_one_is_a_clear_error(
    opened: list[tuple[str, object]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LAPOR_CLI_CA_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(CliError, match="LAPOR_CLI_CA_FILE"):
        open_channel("lapor.example.go.id:443")
    assert opened == []
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    seen: list[bytes | None] = []
    real = grpc.ssl_channel_credentials
    monkeypatch.setattr(
        connection.grpc,
        "ssl_channel_credentials",
        lambda root_certificates=None: seen.append(root_certificates) or real(),
    )
    monkeypatch.setenv("LAPOR_CLI_CA_FILE", str(bundle))
    open_channel("lapor.example.go.id:443")
    assert seen == [bundle.read_bytes()] and opened == [("tls", "lapor.example.go.id:443")]

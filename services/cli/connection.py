"""Where the services are and where the embedded stack's data folder is, for every `lapor`
command: an explicit flag, else an environment variable, else data/stack.json written by
`make run` (in LAPOR_DATA_DIR, default ./data), else the default port."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import grpc

INTAKE_DEFAULT = "127.0.0.1:50051"
ROUTING_DEFAULT = "127.0.0.1:50052"


class CliError(Exception):
    """A problem found by the client itself (credentials, addresses, files): one line,
    printed as `error: ...`, exit 2."""


def data_dir() -> Path:
    return Path(os.environ.get("LAPOR_DATA_DIR", "data"))


def _address(service: str, explicit: str | None, env_var: str, default: str) -> str:
    if explicit:
        return explicit
    if os.environ.get(env_var):
        return os.environ[env_var]
    stack = data_dir() / "stack.json"
    if stack.exists():
        try:
            return str(json.loads(stack.read_text())[f"{service}_grpc"])
        except (OSError, ValueError, KeyError) as exc:
            raise CliError(f"cannot read {service}'s address from {stack}: {exc!r}") from None
    return default


def intake_address(explicit: str | None) -> str:
    """--intake, LAPOR_INTAKE_ADDR, data/stack.json, 127.0.0.1:50051."""
    return _address("intake", explicit, "LAPOR_INTAKE_ADDR", INTAKE_DEFAULT)


def routing_address(explicit: str | None) -> str:
    """--routing, LAPOR_ROUTING_ADDR, data/stack.json, 127.0.0.1:50052."""
    return _address("routing", explicit, "LAPOR_ROUTING_ADDR", ROUTING_DEFAULT)


def _loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_channel(address: str) -> grpc.Channel:
    """A channel to `address`: plain on this machine (the embedded stack), TLS anywhere else,
    so an API key or a token never crosses a network in clear text. TLS trusts the system's
    CAs, or the PEM bundle in LAPOR_CLI_CA_FILE; LAPOR_CLI_INSECURE=1 allows a plain channel
    to another host on purpose (a private test network)."""
    if _loopback(address) or os.environ.get("LAPOR_CLI_INSECURE") == "1":
        return grpc.insecure_channel(address)
    ca_file = os.environ.get("LAPOR_CLI_CA_FILE")
    try:
        roots = Path(ca_file).read_bytes() if ca_file else None
    except OSError as exc:
        raise CliError(f"cannot read LAPOR_CLI_CA_FILE {ca_file}: {exc.strerror}") from None
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=roots))

"""Where the services are and where the embedded stack's data folder is, for every `lapor`
command: an explicit flag, else an environment variable, else data/stack.json written by
`make run` (in LAPOR_DATA_DIR, default ./data), else the default port."""

from __future__ import annotations

import json
import os
from pathlib import Path

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

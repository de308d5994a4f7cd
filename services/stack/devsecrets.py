"""Secrets for the embedded stack, generated once and kept with its data, and each
service's development settings built from them (services/<name>/devenv.py)."""

from __future__ import annotations

import base64
import importlib
import json
import os
import secrets as random
from pathlib import Path


def generate() -> dict[str, str]:
    return {
        "identity_keys": f"local1:{base64.b64encode(os.urandom(32)).decode()}",
        "jwt_key": random.token_urlsafe(48),
        "jwt_issuer": "lapor-dev",
        "channel_secret": random.token_urlsafe(32),
        "abuse_key": random.token_urlsafe(32),
    }


def load_or_create(path: Path) -> dict[str, str]:
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        fresh = generate()
        missing = {k: v for k, v in fresh.items() if k not in stored}
        if not missing:
            return stored
        stored.update(missing)
    else:
        stored = generate()
    path.write_text(json.dumps(stored, indent=2))
    path.chmod(0o600)
    return stored


def service_env(service: str, secrets: dict[str, str]) -> dict[str, str]:
    module = importlib.import_module(f"services.{service}.devenv")
    env: dict[str, str] = module.dev_env(secrets)
    return env

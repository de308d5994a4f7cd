"""Settings intake gets on the embedded stack (`make run`, e2e tests)."""

from __future__ import annotations


def dev_env(secrets: dict[str, str]) -> dict[str, str]:
    return {"LAPOR_IDENTITY_KEYS": secrets["identity_keys"]}

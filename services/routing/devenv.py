"""Settings this service gets on the embedded stack (`make run`, e2e tests)."""

from __future__ import annotations


def dev_env(secrets: dict[str, str]) -> dict[str, str]:
    return {"LAPOR_JWT_KEY": secrets["jwt_key"], "LAPOR_JWT_ISSUER": secrets["jwt_issuer"]}

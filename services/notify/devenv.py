"""Settings this service gets on the embedded stack (`make run`, e2e tests).

`secrets` holds values generated once per data folder (services/stack/__main__.py) or per
test session: a new setting that needs a secret takes it from there.
"""

from __future__ import annotations


def dev_env(secrets: dict[str, str]) -> dict[str, str]:
    return {}

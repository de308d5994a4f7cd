"""Settings intake gets on the embedded stack (`make run`, e2e tests).

Every channel has a development client whose API key is derived from the stack's
``channel_secret`` (see ``dev_api_key``); ``dev-console`` may use every channel (the
`lapor` CLI and the tests use it).
"""

from __future__ import annotations

from services.intake.channel_auth import config_entry, derive_dev_key
from services.intake.domain import Channel

DEV_CLIENTS: dict[str, list[Channel]] = {
    "dev-web": [Channel.WEB],
    "dev-sms": [Channel.SMS],
    "dev-mobile-app": [Channel.MOBILE_APP],
    "dev-social-media": [Channel.SOCIAL_MEDIA],
    "dev-institution-system": [Channel.INSTITUTION_SYSTEM],
    "dev-console": list(Channel),
}
CONSOLE_CLIENT = "dev-console"


def dev_api_key(secrets: dict[str, str], client_id: str = CONSOLE_CLIENT) -> str:
    return derive_dev_key(secrets["channel_secret"], client_id)


def dev_env(secrets: dict[str, str]) -> dict[str, str]:
    clients = ",".join(
        config_entry(client_id, channels, dev_api_key(secrets, client_id))
        for client_id, channels in DEV_CLIENTS.items()
    )
    return {
        "LAPOR_IDENTITY_KEYS": secrets["identity_keys"],
        "LAPOR_INTAKE_CLIENTS": clients,
        "LAPOR_ABUSE_HASH_KEY": secrets["abuse_key"],
        # Officers' tokens for EvidenceService: the same issuer and key as routing's.
        "LAPOR_JWT_KEY": secrets["jwt_key"],
        "LAPOR_JWT_ISSUER": secrets["jwt_issuer"],
        # Generous on a laptop and in tests: many reports from one test contact.
        "LAPOR_INTAKE_LIMIT_PER_CONTACT": "200",
        "LAPOR_INTAKE_LIMIT_CONTACT_WINDOW_SECONDS": "60",
        "LAPOR_INTAKE_LIMIT_PER_CLIENT": "1000000",
        "LAPOR_INTAKE_LIMIT_CLIENT_WINDOW_SECONDS": "60",
    }

"""Channel clients and their API keys: who may hand reports to intake, on which channels.

Configured as ``LAPOR_INTAKE_CLIENTS="client_id:channel|channel:sha256-hex-of-key,..."``.
Only the SHA-256 of each key is configured and kept: API keys are long random strings, so
an unsalted fast hash cannot be reversed, and a leaked configuration reveals no key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from services.common.errors import PermissionDenied, Unauthenticated
from services.common.settings import SettingsError
from services.intake.domain import Channel

SETTING = "LAPOR_INTAKE_CLIENTS"
CLIENT_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
MIN_KEY_LENGTH = 24


@dataclass(frozen=True)
class ChannelClient:
    client_id: str
    channels: frozenset[Channel]


def key_digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def derive_dev_key(channel_secret: str, client_id: str) -> str:
    """The development key of a client on the embedded stack: HMAC(channel_secret, id)."""
    return hmac.new(channel_secret.encode(), client_id.encode(), hashlib.sha256).hexdigest()


class ChannelClients:
    def __init__(self, clients: dict[str, ChannelClient]) -> None:
        self._by_digest = clients

    @classmethod
    def parse(cls, text: str) -> ChannelClients:
        clients: dict[str, ChannelClient] = {}
        seen: set[str] = set()
        for position, item in enumerate(text.split(","), start=1):
            parts = item.strip().split(":")
            if len(parts) != 3:
                raise SettingsError(f"{SETTING}: entry {position} is not 'id:channels:sha256hex'")
            client_id, channels, digest = (p.strip() for p in parts)
            if not CLIENT_ID.match(client_id) or client_id in seen:
                raise SettingsError(f"{SETTING}: entry {position} has a bad or repeated id")
            try:
                allowed = frozenset(Channel(c.strip()) for c in channels.split("|"))
            except ValueError:
                raise SettingsError(
                    f"{SETTING}: client {client_id!r}: channels must be among {'|'.join(Channel)}"
                ) from None
            digest = digest.lower()
            if not SHA256_HEX.match(digest) or digest in clients:
                raise SettingsError(
                    f"{SETTING}: client {client_id!r}: key must be a distinct sha256 hex digest"
                )
            seen.add(client_id)
            clients[digest] = ChannelClient(client_id, allowed)
        return cls(clients)

    def authenticate(self, api_key: str | None) -> ChannelClient:
        if not api_key:
            raise Unauthenticated("x-api-key: missing; every channel client needs its API key")
        client = self._by_digest.get(key_digest(api_key))
        if client is None:
            raise Unauthenticated("x-api-key: not a known channel client key")
        return client


def authorize(client: ChannelClient, channel: Channel | None) -> None:
    """A client may submit only on the channels its credential names."""
    if channel is not None and channel not in client.channels:
        allowed = ", ".join(sorted(client.channels))
        raise PermissionDenied(
            f"channel: client {client.client_id} may submit on {allowed}, not {channel}"
        )


def config_entry(client_id: str, channels: list[Channel], api_key: str) -> str:
    """One LAPOR_INTAKE_CLIENTS entry for a key (ops tooling and the embedded stack)."""
    if len(api_key) < MIN_KEY_LENGTH:
        raise ValueError(f"API keys must have at least {MIN_KEY_LENGTH} characters")
    return f"{client_id}:{'|'.join(channels)}:{key_digest(api_key)}"

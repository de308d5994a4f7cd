"""Reporter identity encrypted at rest: AES-256-GCM with key ids, so keys can rotate.

The tracking id is the associated data: a ciphertext copied onto another report does not
decrypt. Old keys stay in the ring for reading; new writes use the active key.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.common.settings import Secret, SettingsError
from services.intake.domain import Contact


@dataclass(frozen=True)
class SealedIdentity:
    key_id: str
    nonce: bytes
    ciphertext: bytes


class IdentityCipher:
    def __init__(self, keys: dict[str, bytes], active: str) -> None:
        if active not in keys:
            raise SettingsError(
                f"LAPOR_IDENTITY_ACTIVE_KEY={active!r} is not in LAPOR_IDENTITY_KEYS"
            )
        self._keys = {kid: AESGCM(key) for kid, key in keys.items()}
        self._active = active

    @property
    def active_key_id(self) -> str:
        """The key id new identities are sealed with."""
        return self._active

    @classmethod
    def from_config(cls, keys: Secret, active: str) -> IdentityCipher:
        """`keys` is 'kid:base64key[,kid:base64key...]' with 32-byte keys."""
        ring: dict[str, bytes] = {}
        for position, item in enumerate(keys.reveal().split(","), start=1):
            kid, colon, encoded = item.strip().partition(":")
            if not colon or not kid or len(kid) > 32:
                raise SettingsError(f"LAPOR_IDENTITY_KEYS: entry {position} is not 'id:base64key'")
            try:
                key = base64.b64decode(encoded, validate=True)
            except ValueError:
                raise SettingsError(f"LAPOR_IDENTITY_KEYS: key {kid!r} is not base64") from None
            if not kid or len(key) != 32:
                raise SettingsError(
                    f"LAPOR_IDENTITY_KEYS: key {kid!r} must be 'id:' + 32 bytes base64"
                )
            ring[kid] = key
        return cls(ring, active)

    def seal(self, contact: Contact, tracking_id: str) -> SealedIdentity:
        nonce = os.urandom(12)
        fields = {"n": contact.name, "p": contact.phone, "e": contact.email, "h": contact.handle}
        plain = json.dumps(fields).encode()
        ciphertext = self._keys[self._active].encrypt(nonce, plain, tracking_id.encode())
        return SealedIdentity(self._active, nonce, ciphertext)

    def open(self, sealed: SealedIdentity, tracking_id: str) -> Contact:
        plain = self._keys[sealed.key_id].decrypt(
            sealed.nonce, sealed.ciphertext, tracking_id.encode()
        )
        data = json.loads(plain)
        return Contact(data["n"], data["p"], data["e"], data.get("h", ""))


def generate_key() -> str:
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()

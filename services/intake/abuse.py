"""Keyed hashes of contacts: enough to limit abuse, useless to identify anyone.

HMAC-SHA256 with ``LAPOR_ABUSE_HASH_KEY``: without the key a phone number cannot be
brute-forced from its hash. The hashes go into rate-limit counters and duplicate
detection only, never into events, logs or metrics.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from services.intake.domain import Contact, SubmitComplaint

DEDUPE_PREFIX = "dedupe:"


def dedupe_bucket(now: datetime, window: timedelta) -> int:
    return int(now.timestamp() // window.total_seconds())


def dedupe_key(bucket: int, base: str) -> str:
    """Sorts by bucket, so expired keys are one range of the idempotency index."""
    return f"{DEDUPE_PREFIX}{bucket:012d}:{base}"


class AbuseHasher:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def digest(self, purpose: str, value: str) -> str:
        message = f"{purpose}\x00{value}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:40]

    def reference_key(self, source_system: str, reference: str) -> str:
        """An institution system's own reference as kept: a keyed hash."""
        return self.digest("reference", f"{source_system}:{reference.strip()}")

    def contact_keys(self, contact: Contact) -> list[str]:
        """One key per way of reaching the reporter (normalised first)."""
        values = [
            ("phone", contact.phone.strip()),
            ("email", contact.email.strip().lower()),
            ("handle", contact.handle.strip().lower()),
        ]
        return [self.digest(kind, value) for kind, value in values if value]

    def dedupe_keys(
        self, cmd: SubmitComplaint, fingerprint: str, now: datetime, window: timedelta
    ) -> list[str]:
        """Keys that make the same reporter's same report within `window` collide: for each
        of the reporter's contact keys (phone, e-mail, social account) one key with the
        report's fingerprint, in this window and the next (so a repeat is caught however the
        window boundary falls). A resend sharing any one contact collides on its keys.

        Each key is derived as it was when only the first contact counted, so reports
        stored before keep colliding with new ones."""
        contacts = self.contact_keys(cmd.reporter)
        if not contacts or window.total_seconds() <= 0:
            return []
        bucket = dedupe_bucket(now, window)
        keys: list[str] = []
        for contact in contacts:
            base = self.digest("dedupe", f"{contact}:{fingerprint}")
            keys += [dedupe_key(bucket, base), dedupe_key(bucket + 1, base)]
        return list(dict.fromkeys(keys))  # in order, each once

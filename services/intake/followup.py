"""Secret follow-up codes: how a reporter (anonymous ones too) proves a report is theirs.

A code is 12 Crockford base-32 symbols from the OS's CSPRNG (60 bits), shown once as
``XXXX-XXXX-XXXX``. The complaint document keeps only salted SHA-256 hashes of its codes,
in the list field ``FIELD`` (``follow_up_codes``); a duplicate submission adds a new code.
60 random bits make a slow hash unnecessary (as for API tokens): one salted SHA-256 per
guess over 2^60 codes is out of reach, while scrypt would cost ~30 ms CPU per complaint.
Stored form: ``s256$<salt hex>$<digest hex>``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable

from services.common.ids import ALPHABET

FIELD = "follow_up_codes"
SYMBOLS = 12
_SCHEME = "s256"
_CONFUSABLE = str.maketrans({"O": "0", "I": "1", "L": "1", "U": "V"})


def new_follow_up_code() -> str:
    s = "".join(secrets.choice(ALPHABET) for _ in range(SYMBOLS))
    return f"{s[0:4]}-{s[4:8]}-{s[8:12]}"


def canonical(code: str) -> str:
    """Forgives case, spaces, hyphens and the letters people confuse."""
    return "".join(code.upper().split()).replace("-", "").translate(_CONFUSABLE)


def hash_follow_up_code(code: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.sha256(salt + canonical(code).encode()).hexdigest()
    return f"{_SCHEME}${salt.hex()}${digest}"


def verify_follow_up_code(stored: str | Iterable[str], code: str) -> bool:
    """True when `code` matches the stored hash (or any hash of the stored list)."""
    candidates = [stored] if isinstance(stored, str) else list(stored)
    if not code or len(code) > 64:
        return False
    ok = False
    for entry in candidates:
        scheme, _, rest = entry.partition("$")
        salt_hex, _, digest = rest.partition("$")
        if scheme != _SCHEME:
            continue
        try:
            salt = bytes.fromhex(salt_hex)
        except ValueError:
            continue
        expected = hash_follow_up_code(code, salt).rpartition("$")[2]
        ok = hmac.compare_digest(expected, digest) or ok
    return ok

"""Tracking ids: short enough to read out over SMS, with a check character, not enumerable.

Ten random Crockford base-32 symbols (50 bits from the OS's CSPRNG) and one Luhn mod 32
check symbol, shown in groups: ``7K3M-9QX2-DAC``. Parsing forgives case, spaces, missing
hyphens and the letters people confuse (O→0, I/L→1, U→V).

Event ids: random (`new_event_id`) for what a person did through an API, derived
(`derived_event_id`) for what a service concluded from an event it consumed, so that
concluding the same again (a redelivery, a replay after a restore) publishes the same id,
which consumers drop, and concluding something else publishes a new one.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_INDEX = {ch: i for i, ch in enumerate(ALPHABET)}
_CONFUSABLE = str.maketrans({"O": "0", "I": "1", "L": "1", "U": "V"})
DATA_LENGTH = 10


class MalformedTrackingId(ValueError):
    pass


def _check_symbol(data: str) -> str:
    """Luhn mod N over the Crockford alphabet: catches every single-symbol error and every
    transposition of adjacent symbols except 0↔Z (Luhn mod N's one blind pair)."""
    n = len(ALPHABET)
    factor = 2
    total = 0
    for ch in reversed(data):
        addend = factor * _INDEX[ch]
        factor = 1 if factor == 2 else 2
        total += addend // n + addend % n
    return ALPHABET[(n - total % n) % n]


def _format(symbols: str) -> str:
    return f"{symbols[0:4]}-{symbols[4:8]}-{symbols[8:11]}"


def new_tracking_id() -> str:
    data = "".join(secrets.choice(ALPHABET) for _ in range(DATA_LENGTH))
    return _format(data + _check_symbol(data))


def parse_tracking_id(raw: str) -> str:
    """Return the canonical form or raise MalformedTrackingId saying what is wrong."""
    symbols = "".join(raw.upper().split()).replace("-", "").translate(_CONFUSABLE)
    if len(symbols) != DATA_LENGTH + 1:
        raise MalformedTrackingId(f"must have {DATA_LENGTH + 1} symbols, got {len(symbols)}")
    bad = sorted({ch for ch in symbols if ch not in _INDEX})
    if bad:
        raise MalformedTrackingId(f"contains characters outside the alphabet: {''.join(bad)}")
    if _check_symbol(symbols[:DATA_LENGTH]) != symbols[DATA_LENGTH]:
        raise MalformedTrackingId("check character does not match (typo?)")
    return _format(symbols)


def new_event_id() -> str:
    return uuid.uuid4().hex


#: Hex digits of the outcome's digest in a derived event id (64 bits: two different outcomes
#: of one cause never meet in practice).
DIGEST_LENGTH = 16


def derived_event_id(cause_event_id: str, kind: str, outcome: Iterable[str]) -> str:
    """``<cause event id>:<kind>:<digest of outcome>``: the same for the same cause, kind
    and outcome, whenever and however often it is derived; different when any part of the
    outcome differs. `outcome` lists what the event says (not when)."""
    digest = hashlib.sha256()
    for part in outcome:
        data = part.encode()
        digest.update(len(data).to_bytes(8, "big"))  # length-prefixed: ("ab", "c") != ("a", "bc")
        digest.update(data)
    return f"{cause_event_id}:{kind}:{digest.hexdigest()[:DIGEST_LENGTH]}"

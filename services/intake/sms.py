"""How much text an SMS carries: GSM-7 septets or UCS-2 characters, and segments.

One SMS carries 160 GSM-7 septets (or 70 UCS-2 characters); a concatenated SMS spends
7 septets (3 UCS-2 characters) of each segment on its header: 153 septets or 67
characters per segment. Intake accepts SMS texts of up to ``MAX_SEGMENTS`` segments.
"""

from __future__ import annotations

GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = "^{}\\[~]|€\f"  # each costs an escape septet too
_BASIC = frozenset(GSM7_BASIC)
_EXTENSION = frozenset(GSM7_EXTENSION)

SINGLE_GSM7 = 160
SINGLE_UCS2 = 70
SEGMENT_GSM7 = 153
SEGMENT_UCS2 = 67
MAX_SEGMENTS = 10
MAX_GSM7_SEPTETS = MAX_SEGMENTS * SEGMENT_GSM7  # 1,530
MAX_UCS2_UNITS = MAX_SEGMENTS * SEGMENT_UCS2  # 670


def gsm7_septets(text: str) -> int | None:
    """Septets the text needs in GSM-7, or None when it needs UCS-2."""
    total = 0
    for ch in text:
        if ch in _BASIC:
            total += 1
        elif ch in _EXTENSION:
            total += 2
        else:
            return None
    return total


def ucs2_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def segments(text: str) -> int:
    septets = gsm7_septets(text)
    if septets is not None:
        return 1 if septets <= SINGLE_GSM7 else -(-septets // SEGMENT_GSM7)
    units = ucs2_units(text)
    return 1 if units <= SINGLE_UCS2 else -(-units // SEGMENT_UCS2)


def fits_one_sms(text: str) -> bool:
    septets = gsm7_septets(text)
    return septets is not None and septets <= SINGLE_GSM7

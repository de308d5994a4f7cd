"""Phone numbers as Indonesians write them, normalised to E.164 (``+628123456789``).

Accepted: ``0812…`` (national), ``62812…`` and ``+62 812-…`` (international, with or
without the plus), ``0062…`` (international call prefix), with spaces, hyphens, dots and
parentheses anywhere; other countries as ``+<country code>…``. Indonesian numbers have a
national significant number of 8 to 12 digits that starts with 2-9 (``8…`` for mobile).
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s\-.()/]")
_DIGITS = re.compile(r"^\+?[0-9]+$")  # ASCII digits (\d takes any script's)


class NotAPhoneNumber(ValueError):
    pass


def to_e164(raw: str) -> str:
    stripped = raw.strip()
    if not stripped:
        raise NotAPhoneNumber("must not be empty")
    if stripped[0] not in "+(0123456789":
        raise NotAPhoneNumber("must start with a digit, + or (")
    text = _SEPARATORS.sub("", stripped)
    if not _DIGITS.match(text):
        raise NotAPhoneNumber(
            "may contain only digits, spaces, hyphens, dots, parentheses, a leading +"
        )
    if text.startswith("+"):
        digits = text[1:]
        if digits.startswith("62"):
            return _indonesian(digits[2:])
        if digits.startswith("0") or not 8 <= len(digits) <= 15:
            raise NotAPhoneNumber("must be +<country code> and 7-14 more digits")
        return "+" + digits
    if text.startswith("0062"):
        return _indonesian(text[4:])
    if text.startswith("62"):
        return _indonesian(text[2:])
    if text.startswith("0"):
        return _indonesian(text[1:])
    raise NotAPhoneNumber("must start with 0, 62 or +<country code> (e.g. 0812…, +62 812…)")


def _indonesian(national: str) -> str:
    national = national.removeprefix("0")  # "+62 0812…" is a common slip
    if not national or national[0] in "01":
        raise NotAPhoneNumber("Indonesian numbers continue with an area code or 8xx after 0/62")
    if not 8 <= len(national) <= 12:
        raise NotAPhoneNumber(
            f"Indonesian numbers have 8-12 digits after 0/62, got {len(national)}"
        )
    return "+62" + national

"""Tracking ids (services/common/ids.py): format, forgiving parsing, check symbol."""

from __future__ import annotations

import re

import pytest

from services.common.ids import (
    ALPHABET,
    DATA_LENGTH,
    MalformedTrackingId,
    _check_symbol,
    new_tracking_id,
    parse_tracking_id,
)

FORMAT = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{3}$")


def make(data: str) -> str:
    symbols = data + _check_symbol(data)
    return f"{symbols[:4]}-{symbols[4:8]}-{symbols[8:]}"


def value(tid: str) -> int:
    """The data symbols read as a base-32 number."""
    n = 0
    for ch in tid.replace("-", "")[:DATA_LENGTH]:
        n = n * 32 + ALPHABET.index(ch)
    return n


# Fixed ids (no "0" next to "Z": see the xfail below) plus a few generated ones.
FIXED = [make("7K3M9QX2DA"), make("0000000000"), make("ZZZZZZZZZZ"), make("123456789A")]


def test_alphabet_is_crockford_base32() -> None:
    assert ALPHABET == "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    assert len(set(ALPHABET)) == 32
    assert not set("ILOU") & set(ALPHABET)


def test_known_check_symbols() -> None:
    # Worked by hand: all zeros sum to 0, so the check symbol is 0.
    assert make("0000000000") == "0000-0000-000"
    # Rightmost data symbol doubled: 2*1 = 2 -> check (32 - 2) % 32 = 30 = "Y".
    assert make("0000000001") == "0000-0000-01Y"
    # Second from the right is not doubled: 1 -> check 31 = "Z".
    assert make("0000000010") == "0000-0000-10Z"


def test_generated_ids_have_the_format_and_round_trip() -> None:
    for _ in range(200):
        tid = new_tracking_id()
        assert FORMAT.match(tid), tid
        assert parse_tracking_id(tid) == tid


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("7k3m-9qx2-dac", "7K3M-9QX2-DAC"),
        ("  7K3M 9QX2 DAC  ", "7K3M-9QX2-DAC"),
        ("7K3M9QX2DAC", "7K3M-9QX2-DAC"),
        ("7k3m9qx2-dac", "7K3M-9QX2-DAC"),
        ("O000-0000-000", "0000-0000-000"),
        ("oooo-OOOO-000", "0000-0000-000"),
        ("0000-0000-I0Z", "0000-0000-10Z"),
        ("0000-0000-l0z", "0000-0000-10Z"),
        ("0000-0000-L0Z", "0000-0000-10Z"),
    ],
)
def test_forgiving_parsing(raw: str, expected: str) -> None:
    assert parse_tracking_id(raw) == expected


@pytest.mark.parametrize("tid", FIXED + [new_tracking_id() for _ in range(3)])
def test_every_single_symbol_substitution_is_rejected(tid: str) -> None:
    symbols = tid.replace("-", "")
    tried = 0
    for pos in range(len(symbols)):
        for ch in ALPHABET:
            if ch == symbols[pos]:
                continue
            wrong = symbols[:pos] + ch + symbols[pos + 1 :]
            with pytest.raises(MalformedTrackingId, match="check character"):
                parse_tracking_id(wrong)
            tried += 1
    assert tried == (DATA_LENGTH + 1) * 31


@pytest.mark.parametrize("tid", FIXED + [make("9QX27K3MDA"), make("ABCDEFGHJK")])
def test_adjacent_transpositions_are_rejected(tid: str) -> None:
    symbols = tid.replace("-", "")
    swaps = 0
    for pos in range(len(symbols) - 1):
        a, b = symbols[pos], symbols[pos + 1]
        if a == b:
            continue
        swapped = symbols[:pos] + b + a + symbols[pos + 2 :]
        with pytest.raises(MalformedTrackingId):
            parse_tracking_id(swapped)
        swaps += 1
    assert swaps > 0 or len(set(symbols)) == 1


@pytest.mark.parametrize("raw", ["", "7K3M-9QX2-DA", "7K3M-9QX2-DAC4", "7K3M9QX2DACX", "-" * 11])
def test_wrong_length_is_rejected(raw: str) -> None:
    with pytest.raises(MalformedTrackingId, match="must have 11 symbols"):
        parse_tracking_id(raw)


def test_characters_outside_the_alphabet_are_named() -> None:
    with pytest.raises(MalformedTrackingId, match=r"outside the alphabet: \*"):
        parse_tracking_id("7K3M-9QX2-DA*")


def test_ten_thousand_ids_are_unique_and_not_sequential() -> None:
    ids = [new_tracking_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    values = [value(t) for t in ids]
    # Consecutive ids are not ordered or stepped: about half go up, steps all differ,
    # and the first symbol is spread over the whole alphabet.
    steps = [b - a for a, b in zip(values, values[1:], strict=False)]
    assert 4_000 < sum(s > 0 for s in steps) < 6_000
    assert len(set(steps)) > 9_900
    assert len({t[0] for t in ids}) == 32
    assert len({t[:2] for t in ids}) > 900

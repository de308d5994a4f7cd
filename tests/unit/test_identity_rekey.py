"""The re-encryption command's settings and summary (services/intake/rekey.py); the job
itself runs against the database in tests/integration/test_identity_rekey.py."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag

from services.intake.domain import Contact
from services.intake.identity import IdentityCipher
from services.intake.rekey import RekeyReport, main, summary

CONTACT = Contact("Siti Rahma", "+6281234567890", "siti@example.id")
TID = "7K3M-9QX2-DAC"


def test_a_missing_or_inconsistent_setting_stops_the_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([], {}) == 2
    assert "LAPOR_IDENTITY_KEYS is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--batch-size", "0"], {})


def test_the_active_key_is_the_one_new_identities_get() -> None:
    """The job re-seals what is not under `active_key_id`: that must be the key `seal` uses."""
    key_a, key_b = bytes(32), bytes(range(32))
    cipher = IdentityCipher({"A": key_a, "B": key_b}, "B")
    sealed = cipher.seal(CONTACT, TID)
    assert sealed.key_id == cipher.active_key_id == "B"
    assert cipher.open(sealed, TID) == CONTACT
    # Really sealed with B's key: A's key under B's name cannot open it.
    with pytest.raises(InvalidTag):
        IdentityCipher({"B": key_a}, "B").open(sealed, TID)


def test_the_summary_names_tracking_ids_and_keys_only() -> None:
    report = RekeyReport("B", rekeyed=5, skipped=1, failed={"7K3M-9QX2-DAC": "unknown (Z)"})
    report.remaining = {"Z": 1}
    lines = summary(report)
    assert "re-encrypted         : 5" in lines and "skipped (changed)    : 1" in lines
    assert "  7K3M-9QX2-DAC  unknown (Z)" in lines and "under other keys     : Z: 1" in lines
    assert not report.done
    assert summary(RekeyReport("B"))[-1] == "every stored identity is sealed with the active key"

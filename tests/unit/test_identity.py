"""Reporter identity encryption (services/intake/identity.py)."""

from __future__ import annotations

import base64

import pytest
from cryptography.exceptions import InvalidTag

from services.common.settings import Secret, SettingsError
from services.intake.domain import Contact
from services.intake.identity import IdentityCipher, SealedIdentity, generate_key

K1 = bytes(range(32))
K2 = bytes(range(100, 132))
CONTACT = Contact("Ni Luh Putu Sari", "+62 812-9988-7766", "luh.sari@example.id")
TID = "7K3M-9QX2-DAC"


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def test_seal_and_open_round_trip() -> None:
    cipher = IdentityCipher({"k1": K1}, "k1")
    sealed = cipher.seal(CONTACT, TID)
    assert sealed.key_id == "k1"
    assert len(sealed.nonce) == 12
    assert cipher.open(sealed, TID) == CONTACT
    assert cipher.open(cipher.seal(Contact(), TID), TID) == Contact()


def test_ciphertext_shows_nothing_of_the_plaintext() -> None:
    cipher = IdentityCipher({"k1": K1}, "k1")
    a, b = cipher.seal(CONTACT, TID), cipher.seal(CONTACT, TID)
    for sealed in (a, b):
        blob = sealed.nonce + sealed.ciphertext + sealed.key_id.encode()
        for part in ("Luh", "Sari", "8129988", "7766", "luh.sari", "example.id", '"n"', '"p"'):
            assert part.encode() not in blob, part
    assert a.nonce != b.nonce and a.ciphertext != b.ciphertext


def test_ciphertext_bound_to_its_tracking_id() -> None:
    cipher = IdentityCipher({"k1": K1}, "k1")
    sealed = cipher.seal(CONTACT, TID)
    with pytest.raises(InvalidTag):
        cipher.open(sealed, "0000-0000-000")
    tampered = SealedIdentity(
        "k1", sealed.nonce, bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    )
    with pytest.raises(InvalidTag):
        cipher.open(tampered, TID)


def test_key_rotation_keeps_old_ciphertexts_readable() -> None:
    old = IdentityCipher.from_config(Secret(f"k1:{b64(K1)}"), "k1")
    sealed_old = old.seal(CONTACT, TID)
    rotated = IdentityCipher.from_config(Secret(f"k1:{b64(K1)}, k2:{b64(K2)}"), "k2")
    assert rotated.open(sealed_old, TID) == CONTACT
    sealed_new = rotated.seal(CONTACT, TID)
    assert sealed_new.key_id == "k2"
    assert rotated.open(sealed_new, TID) == CONTACT
    # Really sealed with k2: a ring holding only k1 under that name cannot read it.
    impostor = IdentityCipher({"k2": K1}, "k2")
    with pytest.raises(InvalidTag):
        impostor.open(sealed_new, TID)


def test_generated_keys_are_accepted() -> None:
    key = generate_key()
    assert len(base64.b64decode(key)) == 32
    cipher = IdentityCipher.from_config(Secret(f"main:{key}"), "main")
    assert cipher.open(cipher.seal(CONTACT, TID), TID) == CONTACT


@pytest.mark.parametrize(
    "config",
    [
        "",
        "k1",
        f":{b64(K1)}",
        "k1:not base64!",
        f"k1:{b64(K1[:16])}",
        f"k1:{b64(K1 + b'x')}",
        f"k1:{b64(K1)},k2:%%%",
    ],
)
def test_malformed_key_config_names_the_setting(config: str) -> None:
    with pytest.raises(SettingsError, match="LAPOR_IDENTITY_KEYS") as err:
        IdentityCipher.from_config(Secret(config), "k1")
    assert b64(K1) not in str(err.value)
    assert b64(K1[:16]) not in str(err.value)


def test_a_missing_colon_does_not_leak_the_key() -> None:
    with pytest.raises(SettingsError, match="LAPOR_IDENTITY_KEYS") as err:
        IdentityCipher.from_config(Secret(f"k1={b64(K1)}"), "k1")
    assert b64(K1)[:8] not in str(err.value)


def test_unknown_active_key_names_the_setting() -> None:
    with pytest.raises(SettingsError, match="LAPOR_IDENTITY_ACTIVE_KEY") as err:
        IdentityCipher.from_config(Secret(f"k1:{b64(K1)}"), "k2")
    assert "'k2'" in str(err.value)

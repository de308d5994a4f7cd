"""Officers' tokens under the public-key path of services/common/auth.py (RS256/ES256).

The verifier is built as production builds it (``TokenVerifier.from_env`` with the issuer's
PEM public key in ``LAPOR_JWT_KEY``), tokens are signed with PyJWT and keys come from the
``cryptography`` package. Every refusal must be the domain's ``Unauthenticated`` (gRPC
UNAUTHENTICATED at the edge) with a message that names the problem and never echoes the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from services.common.auth import Principal, TokenVerifier
from services.common.errors import Unauthenticated
from services.common.grpc_errors import status_for
from services.common.settings import Env

ISSUER = "https://sso.example.go.id"
AUDIENCE = "lapor"

KEY_TYPES = ("ES256", "RS256")


def _new_key(alg: str) -> PrivateKeyTypes:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateKeyTypes]:
    """One issuer key per algorithm, and an unrelated key of the same type ("<alg>-other")."""
    out: dict[str, PrivateKeyTypes] = {}
    for alg in KEY_TYPES:
        out[alg] = _new_key(alg)
        out[f"{alg}-other"] = _new_key(alg)
    return out


def public_pem(key: PrivateKeyTypes) -> str:
    return (
        key.public_key()  # type: ignore[union-attr]
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def verifier_for(key: PrivateKeyTypes) -> TokenVerifier:
    """As bootstrap builds it: TokenVerifier.from_env over the service's environment."""
    return TokenVerifier.from_env(
        Env(
            {
                "LAPOR_JWT_KEY": public_pem(key),
                "LAPOR_JWT_ISSUER": ISSUER,
                "LAPOR_JWT_AUDIENCE": AUDIENCE,
            }
        )
    )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    out: dict[str, Any] = {
        "sub": "officer-17",
        "institution": "pemda-51.08/disdukcapil",
        "role": "officer",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    for name, value in overrides.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def sign(key: PrivateKeyTypes, alg: str, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), key, algorithm=alg)  # type: ignore[arg-type]


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def hand_made(header: dict[str, Any], body: dict[str, Any], secret: bytes | None) -> str:
    """A token built without PyJWT's guards (it refuses an asymmetric key as an HMAC secret)."""
    signing_input = _b64(json.dumps(header).encode()) + b"." + _b64(json.dumps(body).encode())
    signature = b"" if secret is None else hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _b64(signature)).decode()


def refused(verifier: TokenVerifier, token: str) -> str:
    """The message of the Unauthenticated the token is refused with (checked not to leak it)."""
    with pytest.raises(Unauthenticated) as caught:
        verifier.verify(token)
    message = str(caught.value)
    assert message.startswith("authorization: ")
    assert token not in message
    for part in token.split("."):
        if len(part) >= 8:
            assert part not in message
    code, answered, _ = status_for(caught.value)
    assert code == grpc.StatusCode.UNAUTHENTICATED and answered == message
    return message


# --- accepted -------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", KEY_TYPES)
def test_a_token_signed_by_the_issuers_key_gives_the_principal(
    keys: dict[str, PrivateKeyTypes], alg: str
) -> None:
    verifier = verifier_for(keys[alg])
    token = sign(keys[alg], alg, role="institution_admin", institution="pemda-51.08")
    assert verifier.verify(token) == Principal("officer-17", "pemda-51.08", "institution_admin")


@pytest.mark.parametrize("alg", KEY_TYPES)
def test_every_role_is_accepted_and_national_admin_is_flagged(
    keys: dict[str, PrivateKeyTypes], alg: str
) -> None:
    verifier = verifier_for(keys[alg])
    for role in ("officer", "institution_admin", "national_admin"):
        principal = verifier.verify(sign(keys[alg], alg, role=role, institution="national"))
        assert principal.role == role
        assert principal.is_national_admin is (role == "national_admin")


@pytest.mark.parametrize("alg", KEY_TYPES)
def test_the_bearer_metadata_path_verifies_public_key_tokens(
    keys: dict[str, PrivateKeyTypes], alg: str
) -> None:
    verifier = verifier_for(keys[alg])
    token = sign(keys[alg], alg)
    principal = verifier.from_metadata([("authorization", f"Bearer {token}".encode())])
    assert principal == Principal("officer-17", "pemda-51.08/disdukcapil", "officer")


def test_a_pem_key_selects_the_public_key_algorithms_only(
    keys: dict[str, PrivateKeyTypes],
) -> None:
    assert verifier_for(keys["ES256"])._algorithms == ["RS256", "ES256"]
    assert verifier_for(keys["RS256"])._algorithms == ["RS256", "ES256"]


# --- wrong key or algorithm -----------------------------------------------------------------


@pytest.mark.parametrize("alg", KEY_TYPES)
def test_a_token_signed_by_another_key_of_the_same_type_is_refused(
    keys: dict[str, PrivateKeyTypes], alg: str
) -> None:
    verifier = verifier_for(keys[alg])
    message = refused(verifier, sign(keys[f"{alg}-other"], alg))
    assert message == "authorization: invalid token (InvalidSignatureError)"


@pytest.mark.parametrize("alg", KEY_TYPES)
def test_a_tampered_payload_is_refused(keys: dict[str, PrivateKeyTypes], alg: str) -> None:
    verifier = verifier_for(keys[alg])
    header, _, signature = sign(keys[alg], alg).split(".")
    forged = _b64(json.dumps(claims(role="national_admin")).encode()).decode()
    message = refused(verifier, f"{header}.{forged}.{signature}")
    assert message == "authorization: invalid token (InvalidSignatureError)"


@pytest.mark.parametrize("alg", KEY_TYPES)
def test_algorithm_confusion_hs256_keyed_with_the_public_pem_is_refused(
    keys: dict[str, PrivateKeyTypes], alg: str
) -> None:
    """An attacker knows the public key: an HS256 token whose HMAC secret is that PEM (as
    configured, and as the file with its trailing newline) must not pass as the issuer's."""
    verifier = verifier_for(keys[alg])
    configured = verifier.key.reveal()
    for secret in (configured, configured + "\n", public_pem(keys[alg])):
        token = hand_made({"alg": "HS256", "typ": "JWT"}, claims(), secret.encode())
        message = refused(verifier, token)
        assert message == "authorization: invalid token (InvalidAlgorithmError)"


@pytest.mark.parametrize("alg", KEY_TYPES)
def test_alg_none_is_refused(keys: dict[str, PrivateKeyTypes], alg: str) -> None:
    verifier = verifier_for(keys[alg])
    for header_alg in ("none", "None", "NONE"):
        token = hand_made({"alg": header_alg, "typ": "JWT"}, claims(), None)
        assert "invalid token" in refused(verifier, token)
    unsigned = jwt.encode(claims(), None, algorithm="none")
    assert refused(verifier, unsigned) == "authorization: invalid token (InvalidAlgorithmError)"


def test_an_algorithm_of_the_same_family_not_configured_is_refused(
    keys: dict[str, PrivateKeyTypes],
) -> None:
    """PS256 (RSA-PSS) and RS512 are valid over an RSA key but are not in the allow-list."""
    verifier = verifier_for(keys["RS256"])
    for other in ("PS256", "RS512"):
        message = refused(verifier, sign(keys["RS256"], other))
        assert message == "authorization: invalid token (InvalidAlgorithmError)"


def test_a_hs256_verifier_refuses_public_key_tokens(keys: dict[str, PrivateKeyTypes]) -> None:
    verifier = TokenVerifier.from_env(
        Env({"LAPOR_JWT_KEY": "s" * 40, "LAPOR_JWT_ISSUER": ISSUER, "LAPOR_JWT_AUDIENCE": AUDIENCE})
    )
    for alg in KEY_TYPES:
        message = refused(verifier, sign(keys[alg], alg))
        assert message == "authorization: invalid token (InvalidAlgorithmError)"


@pytest.mark.parametrize(("configured", "presented"), [("ES256", "RS256"), ("RS256", "ES256")])
def test_a_token_of_the_other_public_key_type_is_unauthenticated(
    keys: dict[str, PrivateKeyTypes], configured: str, presented: str
) -> None:
    verifier = verifier_for(keys[configured])
    assert "invalid token" in refused(verifier, sign(keys[presented], presented))


# --- time -----------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", KEY_TYPES)
def test_an_expired_token_is_refused_beyond_the_leeway(
    keys: dict[str, PrivateKeyTypes], alg: str
) -> None:
    verifier = verifier_for(keys[alg])
    now = int(time.time())
    assert verifier.leeway_seconds == 30
    for exp in (now - 3600, now - verifier.leeway_seconds - 5):
        message = refused(verifier, sign(keys[alg], alg, iat=exp - 600, exp=exp))
        assert message == "authorization: token expired"
    # Within the leeway (issuer and service clocks a little apart) it is still accepted.
    assert verifier.verify(sign(keys[alg], alg, iat=now - 600, exp=now - 5)).subject


@pytest.mark.parametrize("alg", KEY_TYPES)
def test_a_token_not_yet_valid_is_refused(keys: dict[str, PrivateKeyTypes], alg: str) -> None:
    verifier = verifier_for(keys[alg])
    now = int(time.time())
    message = refused(verifier, sign(keys[alg], alg, nbf=now + 3600, exp=now + 7200))
    assert message == "authorization: invalid token (ImmatureSignatureError)"


# --- issuer, audience and claims ------------------------------------------------------------


@pytest.mark.parametrize("alg", KEY_TYPES)
def test_wrong_issuer_or_audience_is_refused(keys: dict[str, PrivateKeyTypes], alg: str) -> None:
    verifier = verifier_for(keys[alg])
    message = refused(verifier, sign(keys[alg], alg, iss="https://evil.example"))
    assert message == "authorization: invalid token (InvalidIssuerError)"
    message = refused(verifier, sign(keys[alg], alg, aud="another-app"))
    assert message == "authorization: invalid token (InvalidAudienceError)"


@pytest.mark.parametrize("alg", KEY_TYPES)
@pytest.mark.parametrize("claim", ["exp", "sub", "iss", "aud"])
def test_a_missing_required_registered_claim_is_refused(
    keys: dict[str, PrivateKeyTypes], alg: str, claim: str
) -> None:
    verifier = verifier_for(keys[alg])
    message = refused(verifier, sign(keys[alg], alg, **{claim: None}))
    assert message == "authorization: invalid token (MissingRequiredClaimError)"


@pytest.mark.parametrize("alg", KEY_TYPES)
def test_a_missing_or_empty_institution_is_refused(
    keys: dict[str, PrivateKeyTypes], alg: str
) -> None:
    verifier = verifier_for(keys[alg])
    for institution in (None, "", 51):
        message = refused(verifier, sign(keys[alg], alg, institution=institution))
        assert message == "authorization: institution claim missing"


@pytest.mark.parametrize("alg", KEY_TYPES)
def test_a_missing_or_unknown_role_is_refused(keys: dict[str, PrivateKeyTypes], alg: str) -> None:
    verifier = verifier_for(keys[alg])
    for role in (None, "", "superuser", "Officer"):
        message = refused(verifier, sign(keys[alg], alg, role=role))
        assert message.startswith("authorization: role claim must be one of officer")


@pytest.mark.parametrize("alg", KEY_TYPES)
def test_garbage_is_refused_without_echoing_it(keys: dict[str, PrivateKeyTypes], alg: str) -> None:
    verifier = verifier_for(keys[alg])
    message = refused(verifier, "not-a-jwt-at-all-but-long-enough")
    assert message == "authorization: invalid token (DecodeError)"

"""Officers' tokens under the public-key path of services/common/auth.py (RS256/ES256), and
key rotation (``LAPOR_JWT_KEY_NEXT``, key ids) over both public keys and HS256 secrets.

The verifier is built as production builds it (``TokenVerifier.from_env`` with the issuer's
PEM public key in ``LAPOR_JWT_KEY``), tokens are signed with PyJWT and keys come from the
``cryptography`` package. Every refusal must be the domain's ``Unauthenticated`` (gRPC
UNAUTHENTICATED at the edge) with a message that names the problem and never echoes the token;
a key that cannot verify tokens must stop the service at start (``SettingsError``) naming its
variable and never quoting the key.
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

from services.common.auth import Principal, TokenVerifier, VerificationKey
from services.common.errors import Unauthenticated
from services.common.grpc_errors import status_for
from services.common.settings import Env, Secret, SettingsError

ISSUER = "https://sso.example.go.id"
AUDIENCE = "lapor"

KEY_TYPES = ("ES256", "RS256")


def _new_key(alg: str) -> PrivateKeyTypes:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateKeyTypes]:
    """One issuer key per algorithm, an unrelated key of the same type ("<alg>-other") and
    the issuer's next key of that type ("<alg>-next", for rotations)."""
    out: dict[str, PrivateKeyTypes] = {}
    for alg in KEY_TYPES:
        out[alg] = _new_key(alg)
        out[f"{alg}-other"] = _new_key(alg)
        out[f"{alg}-next"] = _new_key(alg)
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
    assert verifier_for(keys["ES256"]).keys[0].algorithms == ["RS256", "ES256"]
    assert verifier_for(keys["RS256"]).keys[0].algorithms == ["RS256", "ES256"]


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


# --- key rotation: LAPOR_JWT_KEY_NEXT and key ids -------------------------------------------

HS_OLD = "old-shared-secret-of-the-issuer-0123456789"
HS_NEW = "new-shared-secret-of-the-issuer-9876543210"
HS_OTHER = "a-secret-the-issuer-never-had-00000000000"

Key = PrivateKeyTypes | str  # a private key (RS256/ES256) or an HS256 secret


def pick(keys: dict[str, PrivateKeyTypes], name: str) -> Key:
    secrets = {"HS256": HS_OLD, "HS256-next": HS_NEW, "HS256-other": HS_OTHER}
    return secrets[name] if name in secrets else keys[name]


def configured(key: Key) -> str:
    """What the operator puts into the variable: the secret, or the public key's PEM."""
    return key if isinstance(key, str) else public_pem(key)


def token_of(key: Key, kid: str | None = None, **overrides: Any) -> str:
    alg = (
        "HS256"
        if isinstance(key, str)
        else "ES256"
        if isinstance(key, ec.EllipticCurvePrivateKey)
        else "RS256"
    )
    headers = None if kid is None else {"kid": kid}
    return jwt.encode(claims(**overrides), key, algorithm=alg, headers=headers)  # type: ignore[arg-type]


def verifier_from(**settings: str) -> TokenVerifier:
    """TokenVerifier.from_env over LAPOR_JWT_<name> settings: key=..., key_next=..."""
    env = {f"LAPOR_JWT_{name.upper()}": value for name, value in settings.items()}
    return TokenVerifier.from_env(
        Env({"LAPOR_JWT_ISSUER": ISSUER, "LAPOR_JWT_AUDIENCE": AUDIENCE, **env})
    )


ROTATIONS = [
    ("ES256", "ES256-next"),
    ("RS256", "RS256-next"),
    ("RS256", "ES256"),  # the issuer changes key type
    ("HS256", "ES256"),  # from a shared secret to a public key
    ("HS256", "HS256-next"),
]


@pytest.mark.parametrize(("old", "new"), ROTATIONS)
def test_during_a_rotation_tokens_of_the_old_and_the_new_key_are_both_accepted(
    keys: dict[str, PrivateKeyTypes], old: str, new: str
) -> None:
    old_key, new_key = pick(keys, old), pick(keys, new)
    verifier = verifier_from(key=configured(old_key), key_next=configured(new_key))
    officer = Principal("officer-17", "pemda-51.08/disdukcapil", "officer")
    assert verifier.verify(token_of(old_key)) == officer
    assert verifier.verify(token_of(new_key)) == officer
    header = f"Bearer {token_of(new_key)}".encode()
    assert verifier.from_metadata([("authorization", header)]) == officer
    # Still only the issuer's keys: one it never had is refused.
    for stranger in (keys["ES256-other"], keys["RS256-other"], HS_OTHER):
        assert "invalid token" in refused(verifier, token_of(stranger))


@pytest.mark.parametrize(("old", "new"), ROTATIONS)
def test_once_the_next_key_is_promoted_the_old_keys_tokens_are_refused(
    keys: dict[str, PrivateKeyTypes], old: str, new: str
) -> None:
    old_key, new_key = pick(keys, old), pick(keys, new)
    verifier = verifier_from(key=configured(new_key))
    assert verifier.verify(token_of(new_key)).subject == "officer-17"
    assert "invalid token" in refused(verifier, token_of(old_key))


def test_the_next_key_answers_for_its_tokens_claims(keys: dict[str, PrivateKeyTypes]) -> None:
    """A token the next key signed is refused for its own fault, not for the first key's
    signature mismatch: the signature matched, so its claims decide."""
    verifier = verifier_from(key=configured(keys["ES256"]), key_next=configured(keys["RS256"]))
    now = int(time.time())
    expired = token_of(keys["RS256"], iat=now - 7200, exp=now - 3600)
    assert refused(verifier, expired) == "authorization: token expired"
    wrong_audience = token_of(keys["RS256"], aud="another-app")
    assert (
        refused(verifier, wrong_audience) == "authorization: invalid token (InvalidAudienceError)"
    )
    no_role = token_of(keys["RS256"], role="superuser")
    assert refused(verifier, no_role).startswith("authorization: role claim must be one of")


def test_a_refusal_by_every_key_names_the_closest_miss(keys: dict[str, PrivateKeyTypes]) -> None:
    verifier = verifier_from(key=HS_OLD, key_next=configured(keys["ES256"]))
    # ES256 by another key: the HMAC secret does not allow ES256, the EC key's check fails.
    message = refused(verifier, token_of(keys["ES256-other"]))
    assert message == "authorization: invalid token (InvalidSignatureError)"
    # RS256: the HMAC secret does not allow it, the EC key is of the other type.
    message = refused(verifier, token_of(keys["RS256"]))
    assert message == "authorization: invalid token (InvalidKeyError)"
    # Two public keys, an HS256 token: no key allows it.
    both_public = verifier_from(key=configured(keys["ES256"]), key_next=configured(keys["RS256"]))
    message = refused(both_public, token_of(HS_OTHER))
    assert message == "authorization: invalid token (InvalidAlgorithmError)"


@pytest.mark.parametrize("public", KEY_TYPES)
@pytest.mark.parametrize("slot", ["key", "key_next"])
def test_no_algorithm_confusion_between_a_secret_and_a_public_key(
    keys: dict[str, PrivateKeyTypes], public: str, slot: str
) -> None:
    """With an HMAC secret and a PEM key side by side, an HS256 token keyed with the (known)
    public PEM is refused, and the secret never verifies an RS/ES token."""
    pem = configured(keys[public])
    other = "key_next" if slot == "key" else "key"
    verifier = verifier_from(**{slot: pem, other: HS_OLD})
    for secret in (pem, pem + "\n", pem.strip()):
        token = hand_made({"alg": "HS256", "typ": "JWT"}, claims(), secret.encode())
        assert "invalid token" in refused(verifier, token)
    assert verifier.verify(token_of(HS_OLD)).subject == "officer-17"
    assert verifier.verify(token_of(keys[public])).subject == "officer-17"
    by_key = {tuple(k.algorithms): k.secret.reveal() for k in verifier.keys}
    assert by_key == {("RS256", "ES256"): pem.strip(), ("HS256",): HS_OLD}


def test_a_kid_selects_its_key(keys: dict[str, PrivateKeyTypes]) -> None:
    old, new = keys["ES256"], keys["RS256"]
    verifier = verifier_from(
        key=configured(old), key_id="2026a", key_next=configured(new), key_next_id="2027a"
    )
    assert verifier.verify(token_of(old, kid="2026a")).subject == "officer-17"
    assert verifier.verify(token_of(new, kid="2027a")).subject == "officer-17"
    # A kid naming a configured key is checked with that key only, never the other one.
    assert "invalid token" in refused(verifier, token_of(new, kid="2026a"))
    assert "invalid token" in refused(verifier, token_of(old, kid="2027a"))
    same_type = verifier_from(
        key=configured(old),
        key_id="2026a",
        key_next=configured(keys["ES256-next"]),
        key_next_id="2027a",
    )
    message = refused(same_type, token_of(keys["ES256-next"], kid="2026a"))
    assert message == "authorization: invalid token (InvalidSignatureError)"


def test_a_token_without_kid_or_with_an_unknown_kid_is_tried_against_every_key(
    keys: dict[str, PrivateKeyTypes],
) -> None:
    old, new = keys["ES256"], HS_NEW
    verifier = verifier_from(key=configured(old), key_id="2026a", key_next=new, key_next_id="2027a")
    for kid in (None, "2025z", ""):
        assert verifier.verify(token_of(old, kid=kid)).subject == "officer-17"
        assert verifier.verify(token_of(new, kid=kid)).subject == "officer-17"
    # An unknown kid signed by no configured key: UNAUTHENTICATED, as ever.
    message = refused(verifier, token_of(keys["ES256-other"], kid="2025z"))
    assert message == "authorization: invalid token (InvalidSignatureError)"
    assert "invalid token" in refused(verifier, token_of(HS_OTHER, kid="2025z"))


def test_the_single_key_configuration_is_as_before(keys: dict[str, PrivateKeyTypes]) -> None:
    """LAPOR_JWT_KEY alone (a blank LAPOR_JWT_KEY_NEXT is unset): one key, no kid, and a
    token's kid, whatever it says, changes nothing."""
    for extra in ({}, {"key_next": ""}, {"key_next": "  ", "key_next_id": " "}):
        verifier = verifier_from(key=configured(keys["ES256"]), **extra)
        assert verifier.keys == (VerificationKey(Secret(configured(keys["ES256"]).strip())),)
        for kid in (None, "any-kid"):
            assert verifier.verify(token_of(keys["ES256"], kid=kid)).subject == "officer-17"
            message = refused(verifier, token_of(keys["ES256-other"], kid=kid))
            assert message == "authorization: invalid token (InvalidSignatureError)"
    # As tests and tools build it directly: an HS256 secret, no next key.
    direct = TokenVerifier(Secret(HS_OLD), ISSUER)
    assert direct.keys == (VerificationKey(Secret(HS_OLD)),)
    assert direct.verify(token_of(HS_OLD)).subject == "officer-17"
    assert "invalid token" in refused(direct, token_of(HS_NEW))


PLACEHOLDER_PEM = (  # as in deploy/kubernetes/secret.example.yaml
    "-----BEGIN PUBLIC KEY-----\nCHANGE_ME_ISSUER_PUBLIC_KEY\n-----END PUBLIC KEY-----\n"
)


def bad_keys(keys: dict[str, PrivateKeyTypes]) -> dict[str, tuple[str, str]]:
    """A value that cannot verify tokens -> (value, the rule the error must state)."""
    private = (
        keys["RS256"]
        .private_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    p384 = ec.generate_private_key(ec.SECP384R1())
    good = configured(keys["ES256"])
    return {
        "short secret": ("s" * 31, "a PEM public key or a secret of at least 32 characters"),
        "placeholder PEM": (PLACEHOLDER_PEM, "is not a readable PEM public key"),
        "truncated PEM": (good[: len(good) // 2] + good[-26:], "is not a readable PEM public key"),
        "private key": (private, "holds a private key: it must be the issuer's public key"),
        "P-384 key": (public_pem(p384), "an RSA key (RS256) or an EC P-256 key (ES256)"),
    }


@pytest.mark.parametrize(
    "case", ["short secret", "placeholder PEM", "truncated PEM", "private key", "P-384 key"]
)
@pytest.mark.parametrize("variable", ["LAPOR_JWT_KEY_NEXT", "LAPOR_JWT_KEY"])
def test_a_key_that_cannot_verify_tokens_stops_the_service_naming_its_variable(
    keys: dict[str, PrivateKeyTypes], case: str, variable: str
) -> None:
    value, rule = bad_keys(keys)[case]
    good = configured(keys["RS256"])
    env = {"LAPOR_JWT_KEY": good, "LAPOR_JWT_ISSUER": ISSUER, variable: value}
    with pytest.raises(SettingsError) as caught:
        TokenVerifier.from_env(Env(env))
    message = str(caught.value)
    assert message.startswith(f"{variable} ") and rule in message
    for line in value.splitlines():
        if "-----" not in line and len(line) >= 8:
            assert line not in message


def test_key_ids_must_belong_to_a_key_and_differ(keys: dict[str, PrivateKeyTypes]) -> None:
    old, new = configured(keys["ES256"]), configured(keys["RS256"])
    with pytest.raises(SettingsError, match="^LAPOR_JWT_KEY_NEXT_ID is set but LAPOR_JWT_KEY_NEXT"):
        verifier_from(key=old, key_id="2026a", key_next_id="2027a")
    with pytest.raises(SettingsError, match="^LAPOR_JWT_KEY_NEXT_ID must differ from LAPOR_JWT"):
        verifier_from(key=old, key_id="2026a", key_next=new, key_next_id="2026a")
    # Ids are optional, each on its own.
    only_next = verifier_from(key=old, key_next=new, key_next_id="2027a")
    assert [k.kid for k in only_next.keys] == [None, "2027a"]

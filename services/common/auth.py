"""Officers' and admins' signed tokens (JWT), checked at the gRPC edge.

The issuer signs with HS256 (a shared secret) or RS256/ES256 (its private key; we hold the
public key). Claims: ``sub`` (the officer), ``institution`` (the institution or unit id the
officer works for), ``role`` (officer | institution_admin | national_admin), ``iss``,
``aud``, ``exp``. Tokens come in gRPC metadata as ``authorization: Bearer <token>``.

Key rotation: besides the issuer's key (``LAPOR_JWT_KEY``) the services may hold its next
key (``LAPOR_JWT_KEY_NEXT``) and accept tokens signed with either, so the issuer can switch
keys while every pod already knows both. Two fixed slots rather than an open-ended ring:
a rotation needs two keys at most, and PEM keys (several lines each) fit one variable each.
A key may carry the ``kid`` the issuer puts in the token header (``LAPOR_JWT_KEY_ID``,
``LAPOR_JWT_KEY_NEXT_ID``): a token naming a configured kid is checked with that key only; a
token without ``kid`` or with a kid no key carries is tried against each key in turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.common.errors import Unauthenticated
from services.common.settings import Env, Secret, SettingsError

ROLES = ("officer", "institution_admin", "national_admin")

# What a key that did not sign the token raises, the closest miss first: a bad signature, a
# key of the other public-key type, an algorithm the key does not allow. Any other error is
# final: the signature matched (claims are checked after it) or the token is malformed.
_NOT_THIS_KEY = (jwt.InvalidSignatureError, jwt.InvalidKeyError, jwt.InvalidAlgorithmError)


@dataclass(frozen=True)
class Principal:
    subject: str
    institution: str
    role: str

    @property
    def is_national_admin(self) -> bool:
        return self.role == "national_admin"


@dataclass(frozen=True)
class VerificationKey:
    """One key tokens may be signed with; ``kid`` is the token header's ``kid`` naming it."""

    secret: Secret
    kid: str | None = None

    @property
    def algorithms(self) -> list[str]:
        # Each key allows only its own kind of algorithm, so no algorithm confusion: a PEM
        # key never serves as an HMAC secret, and an HMAC secret never verifies RS/ES.
        return ["RS256", "ES256"] if "BEGIN" in self.secret.reveal() else ["HS256"]


def _key_from_env(env: Env, name: str, id_name: str) -> VerificationKey:
    """The key in ``name`` with its kid in ``id_name``; one that cannot verify tokens stops
    the service with a message naming ``name`` (never quoting the key)."""
    secret = env.secret(name)
    text = secret.reveal()
    if "BEGIN" not in text:
        if len(text) < 32:
            raise SettingsError(
                f"{name} must be a PEM public key or a secret of at least 32 characters"
            )
        return VerificationKey(secret, env.optional(id_name))
    if "PRIVATE KEY" in text:
        raise SettingsError(f"{name} holds a private key: it must be the issuer's public key")
    try:
        key = serialization.load_pem_public_key(text.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SettingsError(f"{name} is not a readable PEM public key") from None
    usable = isinstance(key, rsa.RSAPublicKey) or (
        isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    )
    if not usable:
        raise SettingsError(f"{name} must be an RSA key (RS256) or an EC P-256 key (ES256)")
    return VerificationKey(secret, env.optional(id_name))


@dataclass(frozen=True)
class TokenVerifier:
    key: Secret  # LAPOR_JWT_KEY
    issuer: str
    audience: str = "lapor"
    leeway_seconds: int = 30
    key_id: str | None = None  # LAPOR_JWT_KEY_ID
    next_key: VerificationKey | None = None  # LAPOR_JWT_KEY_NEXT, LAPOR_JWT_KEY_NEXT_ID

    @classmethod
    def from_env(cls, env: Env) -> TokenVerifier:
        current = _key_from_env(env, "LAPOR_JWT_KEY", "LAPOR_JWT_KEY_ID")
        following = None
        if env.optional("LAPOR_JWT_KEY_NEXT") is not None:
            following = _key_from_env(env, "LAPOR_JWT_KEY_NEXT", "LAPOR_JWT_KEY_NEXT_ID")
            if following.kid is not None and following.kid == current.kid:
                raise SettingsError("LAPOR_JWT_KEY_NEXT_ID must differ from LAPOR_JWT_KEY_ID")
        elif env.optional("LAPOR_JWT_KEY_NEXT_ID") is not None:
            raise SettingsError("LAPOR_JWT_KEY_NEXT_ID is set but LAPOR_JWT_KEY_NEXT is not")
        return cls(
            current.secret,
            env.text("LAPOR_JWT_ISSUER"),
            env.text("LAPOR_JWT_AUDIENCE", "lapor"),
            key_id=current.kid,
            next_key=following,
        )

    @property
    def keys(self) -> tuple[VerificationKey, ...]:
        first = VerificationKey(self.key, self.key_id)
        return (first,) if self.next_key is None else (first, self.next_key)

    def _candidates(self, token: str) -> tuple[VerificationKey, ...]:
        """The key the token's kid names, else every key (a malformed header: every key,
        and decoding reports what is wrong)."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            return self.keys
        named = tuple(k for k in self.keys if k.kid is not None and k.kid == kid)
        return named or self.keys

    def _decode(self, token: str) -> dict[str, Any]:
        refusal: jwt.PyJWTError | None = None
        for key in self._candidates(token):
            try:
                return jwt.decode(
                    token,
                    key.secret.reveal(),
                    algorithms=key.algorithms,
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=self.leeway_seconds,
                    options={"require": ["exp", "sub", "iss", "aud"]},
                )
            except _NOT_THIS_KEY as exc:  # the next key may have signed it
                if refusal is None or _miss(exc) < _miss(refusal):
                    refusal = exc
        assert refusal is not None  # there is always a key
        raise refusal

    def verify(self, token: str) -> Principal:
        try:
            claims = self._decode(token)
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("authorization: token expired") from None
        except (jwt.InvalidTokenError, jwt.InvalidKeyError) as exc:  # InvalidKeyError: a token
            # of the other public-key type (RS256 against an EC key, ES256 against RSA)
            raise Unauthenticated(f"authorization: invalid token ({type(exc).__name__})") from None
        role, institution = claims.get("role"), claims.get("institution")
        if role not in ROLES:
            raise Unauthenticated(f"authorization: role claim must be one of {', '.join(ROLES)}")
        if not isinstance(institution, str) or not institution:
            raise Unauthenticated("authorization: institution claim missing")
        return Principal(str(claims["sub"]), institution, role)

    def from_metadata(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Principal:
        for key, value in metadata or ():
            if key.lower() == "authorization":
                text = value.decode() if isinstance(value, bytes) else value
                scheme, _, token = text.partition(" ")
                if scheme.lower() != "bearer" or not token:
                    raise Unauthenticated("authorization: expected 'Bearer <token>'")
                return self.verify(token.strip())
        raise Unauthenticated("authorization: missing bearer token")


def _miss(exc: jwt.PyJWTError) -> int:
    return next(i for i, kind in enumerate(_NOT_THIS_KEY) if isinstance(exc, kind))


def issue_token(
    key: str,
    issuer: str,
    subject: str,
    institution: str,
    role: str,
    ttl_seconds: int = 3600,
    audience: str = "lapor",
    now: float | None = None,
) -> str:
    """Issue a token (HS256) — for tests, the demo and a development identity provider."""
    import time

    issued = int(now if now is not None else time.time())
    claims = {
        "sub": subject,
        "institution": institution,
        "role": role,
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "exp": issued + ttl_seconds,
    }
    return jwt.encode(claims, key, algorithm="HS256")

"""Officers' and admins' signed tokens (JWT), checked at the gRPC edge.

The issuer signs with HS256 (a shared secret) or RS256/ES256 (its private key; we hold the
public key). Claims: ``sub`` (the officer), ``institution`` (the institution or unit id the
officer works for), ``role`` (officer | institution_admin | national_admin), ``iss``,
``aud``, ``exp``. Tokens come in gRPC metadata as ``authorization: Bearer <token>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jwt

from services.common.errors import Unauthenticated
from services.common.settings import Env, Secret, SettingsError

ROLES = ("officer", "institution_admin", "national_admin")


@dataclass(frozen=True)
class Principal:
    subject: str
    institution: str
    role: str

    @property
    def is_national_admin(self) -> bool:
        return self.role == "national_admin"


@dataclass(frozen=True)
class TokenVerifier:
    key: Secret
    issuer: str
    audience: str = "lapor"
    leeway_seconds: int = 30

    @classmethod
    def from_env(cls, env: Env) -> TokenVerifier:
        key = env.secret("LAPOR_JWT_KEY")
        if len(key.reveal()) < 32 and "BEGIN" not in key.reveal():
            raise SettingsError(
                "LAPOR_JWT_KEY must be a PEM public key or a secret of at least 32 characters"
            )
        return cls(key, env.text("LAPOR_JWT_ISSUER"), env.text("LAPOR_JWT_AUDIENCE", "lapor"))

    @property
    def _algorithms(self) -> list[str]:
        return ["RS256", "ES256"] if "BEGIN" in self.key.reveal() else ["HS256"]

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self.key.reveal(),
                algorithms=self._algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
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

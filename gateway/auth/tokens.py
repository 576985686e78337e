"""Access tokens: RFC 9068 JWTs signed with the gateway key, and their verification into a ``Principal``.

Nothing here knows about HTTP frameworks: ``authenticate`` takes the raw ``Authorization`` header.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError

from gateway.auth.clients import ClientRegistry
from gateway.auth.keys import SigningKey
from gateway.auth.roles import ROLE_SCOPES
from gateway.errors import Unauthenticated
from gateway.models import Client

#: RFC 9068 section 2.1: the ``typ`` header of a JWT access token (the media type form is accepted).
ACCESS_TOKEN_TYPES: Final = frozenset({"at+jwt", "application/at+jwt"})

#: Tolerated clock difference between replicas, in seconds.
ACCESS_TOKEN_LEEWAY: Final = 5


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request: which client, for which agency, with which role and scopes."""

    client_id: str
    agency: str
    role: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class IssuedToken:
    """A freshly signed access token and what the token response says about it."""

    access_token: str
    expires_in: int
    scopes: frozenset[str]

    @property
    def scope(self) -> str:
        """The scopes as the space-separated ``scope`` parameter."""
        return format_scope(self.scopes)


def format_scope(scopes: Iterable[str]) -> str:
    """Scopes as one space-separated string, in a stable order."""
    return " ".join(sorted(scopes))


def issue_access_token(
    key: SigningKey,
    *,
    issuer: str,
    client: Client,
    scopes: frozenset[str],
    ttl: int,
    now: int | None = None,
) -> IssuedToken:
    """Sign an RFC 9068 access token for ``client`` with ``scopes``, valid for ``ttl`` seconds."""
    issued_at = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": client.client_id,
        "aud": issuer,
        "client_id": client.client_id,
        "exp": issued_at + ttl,
        "iat": issued_at,
        "jti": secrets.token_urlsafe(18),
        "scope": format_scope(scopes),
        "agency": client.agency,
        "role": client.role,
    }
    header = {"typ": "at+jwt", "alg": key.alg, "kid": key.kid}
    token = jwt.encode(header, claims, key.key, algorithms=[key.alg])
    return IssuedToken(access_token=token, expires_in=ttl, scopes=scopes)


def verify_access_token(
    token: str, key: SigningKey, *, issuer: str, now: int | None = None
) -> dict[str, Any]:
    """Check signature, ``typ``, issuer, audience and lifetime; the claims, or ``Unauthenticated``."""
    try:
        decoded = jwt.decode(token, key.key, algorithms=[key.alg])
    except JoseError as e:
        raise Unauthenticated("access token signature or format is invalid") from e
    typ = decoded.header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
        raise Unauthenticated("not an access token (typ must be at+jwt)")
    kid = decoded.header.get("kid")
    if kid is not None and kid != key.kid:
        raise Unauthenticated("access token signed with an unknown key")
    required: jwt.ClaimsOption = {"essential": True}
    registry = jwt.JWTClaimsRegistry(
        now=now,
        leeway=ACCESS_TOKEN_LEEWAY,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": issuer},
        sub=required,
        exp=required,
        iat=required,
        jti=required,
        client_id=required,
        scope=required,
        agency=required,
        role=required,
    )
    claims = decoded.claims
    try:
        registry.validate(claims)
    except ExpiredTokenError as e:
        raise Unauthenticated("access token expired") from e
    except JoseError as e:
        raise Unauthenticated(f"access token refused: {e.description}") from e
    for name in ("client_id", "scope", "agency", "role"):
        if not isinstance(claims[name], str):
            raise Unauthenticated(f"access token refused: claim '{name}' must be a string")
    if claims["sub"] != claims["client_id"]:
        raise Unauthenticated("access token refused: sub and client_id differ")
    return claims


def parse_bearer(authorization_header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750 section 2.1)."""
    if not authorization_header or not authorization_header.strip():
        error = Unauthenticated("an access token is required: Authorization: Bearer <token>")
        # RFC 6750 section 3.1: a request without credentials gets a challenge without an error code.
        error.headers["WWW-Authenticate"] = 'Bearer realm="veilig-delen"'
        raise error
    scheme, _, token = authorization_header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthenticated(
            "malformed Authorization header; expected: Bearer <token>", error="invalid_request"
        )
    return token


def authenticate(
    authorization_header: str | None,
    *,
    key: SigningKey,
    issuer: str,
    clients: ClientRegistry,
    now: int | None = None,
) -> Principal:
    """The caller behind an ``Authorization`` header, or ``Unauthenticated``.

    Besides the token itself this checks, with one primary-key lookup, that the client is still
    registered and not revoked: revoking a client ends its tokens at once.
    """
    claims = verify_access_token(parse_bearer(authorization_header), key, issuer=issuer, now=now)
    client = clients.get(claims["client_id"])
    if client is None or client.revoked_at is not None:
        raise Unauthenticated("client is revoked or no longer registered")
    if client.agency != claims["agency"] or client.role != claims["role"]:
        raise Unauthenticated("access token does not match the client's registration")
    return Principal(
        client_id=client.client_id,
        agency=client.agency,
        role=client.role,
        # Defence in depth: a token never grants more than the client's role allows today.
        scopes=frozenset(claims["scope"].split()) & ROLE_SCOPES.get(client.role, frozenset()),
    )

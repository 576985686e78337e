"""Access tokens: RFC 9068 JWTs signed with the gateway key, and their verification into a ``Principal``.

Nothing here knows about HTTP frameworks: ``authenticate`` takes the raw ``Authorization`` header.

A token's signature and claims are checked once: ``TokenCache`` keeps what a verified token says, by the
token's SHA-256, until the token expires. What can change while a token is valid, the client's
registration (revoked, or its agency or role changed), is read from the database on every request, so
revoking a client still ends its tokens at once, from any process.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from joserfc import jws, jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import OKPKey

from gateway.auth.clients import ClientRegistry
from gateway.auth.keys import TOKEN_SIGNING_ALG, SigningKey
from gateway.auth.roles import ROLE_SCOPES
from gateway.errors import Unauthenticated
from gateway.models import Client

#: RFC 9068 section 2.1: the ``typ`` header of a JWT access token (the media type form is accepted).
ACCESS_TOKEN_TYPES: Final = frozenset({"at+jwt", "application/at+jwt"})

#: Tolerated clock difference between replicas, in seconds.
ACCESS_TOKEN_LEEWAY: Final = 5

#: Verified tokens a ``TokenCache`` keeps by default: a few per client for thousands of clients.
TOKEN_CACHE_SIZE: Final = 4096


class VerifyingKeys(Protocol):
    """The keys access tokens may be signed with, by ``kid`` (``gateway.auth.keyring.KeyRing``)."""

    def verifying_key(self, kid: str | None) -> OKPKey | None:
        """The key that verifies a token naming ``kid`` (``None``: the current key), or ``None``."""


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
    token: str, key: SigningKey | VerifyingKeys, *, issuer: str, now: int | None = None
) -> dict[str, Any]:
    """Check signature, ``typ``, issuer, audience and lifetime; the claims, or ``Unauthenticated``.

    ``key`` is the one signing key, or the keys of a rotation (the current, a staged and the retired
    ones still in their grace period), of which the token's ``kid`` picks one.
    """
    try:
        header = jws.extract_compact(token.encode("utf-8", "surrogatepass")).headers()
    except (JoseError, ValueError) as e:
        raise Unauthenticated("access token signature or format is invalid") from e
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise Unauthenticated("access token signed with an unknown key")
    verifying = _verifying_key(key, kid)
    if verifying is None:
        raise Unauthenticated("access token signed with an unknown key")
    try:
        decoded = jwt.decode(token, verifying, algorithms=[TOKEN_SIGNING_ALG])
    except JoseError as e:
        raise Unauthenticated("access token signature or format is invalid") from e
    typ = decoded.header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
        raise Unauthenticated("not an access token (typ must be at+jwt)")
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


@dataclass(frozen=True)
class VerifiedToken:
    """What a token whose signature and claims were verified says: who, which scopes, until when."""

    client_id: str
    agency: str
    role: str
    scopes: frozenset[str]
    expires_at: int

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> VerifiedToken:
        """From the claims ``verify_access_token`` returned."""
        return cls(
            client_id=claims["client_id"],
            agency=claims["agency"],
            role=claims["role"],
            scopes=frozenset(claims["scope"].split()),
            expires_at=int(claims["exp"]),
        )

    def expired(self, now: float) -> bool:
        """Whether ``verify_access_token`` would refuse the token as expired at ``now``."""
        return self.expires_at < now - ACCESS_TOKEN_LEEWAY


class TokenCache:
    """Verified access tokens by the SHA-256 of the token, until they expire: a bounded LRU.

    Only tokens that passed ``verify_access_token`` go in, so a forged or malformed token is never
    cached and costs a verification every time. An entry past its token's ``exp`` (with the leeway) is
    dropped when looked up, so an expired token is refused as before. ``hits`` and ``misses`` count the
    lookups (for the hit rate in ``/metrics``).
    """

    def __init__(self, maxsize: int = TOKEN_CACHE_SIZE) -> None:
        if maxsize < 1:
            raise ValueError("a token cache holds at least one token")
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[bytes, VerifiedToken] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def get(self, token: str, now: float) -> VerifiedToken | None:
        """The verified token, or ``None`` when it is not cached or has expired (and is dropped)."""
        key = self._key(token)
        with self._lock:
            verified = self._entries.get(key)
            if verified is not None and verified.expired(now):
                del self._entries[key]
                verified = None
            if verified is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return verified

    def put(self, token: str, verified: VerifiedToken) -> None:
        """Keep ``verified`` for ``token``, dropping the least recently used entry past ``maxsize``."""
        key = self._key(token)
        with self._lock:
            self._entries[key] = verified
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every token (a new signing key, a test)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


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


def _verifying_key(key: SigningKey | VerifyingKeys, kid: str | None) -> OKPKey | None:
    if isinstance(key, SigningKey):
        return key.key if kid is None or kid == key.kid else None
    return key.verifying_key(kid)


def verified_token(
    authorization_header: str | None,
    *,
    key: SigningKey | VerifyingKeys,
    issuer: str,
    now: int | None = None,
    cache: TokenCache | None = None,
) -> VerifiedToken:
    """What the token of an ``Authorization`` header says, or ``Unauthenticated``: its signature and
    claims verified unless ``cache`` holds it from an earlier request (and it has not expired since).

    No database read: the caller is not known until `confirmed` checked the client's registration.
    """
    token = parse_bearer(authorization_header)
    verified = cache.get(token, time.time() if now is None else now) if cache is not None else None
    if verified is None:
        claims = verify_access_token(token, key, issuer=issuer, now=now)
        verified = VerifiedToken.from_claims(claims)
        if cache is not None:
            cache.put(token, verified)
    return verified


def token_scopes(verified: VerifiedToken) -> frozenset[str]:
    """The scopes a verified token grants: never more than its role allows today (defence in depth).

    What `confirmed` gives the principal, since a registration whose role differs refuses the token.
    """
    return verified.scopes & ROLE_SCOPES.get(verified.role, frozenset())


def confirmed(verified: VerifiedToken, clients: ClientRegistry) -> Principal:
    """The caller of a verified token, or ``Unauthenticated``: one primary-key lookup checks that the
    client is still registered as the token says and not revoked, so revoking a client ends its tokens
    at once, from any process."""
    registration = clients.registration(verified.client_id)
    if registration is None or registration.revoked:
        raise Unauthenticated("client is revoked or no longer registered")
    if registration.agency != verified.agency or registration.role != verified.role:
        raise Unauthenticated("access token does not match the client's registration")
    return Principal(
        client_id=verified.client_id,
        agency=registration.agency,
        role=registration.role,
        scopes=token_scopes(verified),
    )


def authenticate(
    authorization_header: str | None,
    *,
    key: SigningKey | VerifyingKeys,
    issuer: str,
    clients: ClientRegistry,
    now: int | None = None,
    cache: TokenCache | None = None,
) -> Principal:
    """The caller behind an ``Authorization`` header, or ``Unauthenticated``: `verified_token`, then
    `confirmed` against the client's registration."""
    verified = verified_token(authorization_header, key=key, issuer=issuer, now=now, cache=cache)
    return confirmed(verified, clients)

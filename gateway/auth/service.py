"""``AuthService``: the one object the app creates at start-up and keeps at ``app.state.auth``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from authlib.common.security import is_secure_transport
from joserfc import jwt
from joserfc.errors import JoseError
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from gateway.auth.clients import ASSERTION_ALGORITHMS, ClientRegistry
from gateway.auth.keyring import KeyRing
from gateway.auth.keys import DeliveryKey, SigningKey
from gateway.auth.ratelimit import LimitKind, RateLimits
from gateway.auth.replay import ReplayGuard
from gateway.auth.roles import SCOPES
from gateway.auth.server import AUTH_METHOD, GRANT_TYPE, TokenEndpoint, TokenResponse
from gateway.auth.tokens import Principal, TokenCache, VerifiedToken, confirmed, verified_token
from gateway.settings import Settings

log = logging.getLogger(__name__)

TOKEN_PATH = "/oauth2/token"  # noqa: S105 (a path, not a secret)
JWKS_PATH = "/oauth2/jwks"
METADATA_PATH = "/.well-known/oauth-authorization-server"


class AuthService:
    """Token endpoint, token verification, client registry, metadata and JWKS over one signing key."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        signing_key: SigningKey | None = None,
        on_rate_limited: Callable[[LimitKind], None] | None = None,
        registry: CollectorRegistry | None = None,
        delivery_key: DeliveryKey | None = None,
        delivery_keys: KeyRing | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        # Key rings follow rotations on the key files (gateway keys rotate): sign with the current key,
        # accept and publish the staged one and the retired ones still in their grace period.
        self.token_keys = (
            KeyRing.fixed(signing_key.key, "token")
            if signing_key
            else KeyRing.for_settings(settings, "token")
        )
        if delivery_keys is None:
            delivery_keys = (
                KeyRing.fixed(delivery_key.key, "delivery")
                if delivery_key
                else KeyRing.for_settings(settings, "delivery")
            )
        self.delivery_keys = delivery_keys
        self.issuer = settings.base_url
        self.token_url = f"{self.issuer}{TOKEN_PATH}"
        self.jwks_uri = f"{self.issuer}{JWKS_PATH}"
        self.clients = ClientRegistry(sessions)
        self.token_cache = TokenCache()
        self._key_generation = self.token_keys.generation()
        self._caches = _CacheCollector(self)
        if registry is not None:
            registry.register(self._caches)
        self.replay = ReplayGuard(sessions)
        self.limits = RateLimits(settings, on_refusal=on_rate_limited)
        self._token_endpoint = TokenEndpoint(
            issuer=self.issuer,
            clients=self.clients,
            replay=self.replay,
            signing_key=self.token_keys.signing_key,
            ttl=settings.access_token_ttl,
            limits=self.limits,
        )
        if not is_secure_transport(self.token_url):
            # Authlib refuses plain http:// except on loopback; every token request will say so.
            log.warning(
                "token endpoint %s is neither https:// nor loopback: token requests will be refused; "
                "set GATEWAY_PUBLIC_URL to the https:// URL clients use",
                self.token_url,
            )

    def token_response(
        self, form: Sequence[tuple[str, str]], headers: Mapping[str, str], address: str | None = None
    ) -> TokenResponse:
        """Answer ``POST /oauth2/token`` from source ``address`` (blocking: reads and writes the
        database); ``RateLimited`` past the failed-authentication limits."""
        return self._token_endpoint.handle(form, headers, address)

    def authenticate(self, authorization_header: str | None, now: int | None = None) -> Principal:
        """The caller behind an ``Authorization`` header, or ``Unauthenticated``: the token verified
        once and then served from ``token_cache``, the client's registration read on every call."""
        return self.confirm(self.verified_token(authorization_header, now))

    def verified_token(self, authorization_header: str | None, now: int | None = None) -> VerifiedToken:
        """What the header's token says, verified or from ``token_cache``; ``Unauthenticated``
        otherwise. No database read (safe on the event loop); `confirm` makes it a caller."""
        generation = self.token_keys.generation()
        if generation != self._key_generation:
            # The key files changed: a rotation may have ended a key at once (--grace 0), so tokens
            # cached as verified must be verified again against the keys as they are now.
            self.token_cache.clear()
            self._key_generation = generation
        return verified_token(
            authorization_header, key=self.token_keys, issuer=self.issuer, now=now, cache=self.token_cache
        )

    def confirm(self, verified: VerifiedToken) -> Principal:
        """The caller of a verified token as the client's registration says now (blocking: one indexed
        read); ``Unauthenticated`` when it is revoked or no longer matches."""
        return confirmed(verified, self.clients)

    def caller(self, verified: VerifiedToken) -> Principal:
        """`confirm`, then count the call against the client's rate limit (``RateLimited``, 429, past it).

        Keyed by the verified client id, so a caller cannot spend another client's budget.
        """
        principal = self.confirm(verified)
        self.limits.admit(principal.client_id)
        return principal

    @property
    def signing_key(self) -> SigningKey:
        """The key that signs access tokens now."""
        return self.token_keys.signing_key()

    @property
    def delivery_key(self) -> DeliveryKey:
        """The key that signs deliveries now."""
        return self.delivery_keys.delivery_key()

    def ready(self) -> bool:
        """Whether the signing key can sign and verify (for ``/readyz``)."""
        try:
            alg = self.signing_key.alg
            probe = jwt.encode({"alg": alg}, {"probe": True}, self.signing_key.key, algorithms=[alg])
            jwt.decode(probe, self.signing_key.key, algorithms=[alg])
        except JoseError:
            log.exception("token-signing key cannot sign")
            return False
        return True

    def metadata(self) -> dict[str, Any]:
        """RFC 8414 authorization server metadata."""
        return {
            "issuer": self.issuer,
            "token_endpoint": self.token_url,
            "jwks_uri": self.jwks_uri,
            "grant_types_supported": [GRANT_TYPE],
            "token_endpoint_auth_methods_supported": [AUTH_METHOD],
            "token_endpoint_auth_signing_alg_values_supported": [
                alg for algs in ASSERTION_ALGORITHMS.values() for alg in algs
            ],
            "scopes_supported": sorted(SCOPES),
            "response_types_supported": [],
        }

    def count_cache(self, name: str, counts: Callable[[], tuple[int, int] | None]) -> None:
        """Show another cache's ``(hits, misses)`` in ``/metrics`` as ``gateway_cache_*{cache=name}``."""
        self._caches.others[name] = counts

    def jwks(self) -> dict[str, Any]:
        """The public keys that verify access tokens and the signatures on deliveries, each by ``kid``:
        the current token key and delivery key first, then staged keys and retired ones in their grace."""
        tokens, deliveries = self.token_keys.public_jwks(), self.delivery_keys.public_jwks()
        return {"keys": [tokens[0], deliveries[0], *tokens[1:], *deliveries[1:]]}


class _CacheCollector(Collector):
    """``gateway_cache_hits_total`` and ``gateway_cache_misses_total`` of the verified-token cache, and of
    the caches added with `AuthService.count_cache` (one metric family for all, a label per cache)."""

    def __init__(self, auth: AuthService) -> None:
        self._auth = auth
        self.others: dict[str, Callable[[], tuple[int, int] | None]] = {}

    def collect(self) -> list[Metric]:
        cache = self._auth.token_cache
        hits = CounterMetricFamily("gateway_cache_hits", "Cache lookups that hit", labels=["cache"])
        misses = CounterMetricFamily("gateway_cache_misses", "Cache lookups that missed", labels=["cache"])
        hits.add_metric(["verified_token"], cache.hits)
        misses.add_metric(["verified_token"], cache.misses)
        for name, counts in sorted(self.others.items()):
            found = counts()
            if found is not None:
                hits.add_metric([name], found[0])
                misses.add_metric([name], found[1])
        return [hits, misses]

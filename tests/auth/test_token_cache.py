"""The verified-token cache: a token is verified once, yet revocation, expiry and the registration hold."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from gateway.auth import AuthService, ClientRegistry, generate_keypair
from gateway.auth.tokens import ACCESS_TOKEN_LEEWAY, TokenCache, VerifiedToken, issue_access_token
from gateway.db import make_engine, make_sessionmaker, transaction
from gateway.errors import Unauthenticated
from gateway.models import Client
from gateway.settings import Settings
from tests.auth.test_tokens import claims_for, refused, sign

EXCHANGE = frozenset({"exchange"})


@pytest.fixture
def client(auth: AuthService) -> Client:
    _, public_pem = generate_keypair("Ed25519")
    return auth.clients.register("vt-1", "veilig_thuis", "agency_system", public_pem)


def token_for(auth: AuthService, client: Client, ttl: int = 300, now: int | None = None) -> str:
    return issue_access_token(
        auth.signing_key, issuer=auth.issuer, client=client, scopes=EXCHANGE, ttl=ttl, now=now
    ).access_token


def test_a_token_is_verified_once_then_served_from_the_cache(auth: AuthService, client: Client) -> None:
    token = token_for(auth, client)
    first = auth.authenticate(f"Bearer {token}")
    assert (auth.token_cache.hits, auth.token_cache.misses, len(auth.token_cache)) == (0, 1, 1)
    again = auth.authenticate(f"Bearer {token}")
    assert again == first
    assert (auth.token_cache.hits, auth.token_cache.misses) == (1, 1)


def test_a_cached_token_of_a_revoked_client_is_refused(auth: AuthService, client: Client) -> None:
    token = token_for(auth, client)
    auth.authenticate(f"Bearer {token}")
    auth.clients.revoke("vt-1")
    assert "revoked" in refused(auth, token)
    assert auth.token_cache.hits == 1  # the cache answered; the revocation came from the database


def test_a_revocation_written_by_another_engine_ends_a_cached_token_at_once(
    auth: AuthService, client: Client, settings: Settings
) -> None:
    # As `gateway clients revoke` does from another process: its own engine, its own connection.
    elsewhere = ClientRegistry(make_sessionmaker(make_engine(settings.effective_database_url)))
    token = token_for(auth, client)
    auth.authenticate(f"Bearer {token}")
    elsewhere.revoke("vt-1")
    assert "revoked" in refused(auth, token)


def test_a_cached_token_is_refused_once_the_client_is_deleted_or_its_role_changes(
    auth: AuthService, client: Client, sessions: sessionmaker[Session]
) -> None:
    token = token_for(auth, client)
    auth.authenticate(f"Bearer {token}")
    with transaction(sessions) as s:
        s.execute(update(Client).where(Client.client_id == "vt-1").values(role="auditor"))
    assert "does not match" in refused(auth, token)
    with transaction(sessions) as s:
        s.execute(update(Client).where(Client.client_id == "vt-1").values(role="agency_system"))
    assert auth.authenticate(f"Bearer {token}").role == "agency_system"
    with transaction(sessions) as s:
        s.delete(s.get(Client, "vt-1"))
    assert "no longer registered" in refused(auth, token)


def test_an_expired_token_is_refused_even_when_cached(auth: AuthService, client: Client) -> None:
    now = int(time.time())
    token = token_for(auth, client, ttl=60, now=now)
    assert auth.authenticate(f"Bearer {token}", now=now).client_id == "vt-1"
    assert auth.authenticate(f"Bearer {token}", now=now + 60 + ACCESS_TOKEN_LEEWAY).client_id == "vt-1"
    with pytest.raises(Unauthenticated) as e:
        auth.authenticate(f"Bearer {token}", now=now + 60 + ACCESS_TOKEN_LEEWAY + 1)
    assert e.value.detail == "access token expired"
    assert len(auth.token_cache) == 0  # the expired entry went when it was looked up


def test_a_refused_token_is_never_cached(auth: AuthService, client: Client) -> None:
    forged = sign(auth.signing_key, claims_for(auth, client, iss="https://elders.example"))
    for _ in range(2):
        refused(auth, forged)
    assert (len(auth.token_cache), auth.token_cache.hits, auth.token_cache.misses) == (0, 0, 2)


def test_the_cache_keeps_the_most_recently_used_tokens() -> None:
    cache = TokenCache(maxsize=2)
    entry = VerifiedToken("c", "om", "agency_system", EXCHANGE, expires_at=int(time.time()) + 300)
    now = time.time()
    cache.put("a", entry)
    cache.put("b", entry)
    assert cache.get("a", now) == entry  # "a" is now the most recent
    cache.put("c", entry)
    assert len(cache) == 2
    assert cache.get("b", now) is None
    assert cache.get("a", now) == entry
    assert cache.get("c", now) == entry


def test_the_cache_is_keyed_by_the_whole_token() -> None:
    cache = TokenCache()
    entry = VerifiedToken("c", "om", "agency_system", EXCHANGE, expires_at=int(time.time()) + 300)
    cache.put("header.claims.signature", entry)
    assert cache.get("header.claims.signaturf", time.time()) is None


def test_the_hit_rate_is_in_the_metrics(settings: Settings, sessions: sessionmaker[Session]) -> None:
    registry = CollectorRegistry()
    auth = AuthService(settings, sessions, registry=registry)
    _, public_pem = generate_keypair("Ed25519")
    client = auth.clients.register("om-1", "om", "agency_system", public_pem)
    token = token_for(auth, client)
    for _ in range(3):
        auth.authenticate(f"Bearer {token}")
    text = generate_latest(registry).decode()
    assert 'gateway_cache_hits_total{cache="verified_token"} 2.0' in text
    assert 'gateway_cache_misses_total{cache="verified_token"} 1.0' in text

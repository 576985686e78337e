"""Access-token verification (``authenticate``) against crafted tokens, with a real SQLite registry."""

from __future__ import annotations

import time
from typing import Any

import pytest
from joserfc import jwt

from gateway.auth import AuthService, Principal, SigningKey, generate_keypair
from gateway.auth.tokens import issue_access_token
from gateway.errors import Unauthenticated
from gateway.models import Client


@pytest.fixture
def client(auth: AuthService) -> Client:
    _, public_pem = generate_keypair("Ed25519")
    return auth.clients.register("vt-1", "veilig_thuis", "agency_system", public_pem)


def claims_for(auth: AuthService, client: Client, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": auth.issuer,
        "sub": client.client_id,
        "aud": auth.issuer,
        "client_id": client.client_id,
        "exp": now + 300,
        "iat": now,
        "jti": "t-1",
        "scope": "exchange",
        "agency": client.agency,
        "role": client.role,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def sign(key: SigningKey, claims: dict[str, Any], **header: Any) -> str:
    return jwt.encode(
        {"typ": "at+jwt", "alg": "Ed25519", "kid": key.kid, **header}, claims, key.key, algorithms=["Ed25519"]
    )


def refused(auth: AuthService, token: str) -> str:
    with pytest.raises(Unauthenticated) as e:
        auth.authenticate(f"Bearer {token}")
    assert e.value.status == 401
    assert e.value.headers["WWW-Authenticate"].startswith("Bearer ")
    return e.value.detail


def test_an_issued_token_gives_the_principal(auth: AuthService, client: Client) -> None:
    issued = issue_access_token(
        auth.signing_key, issuer=auth.issuer, client=client, scopes=frozenset({"exchange"}), ttl=300
    )
    assert auth.authenticate(f"Bearer {issued.access_token}") == Principal(
        client_id="vt-1", agency="veilig_thuis", role="agency_system", scopes=frozenset({"exchange"})
    )


def test_a_well_formed_crafted_token_passes(auth: AuthService, client: Client) -> None:
    # The baseline for the refusals below: only the one change makes each of them fail.
    assert auth.authenticate(f"Bearer {sign(auth.signing_key, claims_for(auth, client))}").client_id == "vt-1"


def test_an_expired_token_is_refused(auth: AuthService, client: Client) -> None:
    past = int(time.time()) - 3600
    token = issue_access_token(
        auth.signing_key, issuer=auth.issuer, client=client, scopes=frozenset({"exchange"}), ttl=300, now=past
    ).access_token
    assert refused(auth, token) == "access token expired"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"iss": "https://elders.example"}, "Invalid claim: 'iss'"),
        ({"aud": "https://elders.example"}, "Invalid claim: 'aud'"),
        ({"aud": None}, "Missing claim: 'aud'"),
        ({"exp": None}, "Missing claim: 'exp'"),
        ({"jti": None}, "Missing claim: 'jti'"),
        ({"client_id": None}, "Missing claim: 'client_id'"),
        ({"scope": None}, "Missing claim: 'scope'"),
        ({"sub": "om-1"}, "sub and client_id differ"),
        ({"agency": "om"}, "does not match"),
        ({"role": "auditor"}, "does not match"),
        ({"iat": int(time.time()) + 3600}, "issued in the future"),
    ],
)
def test_a_token_with_a_wrong_claim_is_refused(
    auth: AuthService, client: Client, change: dict[str, Any], reason: str
) -> None:
    detail = refused(auth, sign(auth.signing_key, claims_for(auth, client, **change)))
    assert reason in detail


@pytest.mark.parametrize("typ", ["JWT", None, "dpop+jwt"])
def test_a_token_without_typ_at_jwt_is_refused(auth: AuthService, client: Client, typ: str | None) -> None:
    header = {"typ": typ} if typ else {}
    token = jwt.encode(
        {"alg": "Ed25519", **header},
        claims_for(auth, client),
        auth.signing_key.key,
        algorithms=["Ed25519"],
        default_type=None,
    )
    assert "typ" in refused(auth, token)


def test_the_media_type_form_of_typ_is_accepted(auth: AuthService, client: Client) -> None:
    token = sign(auth.signing_key, claims_for(auth, client), typ="application/at+jwt")
    assert auth.authenticate(f"Bearer {token}").client_id == "vt-1"


def test_a_token_signed_with_another_key_is_refused(auth: AuthService, client: Client) -> None:
    other = SigningKey.generate()
    assert "signature" in refused(auth, sign(other, claims_for(auth, client), kid=auth.signing_key.kid))


def test_a_token_naming_another_kid_is_refused(auth: AuthService, client: Client) -> None:
    assert "unknown key" in refused(auth, sign(auth.signing_key, claims_for(auth, client), kid="other"))


def test_a_revoked_client_loses_its_tokens(auth: AuthService, client: Client) -> None:
    token = sign(auth.signing_key, claims_for(auth, client))
    auth.clients.revoke("vt-1")
    assert "revoked" in refused(auth, token)


def test_a_token_for_an_unregistered_client_is_refused(auth: AuthService, client: Client) -> None:
    claims = claims_for(auth, client, sub="ghost", client_id="ghost")
    assert "revoked or no longer registered" in refused(auth, sign(auth.signing_key, claims))


def test_scopes_beyond_the_role_are_dropped(auth: AuthService, client: Client) -> None:
    token = sign(auth.signing_key, claims_for(auth, client, scope="exchange audit:all"))
    assert auth.authenticate(f"Bearer {token}").scopes == frozenset({"exchange"})


def test_a_missing_header_has_no_error_code(auth: AuthService) -> None:
    with pytest.raises(Unauthenticated) as e:
        auth.authenticate(None)
    assert e.value.headers["WWW-Authenticate"] == 'Bearer realm="veilig-delen"'

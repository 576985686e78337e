"""RFC 8414 metadata and the JWKS over HTTP; access tokens verify against the published keys."""

from __future__ import annotations

import time

from joserfc import jwt
from joserfc.jwk import KeySet, OKPKey

from tests.auth.conftest import LiveGateway


def test_metadata(gateway: LiveGateway) -> None:
    r = gateway.http.get(f"{gateway.base}/.well-known/oauth-authorization-server")
    assert r.status_code == 200
    assert r.json() == {
        "issuer": gateway.base,
        "token_endpoint": f"{gateway.base}/oauth2/token",
        "jwks_uri": f"{gateway.base}/oauth2/jwks",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["Ed25519", "EdDSA", "ES256", "RS256"],
        "scopes_supported": ["audit", "audit:all", "exchange", "policy"],
        "response_types_supported": [],
    }


def test_jwks_holds_the_public_signing_keys_only(gateway: LiveGateway) -> None:
    r = gateway.http.get(f"{gateway.base}/oauth2/jwks")
    assert r.status_code == 200
    token_key, delivery_key = r.json()["keys"]
    for jwk in (token_key, delivery_key):
        assert set(jwk) == {"kty", "crv", "x", "kid", "use", "alg"}
        assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("OKP", "Ed25519", "sig", "Ed25519")
    assert token_key["kid"] == OKPKey.import_key(token_key).thumbprint()
    # The delivery-signing key (RFC 9421 signatures on pushes) is a different key with its own kid.
    assert delivery_key["kid"] == "delivery-" + OKPKey.import_key(delivery_key).thumbprint()
    assert delivery_key["x"] != token_key["x"]


def test_an_access_token_verifies_against_the_jwks(gateway: LiveGateway) -> None:
    gateway.register("om-1", agency="om")
    before = int(time.time())
    token = gateway.token("om-1")
    key_set = KeySet.import_key_set(gateway.http.get(f"{gateway.base}/oauth2/jwks").json())
    decoded = jwt.decode(token, key_set, algorithms=["Ed25519"])
    assert decoded.header["typ"] == "at+jwt"
    assert decoded.header["alg"] == "Ed25519"
    assert decoded.header["kid"] == key_set.keys[0].kid
    claims = decoded.claims
    assert set(claims) == {"iss", "sub", "aud", "client_id", "exp", "iat", "jti", "scope", "agency", "role"}
    assert claims["iss"] == claims["aud"] == gateway.base
    assert claims["sub"] == claims["client_id"] == "om-1"
    assert (claims["agency"], claims["role"], claims["scope"]) == ("om", "agency_system", "exchange")
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] - claims["iat"] == 300
    assert gateway.token("om-1") != token

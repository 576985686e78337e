"""POST /oauth2/token over real HTTP: client credentials with RFC 7523 client assertions."""

from __future__ import annotations

import base64
import json
import time

import pytest

from gateway.auth import ClientRegistry, generate_keypair, make_client_assertion
from gateway.db import make_engine, make_sessionmaker
from gateway.settings import Settings
from tests.auth.conftest import ASSERTION_TYPE, LiveGateway


def refused(r, error: str = "invalid_client", status: int = 400) -> str:  # type: ignore[no-untyped-def]
    """Assert an RFC 6749 section 5.2 error response; returns its description."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["error"] == error, body
    assert set(body) <= {"error", "error_description", "error_uri"}
    return str(body.get("error_description", ""))


@pytest.mark.parametrize("kind", ["Ed25519", "ES256", "RS256"])
def test_each_key_type_gets_a_token_that_opens_the_route(gateway: LiveGateway, kind: str) -> None:
    gateway.register(f"politie-{kind.lower()}", kind=kind)  # type: ignore[arg-type]
    r = gateway.post_token(gateway.assertion(f"politie-{kind.lower()}"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "exchange"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["pragma"] == "no-cache"
    ping = gateway.ping(body["access_token"])
    assert ping.status_code == 200, ping.text
    assert ping.json() == {
        "clientId": f"politie-{kind.lower()}",
        "agency": "politie",
        "role": "agency_system",
        "scopes": ["exchange"],
    }


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
def test_eddsa_is_accepted_for_an_ed25519_key(gateway: LiveGateway) -> None:
    gateway.register("vt-1", agency="veilig_thuis")
    r = gateway.post_token(gateway.assertion("vt-1", alg="EdDSA"))
    assert r.status_code == 200, r.text


def test_a_replayed_assertion_is_refused(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    assertion = gateway.assertion("politie-1")
    assert gateway.post_token(assertion).status_code == 200
    assert refused(gateway.post_token(assertion)) == "replayed jti"
    # A new assertion that reuses a spent jti is a replay too.
    reused = gateway.assertion("politie-1", jti="fixed-jti")
    assert gateway.post_token(reused).status_code == 200
    assert refused(gateway.post_token(gateway.assertion("politie-1", jti="fixed-jti"))) == "replayed jti"


def test_jti_is_unique_per_client_not_globally(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    gateway.register("om-1", agency="om")
    assert gateway.post_token(gateway.assertion("politie-1", jti="shared")).status_code == 200
    assert gateway.post_token(gateway.assertion("om-1", jti="shared")).status_code == 200


def test_a_long_jti_is_accepted_once(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    jti = "j" * 300
    assert gateway.post_token(gateway.assertion("politie-1", jti=jti)).status_code == 200
    assert refused(gateway.post_token(gateway.assertion("politie-1", jti=jti))) == "replayed jti"


def test_the_wrong_audience_is_refused(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    r = gateway.post_token(gateway.assertion("politie-1", token_url="https://elders.example/oauth2/token"))
    assert "aud" in refused(r)


def test_the_issuer_url_is_accepted_as_audience(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    r = gateway.post_token(gateway.assertion("politie-1", token_url=gateway.base))
    assert r.status_code == 200, r.text


def test_exp_more_than_five_minutes_ahead_is_refused(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    assert "300" in refused(gateway.post_token(gateway.assertion("politie-1", exp_in=3600)))
    assert "300" in refused(gateway.post_token(gateway.assertion("politie-1", exp_in=400)))
    assert gateway.post_token(gateway.assertion("politie-1", exp_in=300)).status_code == 200


def test_an_expired_assertion_is_refused(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    long_ago = int(time.time()) - 600
    assertion = gateway.assertion("politie-1", exp_in=-120, claims={"iat": long_ago})
    assert "expired" in refused(gateway.post_token(assertion))


@pytest.mark.parametrize("claim", ["exp", "jti", "iss", "sub", "aud"])
def test_a_missing_claim_is_refused(gateway: LiveGateway, claim: str) -> None:
    gateway.register("politie-1")
    assertion = gateway.assertion("politie-1", claims={claim: None})
    description = refused(gateway.post_token(assertion))
    assert claim in description or "does not exist" in description


def test_iat_or_nbf_in_the_future_is_refused(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    later = int(time.time()) + 200
    assert "issued in the future" in refused(
        gateway.post_token(gateway.assertion("politie-1", exp_in=250, claims={"iat": later}))
    )
    assert "not yet valid" in refused(
        gateway.post_token(gateway.assertion("politie-1", exp_in=250, claims={"nbf": later}))
    )


def test_iss_must_equal_sub(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    gateway.register("om-1", agency="om")
    r = gateway.post_token(gateway.assertion("politie-1", claims={"iss": "om-1"}))
    assert "Issuer and Subject" in refused(r)


def test_an_unknown_client_is_refused(gateway: LiveGateway) -> None:
    private_pem, _ = generate_keypair("Ed25519")
    r = gateway.post_token(make_client_assertion("nobody", private_pem, gateway.token_url))
    assert "does not exist" in refused(r)


def test_a_revoked_client_gets_no_token_and_its_token_stops_working(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    token = gateway.token("politie-1")
    assert gateway.ping(token).status_code == 200
    gateway.auth.clients.revoke("politie-1")
    refused(gateway.post_token(gateway.assertion("politie-1")))
    r = gateway.ping(token)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer ")
    assert "revoked" in r.json()["detail"]


def test_a_client_registered_from_elsewhere_gets_a_token_at_once(
    gateway: LiveGateway, settings: Settings
) -> None:
    # Another process (the CLI) with its own engine writes the registration.
    cli_registry = ClientRegistry(make_sessionmaker(make_engine(settings.effective_database_url)))
    private_pem, public_pem = generate_keypair("ES256")
    cli_registry.register("rvdk-1", "rvdk", "agency_system", public_pem)
    r = gateway.post_token(make_client_assertion("rvdk-1", private_pem, gateway.token_url))
    assert r.status_code == 200, r.text
    cli_registry.revoke("rvdk-1")
    assert gateway.ping(r.json()["access_token"]).status_code == 401


def test_an_assertion_signed_with_another_key_is_refused(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    other_private, _ = generate_keypair("Ed25519")
    r = gateway.post_token(gateway.assertion("politie-1", private_key=other_private))
    assert "signature" in refused(r)


def test_an_algorithm_other_than_the_registered_keys_is_refused(gateway: LiveGateway) -> None:
    private_pem = gateway.register("politie-rsa", kind="RS256")
    r = gateway.post_token(make_client_assertion("politie-rsa", private_pem, gateway.token_url, alg="PS256"))
    assert "PS256" in refused(r)


def test_an_unsigned_assertion_is_refused(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    signed = gateway.assertion("politie-1")
    _header, payload, _signature = signed.split(".")
    unsigned = "eyJhbGciOiJub25lIn0." + payload + "."  # {"alg":"none"}
    refused(gateway.post_token(unsigned))


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b.c", "e30.e30.", "W10.W10.AA", "é.é.é"])
def test_a_garbage_assertion_is_a_400_not_a_500(gateway: LiveGateway, garbage: str) -> None:
    refused(gateway.post_token(garbage))


@pytest.mark.parametrize("header", [{"alg": 'R"S256\u00e9'}, {"alg": "Ed25519", "x\u00e9\\": 1}])
def test_odd_characters_in_an_assertion_are_not_echoed_raw(
    gateway: LiveGateway, header: dict[str, object]
) -> None:
    # Authlib refuses to build an error whose description holds '"', '\\' or non-ASCII: that was a 500.
    gateway.register("politie-1")
    _header, payload, signature = gateway.assertion("politie-1").split(".")
    forged = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    description = refused(gateway.post_token(f"{forged}.{payload}.{signature}"))
    assert description.startswith("client assertion refused: ")
    assert '"' not in description
    assert "\\" not in description


def test_a_scope_outside_the_role_is_refused(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    assert "not allowed for role agency_system" in refused(
        gateway.post_token(gateway.assertion("politie-1"), scope="exchange audit"), error="invalid_scope"
    )
    assert "unknown scope" in refused(
        gateway.post_token(gateway.assertion("politie-1"), scope="everything"), error="invalid_scope"
    )
    r = gateway.post_token(gateway.assertion("politie-1"), scope="exchange")
    assert r.status_code == 200
    assert r.json()["scope"] == "exchange"


@pytest.mark.parametrize(
    ("role", "scope"),
    [
        ("agency_system", "exchange"),
        ("privacy_officer", "audit"),
        ("auditor", "audit:all"),
        ("policy_author", "policy"),
    ],
)
def test_each_role_gets_its_scope_by_default(gateway: LiveGateway, role: str, scope: str) -> None:
    gateway.register("client-1", agency="veilig_thuis", role=role)
    r = gateway.post_token(gateway.assertion("client-1"))
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == scope


def test_grant_type_and_assertion_type_are_checked(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    data = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": gateway.assertion("politie-1")}
    refused(gateway.http.post(gateway.token_url, data=data), error="invalid_request")
    refused(
        gateway.http.post(gateway.token_url, data={**data, "grant_type": "password"}),
        error="unsupported_grant_type",
    )
    r = gateway.post_token(gateway.assertion("politie-1"), client_assertion_type="urn:example:other")
    assert "client_assertion_type" in refused(r)
    r = gateway.http.post(gateway.token_url, data={"grant_type": "client_credentials"})
    refused(r)


def test_parameters_must_be_form_encoded_and_not_repeated(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    fields = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": gateway.assertion("politie-1"),
    }
    refused(gateway.http.post(gateway.token_url, json=fields), error="invalid_request")
    repeated = [*fields.items(), ("scope", "exchange"), ("scope", "exchange")]
    r = gateway.http.post(
        gateway.token_url,
        content="&".join(f"{k}={v}" for k, v in repeated),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert "repeated" in refused(r, error="invalid_request")


def test_a_client_id_parameter_must_match_the_assertion(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    r = gateway.post_token(gateway.assertion("politie-1"), client_id="om-1")
    assert "client_id" in refused(r)


def test_errors_do_not_echo_the_assertion(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    assertion = gateway.assertion("politie-1", exp_in=3600, claims={"secret-ish": "s3cr3t-value"})
    r = gateway.post_token(assertion)
    refused(r)
    for part in assertion.split("."):
        assert part not in r.text
    assert "s3cr3t-value" not in r.text


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_authlibs_own_private_key_jwt_client_gets_a_token(gateway: LiveGateway) -> None:
    # What an agency system in Python would run. Authlib's assertions live an hour by default, which
    # the gateway refuses, so the client sets a short exp.
    from authlib.integrations.httpx_client import OAuth2Client
    from authlib.oauth2.rfc7523 import PrivateKeyJWT
    from joserfc.jwk import OKPKey

    pem = gateway.register("politie-1")
    method = PrivateKeyJWT(gateway.token_url, alg="Ed25519", claims={"exp": int(time.time()) + 60})
    with OAuth2Client("politie-1", OKPKey.import_key(pem), token_endpoint_auth_method=method) as client:
        token = client.fetch_token(gateway.token_url, grant_type="client_credentials")
    assert token["scope"] == "exchange"
    assert gateway.ping(token["access_token"]).status_code == 200

"""AuthService on its own: readiness and the refusal of plain HTTP off loopback."""

from __future__ import annotations

from pathlib import Path

from gateway.auth import AuthService, generate_keypair, make_client_assertion
from tests.auth.conftest import ASSERTION_TYPE, make_sessions, make_settings


def test_ready_when_the_key_signs(auth: AuthService) -> None:
    assert auth.ready() is True


def test_the_key_is_made_once_per_data_dir(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    sessions = make_sessions(settings)
    assert AuthService(settings, sessions).signing_key.kid == AuthService(settings, sessions).signing_key.kid


def test_plain_http_off_loopback_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path).model_copy(update={"host": "0.0.0.0"})
    auth = AuthService(settings, make_sessions(settings))
    private_pem, public_pem = generate_keypair("Ed25519")
    auth.clients.register("politie-1", "politie", "agency_system", public_pem)
    form = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", make_client_assertion("politie-1", private_pem, auth.token_url)),
    ]
    response = auth.token_response(form, {})
    assert response.status == 400
    assert response.body["error"] == "insecure_transport"


def test_https_public_url_sets_issuer_and_audience(tmp_path: Path) -> None:
    settings = make_settings(tmp_path).model_copy(update={"public_url": "https://gateway.example/"})
    auth = AuthService(settings, make_sessions(settings))
    assert auth.issuer == "https://gateway.example"
    assert auth.metadata()["token_endpoint"] == "https://gateway.example/oauth2/token"
    private_pem, public_pem = generate_keypair("ES256")
    auth.clients.register("om-1", "om", "agency_system", public_pem)
    form = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", make_client_assertion("om-1", private_pem, auth.token_url)),
    ]
    response = auth.token_response(form, {})
    assert response.status == 200, response.body
    assert auth.authenticate(f"Bearer {response.body['access_token']}").agency == "om"

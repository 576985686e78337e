"""require_scope and the bearer check on a protected route, over real HTTP."""

from __future__ import annotations

import pytest

from gateway.auth import require_scope
from tests.auth.conftest import LiveGateway


def test_no_token_is_a_401_with_a_bearer_challenge(gateway: LiveGateway) -> None:
    r = gateway.ping(None)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="veilig-delen"'
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 401


@pytest.mark.parametrize("header", ["Basic cG9saXRpZTpzZWNyZXQ=", "Bearer", "Bearer a b", "token"])
def test_a_malformed_authorization_header_is_a_401(gateway: LiveGateway, header: str) -> None:
    r = gateway.http.get(f"{gateway.base}/v1/ping", headers={"Authorization": header})
    assert r.status_code == 401
    assert 'error="invalid_request"' in r.headers["www-authenticate"]


def test_a_garbage_token_is_a_401_invalid_token(gateway: LiveGateway) -> None:
    r = gateway.ping("not.a.token")
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_a_client_assertion_is_not_an_access_token(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    r = gateway.ping(gateway.assertion("politie-1"))
    assert r.status_code == 401


def test_the_wrong_scope_is_a_403(gateway: LiveGateway) -> None:
    gateway.register("fg-politie", role="privacy_officer")
    r = gateway.ping(gateway.token("fg-politie"))
    assert r.status_code == 403, r.text
    assert r.json()["detail"] == "scope exchange required"
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


def test_the_scheme_is_case_insensitive(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    token = gateway.token("politie-1")
    r = gateway.http.get(f"{gateway.base}/v1/ping", headers={"Authorization": f"bearer {token}"})
    assert r.status_code == 200, r.text


def test_require_scope_refuses_nonsense_at_import_time() -> None:
    with pytest.raises(ValueError, match="at least one"):
        require_scope()
    with pytest.raises(ValueError, match="unknown scope"):
        require_scope("exchnage")

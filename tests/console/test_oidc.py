"""Logging in to the console with OpenID Connect against a stand-in provider served over real HTTP.

The console runs in-process (TestClient, the browser); the provider (tests/console/_oidc_provider.py,
Authlib's server pieces) runs in uvicorn on a free port, and the console's Authlib client reaches it
over HTTP for discovery, JWKS and the token. Redirects between the two are followed by hand.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pydantic
import pytest
from fastapi.testclient import TestClient

from audit import write_private_file
from connectors import simulated_connectors
from gateway.app import create_app
from gateway.console.oidc import FLOW_COOKIE, OidcConfig, OidcConfigError
from gateway.runtime import Runtime
from gateway.settings import Settings
from tests.console._oidc_provider import CLIENT_ID, StandInProvider
from tests.console.conftest import BASE, Console, csrf, share_case
from tests.live import free_port, serve

CALLBACK = f"{BASE}/console/login/oidc/callback"
SECRET = "stand-in-client-secret-0123456789"
OFFICER = {"sub": "fg-politie-7", "agency": "politie", "roles": ["medewerker", "privacy_officer"]}


@dataclass
class Setup:
    runtime: Runtime
    app: Any
    provider: StandInProvider
    case_id: str

    def browser(self) -> TestClient:
        return TestClient(self.app, base_url=BASE)


@pytest.fixture(scope="module")
def oidc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    data = tmp_path_factory.mktemp("oidc")
    secret_file = data / "console-oidc-secret"
    write_private_file(secret_file, SECRET.encode())
    provider = StandInProvider(CALLBACK, SECRET)
    with serve(provider.app) as issuer:
        provider.knobs.issuer = issuer
        settings = Settings(
            data_dir=data / "gw",
            console_oidc_issuer=issuer,
            console_oidc_client_id=CLIENT_ID,
            console_oidc_client_secret_file=secret_file,
        )
        rt = Runtime(settings, connectors=simulated_connectors())
        app = create_app(runtime=rt)
        case_id = share_case(rt, TestClient(app, base_url=BASE))
        yield Setup(rt, app, provider, case_id)
        rt.close()


@pytest.fixture(autouse=True)
def _reset(request: pytest.FixtureRequest) -> None:
    if "oidc" in request.fixturenames:
        knobs = request.getfixturevalue("oidc").provider.knobs
        knobs.user, knobs.audience, knobs.lifetime, knobs.forge = dict(OFFICER), CLIENT_ID, 300, False


def to_provider(browser: TestClient) -> str:
    """Start a login; the provider's answer (the callback URL with code and state)."""
    r = browser.get("/console/login/oidc", follow_redirects=False)
    assert r.status_code == 302, r.text
    assert FLOW_COOKIE in r.headers["set-cookie"] and "samesite=lax" in r.headers["set-cookie"].lower()
    back = httpx.get(r.headers["location"], follow_redirects=False, timeout=10)
    assert back.status_code == 302, back.text
    location = back.headers["location"]
    assert location.startswith(CALLBACK)
    return location


def login(setup: Setup, browser: TestClient | None = None) -> tuple[TestClient, httpx.Response]:
    browser = browser or setup.browser()
    return browser, browser.get(to_provider(browser), follow_redirects=False)


def test_a_login_gives_a_session_of_the_agency_and_role_in_the_id_token(oidc: Setup) -> None:
    browser, r = login(oidc)
    assert r.status_code == 200 and "U bent ingelogd" in r.text
    assert 'http-equiv="refresh" content="0; url=/console/"' in r.text  # same-site: the Strict cookie goes
    cookies = r.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("vd_console="))
    assert "max-age=1800" in session.lower() and "samesite=strict" in session.lower()
    assert any(c.startswith(f'{FLOW_COOKIE}=""') for c in cookies)  # the login in progress is gone
    home = browser.get(f"/console/?caseId={oidc.case_id}")
    assert home.status_code == 200 and "Privacyfunctionaris van politie" in home.text
    assert home.text.count("/console/entries/") >= 3  # politie's own entries of the case

    # PKCE S256: the challenge went to the authorization endpoint, its verifier to the token endpoint.
    asked = oidc.provider.knobs.authorize_requests[-1]
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert asked["nonce"] and asked["state"] and asked["scope"] == "openid"
    assert len(oidc.provider.knobs.token_requests[-1]["code_verifier"]) >= 43

    # The same person at om sees none of politie's entries; an auditor claim sees all.
    oidc.provider.knobs.user = {"sub": "fg-om-1", "agency": "om", "roles": "privacy_officer"}
    om, _ = login(oidc)
    page = om.get(f"/console/?caseId={oidc.case_id}").text
    assert "/console/entries/" not in page and "Geen vermeldingen gevonden" in page
    oidc.provider.knobs.user = {"sub": "audit-1", "agency": "om", "roles": ["auditor"]}
    auditor, _ = login(oidc)
    assert "Raad voor de Kinderbescherming" in auditor.get(f"/console/?caseId={oidc.case_id}").text

    # Logging out ends the session and offers the provider's logout.
    out = browser.post("/console/logout", data={"csrf": csrf(home.text)})
    assert out.status_code == 200 and "U bent uitgelogd" in out.text
    assert f"{oidc.provider.knobs.issuer}/logout?client_id={CLIENT_ID}" in out.text
    assert browser.get("/console/").status_code == 401


@pytest.mark.parametrize(
    "knob",
    [{"audience": "another-app"}, {"lifetime": -600}, {"forge": True}],
    ids=["wrong-audience", "expired", "bad-signature"],
)
def test_an_id_token_that_does_not_validate_is_refused(oidc: Setup, knob: dict[str, Any]) -> None:
    for name, value in knob.items():
        setattr(oidc.provider.knobs, name, value)
    browser, r = login(oidc)
    assert r.status_code == 400 and "Het bewijs van de inlogdienst is niet geldig" in r.text
    assert browser.get("/console/").status_code == 401


@pytest.mark.parametrize(
    ("user", "status", "says"),
    [
        ({"sub": "x1", "roles": ["privacy_officer"]}, 403, "Geen bekende organisatie"),
        ({"sub": "x2", "agency": "ministerie", "roles": ["auditor"]}, 403, "Geen bekende organisatie"),
        ({"sub": "x3", "agency": "politie", "roles": ["medewerker"]}, 403, "Geen toegang tot de console"),
        ({"sub": "x4", "agency": "politie"}, 403, "Geen toegang tot de console"),
    ],
    ids=["no-agency", "unknown-agency", "no-console-role", "no-roles"],
)
def test_claims_without_a_known_agency_or_a_console_role_are_refused(
    oidc: Setup, user: dict[str, Any], status: int, says: str
) -> None:
    oidc.provider.knobs.user = user
    browser, r = login(oidc)
    assert r.status_code == status and says in r.text, r.text
    assert browser.get("/console/").status_code == 401


def test_a_mismatched_or_replayed_state_is_a_dutch_400(oidc: Setup, caplog: pytest.LogCaptureFixture) -> None:
    refused = "Deze inlogpoging is niet (meer) geldig"
    browser = oidc.browser()
    callback = to_provider(browser)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    with caplog.at_level(logging.DEBUG):
        forged = browser.get(re.sub(r"state=[^&]+", "state=vervalst", callback))
        assert forged.status_code == 400 and refused in forged.text
        # Another browser (no login in progress there) cannot use this browser's answer either.
        stranger = oidc.browser()
        assert stranger.get(to_provider(stranger)).status_code == 200  # its own login works...
        elsewhere = oidc.browser().get(callback)
        assert elsewhere.status_code == 400 and refused in elsewhere.text  # ...someone else's does not

        browser, ok = login(oidc)
        assert ok.status_code == 200
        flow_cookie_gone = browser.get(callback)  # the flow cookie was deleted by the first callback
        assert flow_cookie_gone.status_code == 400 and refused in flow_cookie_gone.text
        junk = oidc.browser().get("/console/login/oidc/callback?code=x&state=y&error_description=%0a")
        assert junk.status_code == 400
    ours = ("gateway", "authlib.integrations")  # the console's side, not the stand-in provider's
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(ours))
    assert code not in logged and SECRET not in logged and "vervalst" not in logged


def test_the_code_is_useless_without_its_pkce_verifier(oidc: Setup) -> None:
    """Whoever intercepts the code cannot redeem it: the provider wants the verifier only the console has."""
    callback = to_provider(oidc.browser())
    code = parse_qs(urlsplit(callback).query)["code"][0]
    token_url = f"{oidc.provider.knobs.issuer}/token"
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}
    auth = (CLIENT_ID, SECRET)
    r = httpx.post(token_url, data=form, auth=auth, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request", r.text
    r = httpx.post(token_url, data=form | {"code_verifier": "a" * 50}, auth=auth, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    no_challenge = httpx.get(
        f"{oidc.provider.knobs.issuer}/authorize",
        params={"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": CALLBACK, "scope": "openid"},
        follow_redirects=False,
        timeout=10,
    )
    assert no_challenge.status_code in (302, 400)
    assert "code=" not in no_challenge.headers.get("location", "")


def test_the_login_page_offers_the_provider_only_when_one_is_configured(
    oidc: Setup, console: Console
) -> None:
    with_oidc = oidc.browser().get("/console/")
    assert with_oidc.status_code == 401 and 'href="/console/login/oidc"' in with_oidc.text
    without = TestClient(console.client.app, base_url=BASE)
    page = without.get("/console/")
    assert page.status_code == 401 and "/login/oidc" not in page.text and "gateway console-link" in page.text
    assert without.get("/console/login/oidc").status_code == 404
    assert without.get("/console/login/oidc/callback?code=a&state=b").status_code == 404


def test_an_unreachable_provider_is_a_dutch_503(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        console_oidc_issuer=f"http://127.0.0.1:{free_port()}",
        console_oidc_client_id=CLIENT_ID,
    )
    rt = Runtime(settings, connectors=simulated_connectors())
    try:
        browser = TestClient(create_app(runtime=rt), base_url=BASE)
        r = browser.get("/console/login/oidc", follow_redirects=False)
        assert r.status_code == 503 and "De inlogdienst is niet bereikbaar" in r.text
    finally:
        rt.close()


def test_settings_are_checked_and_the_secret_comes_from_a_file(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="GATEWAY_CONSOLE_OIDC_CLIENT_ID"):
        Settings(data_dir=tmp_path, console_oidc_issuer="https://idp.example")
    with pytest.raises(pydantic.ValidationError, match="GATEWAY_CONSOLE_OIDC_ISSUER must be an https"):
        Settings(data_dir=tmp_path, console_oidc_issuer="http://idp.example", console_oidc_client_id="c")
    missing = Settings(
        data_dir=tmp_path,
        console_oidc_issuer="https://idp.example",
        console_oidc_client_id="c",
        console_oidc_client_secret_file=tmp_path / "nope",
    )
    with pytest.raises(OidcConfigError, match="GATEWAY_CONSOLE_OIDC_CLIENT_SECRET_FILE"):
        OidcConfig.from_settings(missing)
    write_private_file(tmp_path / "secret", b"s3cr3t\n")
    config = OidcConfig.from_settings(
        missing.model_copy(update={"console_oidc_client_secret_file": tmp_path / "secret"})
    )
    assert config is not None and config.client_secret == "s3cr3t" and "s3cr3t" not in repr(config)
    assert config.redirect_url == "http://127.0.0.1:8000/console/login/oidc/callback"

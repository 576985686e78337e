"""Malformed token requests over real HTTP: each is an RFC 6749 section 5.2 error naming the parameter,
never a 500 (issue 7, finding 4: repeated parameters with '"' or non-ASCII names were a 500)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.auth import AuthService
from tests.auth.conftest import ASSERTION_TYPE, LiveGateway, build_app, make_sessions, make_settings
from tests.live import free_port, serve

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
GOOD = f"grant_type=client_credentials&client_assertion_type={quote(ASSERTION_TYPE, safe='')}"


def oauth_error(r: httpx.Response, error: str = "invalid_request") -> str:
    """Assert an RFC 6749 section 5.2 error; returns its description."""
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"] == error, body
    assert set(body) <= {"error", "error_description", "error_uri"}
    return str(body.get("error_description", ""))


def post(gateway: LiveGateway, body: str | bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return gateway.http.post(gateway.token_url, content=body, headers=FORM if headers is None else headers)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("grant_type=client_credentials&grant_type=client_credentials", "grant_type"),
        (f"{GOOD}&client_assertion=a.b.c&client_assertion=d.e.f", "client_assertion"),
        (f"{GOOD}&client_assertion_type=x", "client_assertion_type"),
        (f"{GOOD}&scope=exchange&scope=", "scope"),
        (f"{GOOD}&a%22b=1&a%22b=2", "a%22b"),
        (f"{GOOD}&%C3%A9=1&%C3%A9=2", "%C3%A9"),
        (f"{GOOD}&a%5Cb=1&a%5Cb=2", "a%5Cb"),
        (f"{GOOD}&%01=1&%01=2", "%01"),
        (f"{GOOD}&%FF=1&%FF=2", "%EF%BF%BD"),  # not UTF-8: decoded as U+FFFD, then named safely
        (f"{GOOD}&%F0%9F%92%A5=1&%F0%9F%92%A5=2", "%F0%9F%92%A5"),
    ],
)
def test_a_repeated_parameter_is_named_whatever_its_name(gateway: LiveGateway, body: str, named: str) -> None:
    # RFC 6749 section 3.2: parameters MUST NOT be included more than once.
    description = oauth_error(post(gateway, body))
    assert description == f"parameter {named} is repeated"


def test_empty_values_are_treated_as_omitted(gateway: LiveGateway) -> None:
    # RFC 6749 section 3.1: "Parameters sent without a value MUST be treated as if they were omitted".
    assert oauth_error(post(gateway, "grant_type=&client_assertion=&client_assertion_type=")) == (
        "missing grant_type"
    )
    gateway.register("politie-1")
    assertion = gateway.assertion("politie-1")
    r = post(gateway, f"{GOOD}&client_assertion={assertion}&scope=&client_id=")
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "exchange"


def test_an_empty_assertion_is_a_missing_one(gateway: LiveGateway) -> None:
    assert oauth_error(post(gateway, f"{GOOD}&client_assertion="), error="invalid_client")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/json", "multipart/form-data; boundary=x", "", "application/x-www-form"],
)
def test_a_body_that_is_not_a_form_is_refused(gateway: LiveGateway, content_type: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    description = oauth_error(post(gateway, "grant_type=client_credentials", headers))
    assert "application/x-www-form-urlencoded" in description


def test_a_multipart_upload_is_refused(gateway: LiveGateway) -> None:
    r = gateway.http.post(gateway.token_url, files={"grant_type": ("a", b"client_credentials")})
    assert "application/x-www-form-urlencoded" in oauth_error(r)


@pytest.mark.parametrize("count", [21, 1000, 5000])
def test_too_many_parameters_are_refused(gateway: LiveGateway, count: int) -> None:
    body = "&".join(f"p{i}=1" for i in range(count))
    assert oauth_error(post(gateway, body)) == "too many parameters (at most 20)"


def test_twenty_parameters_are_read(gateway: LiveGateway) -> None:
    gateway.register("politie-1")
    extra = "&".join(f"x{i}=1" for i in range(16))
    r = post(gateway, f"{GOOD}&client_assertion={gateway.assertion('politie-1')}&{extra}")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("body", [b"\xff\xfe\x00", b"=", b"&&&", b"%", b"%zz=%zz", b"grant_type"])
def test_bytes_that_are_barely_a_form_are_a_400(gateway: LiveGateway, body: bytes) -> None:
    r = post(gateway, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] in {"invalid_request", "invalid_client"}


# --- property: whatever the form, an OAuth2 error and never a 5xx ------------------------------------


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    """One server for every example (failures are not rate-limited here: each example is independent)."""
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    s = make_settings(data_dir, free_port()).model_copy(
        update={"auth_failures_per_client": "100000/hour", "auth_failures_per_address": "100000/hour"}
    )
    auth = AuthService(s, make_sessions(s))
    with serve(build_app(auth), port=s.port) as base, httpx.Client(timeout=30) as http:
        yield LiveGateway(base=base, auth=auth, http=http)


NAMES = st.one_of(
    st.sampled_from(["grant_type", "client_assertion", "client_assertion_type", "scope", "client_id"]),
    st.text(max_size=8),
)
VALUES = st.one_of(
    st.sampled_from(["client_credentials", ASSERTION_TYPE, "a.b.c", "e30.e30.", "exchange", ""]),
    st.text(max_size=24),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.lists(st.tuples(NAMES, VALUES), max_size=8))
def test_no_form_is_a_server_error(fuzz_gateway: LiveGateway, fields: list[tuple[str, str]]) -> None:
    body = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in fields)
    r = post(fuzz_gateway, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] in {
        "invalid_request",
        "invalid_client",
        "unsupported_grant_type",
        "invalid_scope",
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=64))
def test_no_body_is_a_server_error(fuzz_gateway: LiveGateway, body: bytes) -> None:
    r = post(fuzz_gateway, body)
    assert r.status_code == 400, r.text
    assert "error" in r.json()

"""Rate limits over real HTTP (DESIGN.md section 7): per client on every authenticated route, and on
failed client authentications at the token endpoint, per client id and per source address.

No test depends on the speed of the machine: each uses a limit per minute (or per hour) that a test
cannot drain by waiting, so the call past the budget is refused however slow the run is.
"""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.auth import ClientRegistry, generate_keypair, make_client_assertion
from gateway.auth.tokens import issue_access_token
from tests.e2e.conftest import ASSERTION_TYPE, Gateway, start_gateway
from tests.live import serve

RATE_LIMITED = "https://veilig-delen.example/problems/rate-limited"
UNAVAILABLE = "https://veilig-delen.example/problems/rate-limiter-unavailable"
REDIS = "redis://127.0.0.1:6379/0"


@contextmanager
def running(data_dir: Path, **settings: Any) -> Iterator[Gateway]:
    """A whole gateway with ``settings`` on a real socket."""
    runtime, sock = start_gateway(data_dir, **settings)
    try:
        with serve(create_app(runtime=runtime), sock=sock) as base:
            gw = Gateway(base=base, runtime=runtime)
            try:
                yield gw
            finally:
                gw.http.close()
    finally:
        runtime.close()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway allowing 5 requests a minute per client (no extra burst)."""
    with running(tmp_path_factory.mktemp("limited"), rate_limit="5/minute", rate_burst=5) as gw:
        yield gw


def unique(prefix: str) -> str:
    """A client id no other test (nor an earlier run sharing Redis) has used."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def from_address(address: str) -> httpx.Client:
    """An HTTP client whose connections come from ``address`` (any of 127.0.0.0/8 is loopback)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def token_form(gw: Gateway, client_id: str, key: bytes | None = None) -> dict[str, str]:
    assertion = make_client_assertion(client_id, key or gw.keys[client_id], gw.token_url)
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }


def assert_rate_limited(r: httpx.Response, *, max_wait: int) -> dict[str, Any]:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert re.fullmatch(r"[0-9]+", r.headers["retry-after"]), r.headers["retry-after"]
    assert 1 <= int(r.headers["retry-after"]) <= max_wait
    body: dict[str, Any] = r.json()
    assert body["type"] == RATE_LIMITED
    assert body["status"] == 429
    return body


def metric(gw: Gateway, limit: str) -> float:
    """The value of ``gateway_rate_limited_total{limit=...}`` on ``/metrics`` (0 when absent)."""
    text = gw.http.get(f"{gw.base}/metrics").text
    found = re.search(rf'^gateway_rate_limited_total{{limit="{limit}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


# --- per client, every authenticated route ------------------------------------------------------------


def test_the_sixth_call_in_a_minute_is_refused_with_retry_after(limited: Gateway) -> None:
    me, other = unique("politie"), unique("om")
    limited.register(me, "politie", "agency_system")
    limited.register(other, "om", "agency_system")
    before = metric(limited, "client")
    with limited.as_(me) as c:
        assert [c.get("/v1/inbox").status_code for _ in range(5)] == [200] * 5
        body = assert_rate_limited(c.get("/v1/inbox"), max_wait=60)
    assert "5/minute" in body["detail"]
    assert me in body["detail"]
    assert metric(limited, "client") == before + 1
    # The budget is the client's own: another agency's system is not slowed down.
    with limited.as_(other) as c:
        assert c.get("/v1/inbox").status_code == 200


def test_every_authenticated_route_draws_on_the_same_budget(limited: Gateway) -> None:
    me = unique("vt")
    limited.register(me, "veilig_thuis", "agency_system")
    decision = {
        "action": "share",
        "caseId": "VD-NOPE",
        "informationType": "signalering",
        "purpose": "veiligheidsbeoordeling",
        "recipient": "politie",
    }
    with limited.as_(me) as c:
        statuses = [
            c.get("/v1/inbox").status_code,
            c.get("/v1/cases/VD-NOPE").status_code,  # a 404 counts as well
            c.post("/v1/decisions", json=decision).status_code,
            c.get("/v1/audit/entries").status_code,  # a 403 (scope) counts as well
            c.post("/v1/inbox/nope/ack").status_code,
        ]
        assert 429 not in statuses, statuses
        assert_rate_limited(c.put("/v1/cases/VD-NOPE/tracks/zorg", json={"open": True}), max_wait=60)
        assert_rate_limited(c.get("/v1/policies"), max_wait=60)


def test_unauthenticated_routes_are_not_limited_per_client(limited: Gateway) -> None:
    assert [limited.http.get(f"{limited.base}/healthz").status_code for _ in range(8)] == [200] * 8


def test_a_burst_above_the_rate_is_admitted_up_to_the_burst(tmp_path: Path) -> None:
    # 5 a minute with a burst of 8: a quiet client may make 8 calls at once, the 9th waits.
    with running(tmp_path, rate_limit="5/minute", rate_burst=8) as gw:
        gw.register("politie-system", "politie", "agency_system")
        with gw.as_("politie-system") as c:
            assert [c.get("/v1/inbox").status_code for _ in range(8)] == [200] * 8
            body = assert_rate_limited(c.get("/v1/inbox"), max_wait=96)
    assert "burst of 8" in body["detail"]


def test_the_default_limit_admits_a_hundred_calls_at_once(tmp_path: Path) -> None:
    # DESIGN.md section 7: 50 a second with a burst of 100. Whatever the speed of the machine, 100 calls
    # fit the budget; the limit stops a runaway client, not an ordinary busy one.
    with running(tmp_path) as gw:
        gw.register("politie-system", "politie", "agency_system")
        with gw.as_("politie-system") as c:
            statuses = {c.get("/v1/inbox").status_code for _ in range(100)}
    assert statuses == {200}


# --- shared across replicas through Redis -----------------------------------------------------------


def test_two_gateways_on_one_redis_share_one_budget(tmp_path: Path) -> None:
    me = unique("politie")
    private_pem, public_pem = generate_keypair("Ed25519")
    settings = {"rate_limit": "5/minute", "rate_burst": 5, "rate_limit_storage": REDIS}
    with running(tmp_path / "a", **settings) as a, running(tmp_path / "b", **settings) as b:
        for gw in (a, b):
            ClientRegistry(gw.runtime.sessions).register(me, "politie", "agency_system", public_pem)
            gw.keys[me] = private_pem
        with a.as_(me) as on_a, b.as_(me) as on_b:
            statuses = [on_a.get("/v1/inbox").status_code for _ in range(3)]
            statuses += [on_b.get("/v1/inbox").status_code for _ in range(2)]
            assert statuses == [200] * 5
            assert_rate_limited(on_a.get("/v1/inbox"), max_wait=60)
            assert_rate_limited(on_b.get("/v1/inbox"), max_wait=60)


def test_an_unreachable_redis_fails_closed_with_503(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port on which nothing listens
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
        with running(tmp_path, rate_limit_storage=dead) as gw:
            gw.register("politie-system", "politie", "agency_system")
            # The token endpoint consults the limiter before it verifies anything: it cannot issue.
            r = gw.token_response("politie-system")
            assert r.status_code == 503, r.text
            assert r.json()["type"] == UNAVAILABLE
            assert int(r.headers["retry-after"]) >= 1
            # A token issued before Redis went away is no way round it either.
            client = gw.runtime.auth.clients.get_active("politie-system")
            assert client is not None
            token = issue_access_token(
                gw.runtime.auth.signing_key,
                issuer=gw.runtime.auth.issuer,
                client=client,
                scopes=frozenset({"exchange"}),
                ttl=300,
            ).access_token
            r = gw.http.get(f"{gw.base}/v1/inbox", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["type"] == UNAVAILABLE
            assert int(r.headers["retry-after"]) >= 1
            # And the gateway does not call itself ready while its limiter cannot count.
            ready = gw.http.get(f"{gw.base}/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["rateLimits"] == "storage unreachable"
            assert int(ready.headers["retry-after"]) >= 1


# --- failed client authentications at the token endpoint ----------------------------------------------


def test_the_eleventh_failed_assertion_for_a_client_id_is_refused_before_it_is_verified(
    limited: Gateway,
) -> None:
    victim, bystander = unique("politie"), unique("om")
    limited.register(victim, "politie", "agency_system")
    limited.register(bystander, "om", "agency_system")
    wrong_key, _ = generate_keypair("Ed25519")
    before = metric(limited, "token_client")
    # Ten bad assertions from ten addresses: the per-address limit never trips, the per-client one does.
    for n in range(10):
        with from_address(f"127.0.1.{n + 1}") as http:
            r = http.post(limited.token_url, data=token_form(limited, victim, wrong_key))
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "invalid_client"
    with from_address("127.0.1.11") as http:
        body = assert_rate_limited(
            http.post(limited.token_url, data=token_form(limited, victim, wrong_key)), max_wait=60
        )
        assert "client id" in body["detail"]
        assert "10/minute" in body["detail"]
        # Even a valid assertion is refused now: the check comes before the signature is verified...
        assert_rate_limited(http.post(limited.token_url, data=token_form(limited, victim)), max_wait=60)
        # ...and a valid client with another id, from another address, still gets its token.
        r = http.post(limited.token_url, data=token_form(limited, bystander))
        assert r.status_code == 200, r.text
    assert metric(limited, "token_client") == before + 2


def test_the_eleventh_failure_from_one_address_is_refused_whatever_the_client_id(
    limited: Gateway,
) -> None:
    wrong_key, _ = generate_keypair("Ed25519")
    elsewhere = unique("vt")
    limited.register(elsewhere, "veilig_thuis", "agency_system")
    with from_address("127.0.2.1") as http:
        for n in range(10):
            # X-Forwarded-For is not honoured (none configured): a new one each time changes nothing.
            headers = {"X-Forwarded-For": f"198.51.100.{n}"}
            r = http.post(
                limited.token_url, data=token_form(limited, unique("nobody"), wrong_key), headers=headers
            )
            assert r.status_code == 400, r.text
        body = assert_rate_limited(
            http.post(limited.token_url, data=token_form(limited, unique("nobody"), wrong_key)), max_wait=60
        )
        assert "address" in body["detail"]
        # The address is locked out, for valid clients too (they share it with the attacker)...
        assert_rate_limited(http.post(limited.token_url, data=token_form(limited, elsewhere)), max_wait=60)
    # ...but the same client from another address is not.
    with from_address("127.0.2.2") as http:
        r = http.post(limited.token_url, data=token_form(limited, elsewhere))
        assert r.status_code == 200, r.text


def test_successful_token_requests_do_not_count_as_failures(limited: Gateway) -> None:
    me = unique("om")
    limited.register(me, "om", "agency_system")
    with from_address("127.0.3.1") as http:
        for _ in range(12):
            r = http.post(limited.token_url, data=token_form(limited, me))
            assert r.status_code == 200, r.text


def test_x_forwarded_for_from_loopback_is_not_honoured_unless_configured(tmp_path: Path) -> None:
    # uvicorn alone would trust X-Forwarded-For from 127.0.0.1; an attacker on the host could then
    # take a new address for every try. Without GATEWAY_FORWARDED_ALLOW_IPS the socket's address counts.
    wrong_key, _ = generate_keypair("Ed25519")
    with running(tmp_path, auth_failures_per_address="3/hour") as gw:
        with from_address("127.0.0.1") as http:
            for n in range(3):
                form = token_form(gw, unique("nobody"), wrong_key)
                r = http.post(gw.token_url, data=form, headers={"X-Forwarded-For": f"198.51.100.{n}"})
                assert r.status_code == 400, r.text
            form = token_form(gw, unique("nobody"), wrong_key)
            r = http.post(gw.token_url, data=form, headers={"X-Forwarded-For": "198.51.100.99"})
            assert_rate_limited(r, max_wait=3600)


def test_a_configured_proxy_names_the_source_address(tmp_path: Path) -> None:
    wrong_key, _ = generate_keypair("Ed25519")
    runtime, sock = start_gateway(
        tmp_path, auth_failures_per_address="3/hour", forwarded_allow_ips="127.0.0.1"
    )
    with serve(create_app(runtime=runtime), sock=sock, forwarded_allow_ips="127.0.0.1") as base:
        gw = Gateway(base=base, runtime=runtime)
        gw.register("politie-system", "politie", "agency_system")
        with from_address("127.0.0.1") as http:
            for _ in range(3):
                form = token_form(gw, unique("nobody"), wrong_key)
                r = http.post(gw.token_url, data=form, headers={"X-Forwarded-For": "198.51.100.7"})
                assert r.status_code == 400, r.text
            form = token_form(gw, unique("nobody"), wrong_key)
            r = http.post(gw.token_url, data=form, headers={"X-Forwarded-For": "198.51.100.7"})
            assert_rate_limited(r, max_wait=3600)
            # Behind the proxy, another agency's address is another budget.
            form = token_form(gw, "politie-system")
            r = http.post(gw.token_url, data=form, headers={"X-Forwarded-For": "198.51.100.8"})
            assert r.status_code == 200, r.text
        gw.http.close()
    runtime.close()

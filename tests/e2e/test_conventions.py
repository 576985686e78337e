"""DESIGN 4 conventions on every response: problem+json, API-Version, security headers, trace context."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import Gateway

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_openapi_is_public_and_lists_the_contract(gateway: Gateway) -> None:
    r = httpx.get(f"{gateway.base}/v1/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path in [
        "/v1/cases",
        "/v1/cases/{caseId}",
        "/v1/cases/{caseId}/transitions",
        "/v1/cases/{caseId}/tracks/{track}",
        "/v1/cases/{caseId}/shares",
        "/v1/inbox",
        "/v1/inbox/{messageId}/ack",
        "/v1/cases/{caseId}/requests",
        "/v1/decisions",
        "/v1/audit/entries",
        "/v1/audit/entries/{index}",
        "/v1/audit/search",
        "/v1/audit/checkpoint",
        "/v1/audit/verifier-key",
        "/v1/audit/proofs/inclusion",
        "/v1/audit/proofs/consistency",
        "/v1/audit/export",
        "/v1/policies",
        "/v1/policies/reload",
        "/oauth2/token",
    ]:
        assert path in paths, path


def test_every_response_carries_version_and_security_headers(gateway: Gateway) -> None:
    for r in [
        httpx.get(f"{gateway.base}/healthz"),
        httpx.get(f"{gateway.base}/v1/inbox"),  # 401
        httpx.get(f"{gateway.base}/v1/nope"),  # 404
    ]:
        assert r.headers["API-Version"] == "1.0.0"
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "DENY"


def test_unknown_route_is_a_problem(gateway: Gateway) -> None:
    r = httpx.get(f"{gateway.base}/v1/nope")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 404


def test_no_token_is_401_with_www_authenticate(gateway: Gateway) -> None:
    r = httpx.post(f"{gateway.base}/v1/cases", json={"flow": "acuut", "subjects": []})
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.headers["content-type"].startswith("application/problem+json")


def test_garbage_token_is_401(gateway: Gateway) -> None:
    r = httpx.get(f"{gateway.base}/v1/inbox", headers={"Authorization": "Bearer not.a.token"})
    assert r.status_code == 401
    assert "WWW-Authenticate" in r.headers


def test_wrong_scope_is_403(gateway: Gateway) -> None:
    with gateway.as_("politie-fg") as officer:  # scope audit, not exchange
        r = officer.get("/v1/inbox")
        assert r.status_code == 403
        assert "exchange" in r.json()["detail"]
    with gateway.agency("politie") as system:  # scope exchange, not audit / policy
        assert system.get("/v1/audit/entries").status_code == 403
        assert system.get("/v1/policies").status_code == 403
        assert system.post("/v1/policies/reload").status_code == 403


def test_traceparent_is_taken_in_and_recorded(gateway: Gateway) -> None:
    case_id = gateway.open_case()
    with gateway.agency("politie") as c:
        r = c.get(f"/v1/cases/{case_id}", headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
    assert r.status_code == 200
    assert r.headers["traceparent"].startswith(f"00-{TRACE_ID}-")
    with gateway.as_("auditor") as a:
        entries = a.get("/v1/audit/entries", params={"caseId": case_id, "type": "access"}).json()["entries"]
    assert entries[-1]["entry"]["traceId"] == TRACE_ID
    assert entries[-1]["entry"]["parentSpanId"] == "00f067aa0ba902b7"


def test_a_trace_is_started_when_none_comes_in(gateway: Gateway) -> None:
    r = httpx.get(f"{gateway.base}/healthz")
    version, trace_id, span_id, _flags = r.headers["traceparent"].split("-")
    assert version == "00" and len(trace_id) == 32 and len(span_id) == 16 and trace_id != "0" * 32


def test_operations_endpoints(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.base}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.base}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "database": "ok",
        "rateLimits": "ok",
        "policy": "ok",
        "signingKey": "ok",
    }
    metrics = httpx.get(f"{gateway.base}/metrics")
    assert metrics.status_code == 200
    assert "gateway_http_requests_total" in metrics.text
    assert "gateway_policy_decisions_total" in metrics.text


def test_invalid_json_body_is_a_400_not_a_500(gateway: Gateway) -> None:
    with gateway.agency("politie") as c:
        r = c.post("/v1/cases", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["message"] == "the body is not valid JSON"


def test_an_unexpected_error_is_still_a_problem_with_the_headers(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "-".join(["vertrouwelijk", "4711"])  # built, so no source line in a traceback holds it

    def broken(*_a: object, **_k: object) -> object:
        raise RuntimeError(secret)

    monkeypatch.setattr(gateway.runtime.audit, "search", broken)
    with gateway.as_("auditor") as a:
        r = a.get("/v1/audit/entries")
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json() == {
        "type": "about:blank",
        "title": "Internal error",
        "status": 500,
        "detail": "unexpected error",
    }
    assert r.headers["API-Version"] == "1.0.0"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert secret not in r.text
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "unexpected error: RuntimeError" in logged  # logged by type and frames, never the message
    assert secret not in logged
    assert all(rec.exc_info is None for rec in caplog.records)

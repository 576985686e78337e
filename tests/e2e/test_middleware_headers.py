"""The conventions middleware on raw ASGI messages: what it adds, keeps, replaces and counts."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from prometheus_client import generate_latest

from gateway.api.middleware import SECURITY_HEADERS, Conventions
from gateway.runtime import Metrics

INCOMING = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def call(
    base_url: str, app_headers: list[tuple[bytes, bytes]], request_headers: list[tuple[bytes, bytes]]
) -> tuple[list[tuple[bytes, bytes]], dict[str, Any], Metrics]:
    metrics = Metrics()
    runtime: Any = SimpleNamespace(settings=SimpleNamespace(base_url=base_url), metrics=metrics)
    sent: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["route"] = SimpleNamespace(path="/v1/things/{id}")
        await send({"type": "http.response.start", "status": 201, "headers": list(app_headers)})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/v1/things/1",
        "headers": request_headers,
    }
    asyncio.run(Conventions(app, runtime)(scope, receive, send))
    return sent[0]["headers"], scope, metrics


def names(headers: list[tuple[bytes, bytes]]) -> list[str]:
    return [n.decode() for n, _ in headers]


def test_the_security_headers_are_added_once_and_the_apps_own_are_kept() -> None:
    headers, _, _ = call("http://127.0.0.1:8000", [(b"cache-control", b"max-age=60")], [])
    assert names(headers).count("cache-control") == 1
    assert (b"cache-control", b"max-age=60") in headers
    for name, value in SECURITY_HEADERS.items():
        if name != "Cache-Control":
            assert (name.lower().encode(), value.encode()) in headers
    assert "strict-transport-security" not in names(headers)


def test_hsts_only_behind_an_https_url() -> None:
    headers, _, _ = call("https://gateway.example", [], [])
    assert (b"strict-transport-security", b"max-age=31536000") in headers


def test_the_trace_is_taken_in_and_ours_replaces_any_the_app_set() -> None:
    headers, scope, _ = call(
        "http://x", [(b"traceparent", b"00-app-set")], [(b"traceparent", INCOMING.encode())]
    )
    trace = scope["state"]["trace"]
    assert trace.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert trace.parent_span_id == "b7ad6b7169203331"
    sent = [v for n, v in headers if n == b"traceparent"]
    assert sent == [trace.traceparent.encode()]


def test_requests_are_counted_by_method_route_and_status() -> None:
    _, _, metrics = call("http://x", [], [])
    text = generate_latest(metrics.registry).decode()
    assert 'gateway_http_requests_total{method="POST",route="/v1/things/{id}",status="201"} 1.0' in text

"""DESIGN 4 conventions on every response, as plain ASGI middleware (no per-request task overhead).

Takes the W3C ``traceparent`` in (or starts a trace), puts it on ``request.state.trace``, and adds
``API-Version``, the security headers and our own ``traceparent`` to every response; counts requests.
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import API_VERSION
from gateway.runtime import Runtime
from gateway.tracing import from_header

SECURITY_HEADERS = {
    "API-Version": API_VERSION,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


log = logging.getLogger("gateway.api")
_UNEXPECTED = json.dumps(
    {"type": "about:blank", "title": "Internal error", "status": 500, "detail": "unexpected error"}
).encode()


class Conventions:
    """Trace context in, conventions out."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        self.hsts = runtime.settings.base_url.startswith("https://")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trace = from_header(Headers(scope=scope).get("traceparent"))
        state: dict[str, Any] = scope.setdefault("state", {})
        state["trace"] = trace
        status = 500
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
                if self.hsts:
                    headers.setdefault("Strict-Transport-Security", "max-age=31536000")
                headers["traceparent"] = trace.traceparent
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as e:
            if started:
                raise
            # Answered here, inside the conventions, so even this answer is problem+json with the
            # security headers. Logged by type only: a message could carry case content.
            log.error(
                "unexpected error: %s\n%s", type(e).__name__, "".join(traceback.format_tb(e.__traceback__))
            )
            await send_with_headers(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/problem+json"),
                        (b"content-length", str(len(_UNEXPECTED)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _UNEXPECTED})
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.runtime.metrics.requests.labels(scope["method"], path, str(status)).inc()

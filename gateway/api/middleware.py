"""DESIGN 4 conventions on every response, as plain ASGI middleware (no per-request task overhead).

Takes the W3C ``traceparent`` in (or starts a trace), puts it on ``request.state.trace``, and adds
``API-Version``, the security headers and our own ``traceparent`` to every response; counts requests.

Every request passes here, so the work is done on the raw ASGI header lists: one pass over the request's
headers for ``traceparent``, one over the response's for the names it already has, the missing headers
appended as pre-encoded bytes, and the request counter's child looked up once per (method, route,
status) rather than through ``labels()`` each time.
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

from prometheus_client import Counter
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


_SECURITY_RAW = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
_HSTS = (b"strict-transport-security", b"max-age=31536000")
_TRACEPARENT = b"traceparent"

log = logging.getLogger("gateway.api")
_UNEXPECTED = json.dumps(
    {"type": "about:blank", "title": "Internal error", "status": 500, "detail": "unexpected error"}
).encode()


class Conventions:
    """Trace context in, conventions out."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        self.added = (
            [*_SECURITY_RAW, _HSTS] if runtime.settings.base_url.startswith("https://") else _SECURITY_RAW
        )
        self._counted: dict[tuple[str, str, int], Counter] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == _TRACEPARENT:  # ASGI header names are lower-case
                incoming = value.decode("latin-1")
                break
        trace = from_header(incoming)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["trace"] = trace
        status = 500
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                raw = list(message.get("headers", ()))
                present = {name.lower() for name, _ in raw}
                raw = [h for h in raw if h[0].lower() != _TRACEPARENT]
                raw += [h for h in self.added if h[0] not in present]
                raw.append((_TRACEPARENT, trace.traceparent.encode()))
                message["headers"] = raw
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
            key = (scope["method"], getattr(route, "path", "unmatched"), status)
            counter = self._counted.get(key)
            if counter is None:
                # Bounded: methods x routes x statuses, all chosen by the app (unmatched paths share one).
                counter = self._counted[key] = self.runtime.metrics.requests.labels(*key[:2], str(status))
            counter.inc()

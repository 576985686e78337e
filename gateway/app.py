"""The FastAPI application: routers gathered in one place, problem handlers and middleware."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from gateway import API_VERSION, __version__
from gateway.api import audit, cases, exchanges, ops, policies, problems
from gateway.auth import auth_router
from gateway.runtime import Runtime
from gateway.settings import Settings, get_settings
from gateway.tracing import from_header

SECURITY_HEADERS = {
    "API-Version": API_VERSION,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the gateway app around a runtime (made from ``settings`` when not given)."""
    rt = runtime or Runtime(settings or get_settings())
    app = FastAPI(
        title="Veilig Delen gateway",
        version=API_VERSION,
        summary="Purpose-bound sharing of case information on domestic violence and child abuse",
        contact={"name": "Veilig Delen", "url": "https://veilig-delen.example"},
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
    )
    app.state.runtime = rt
    app.state.auth = rt.auth
    problems.install(app)

    @app.middleware("http")
    async def _conventions(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        trace = from_header(request.headers.get("traceparent"))
        request.state.trace = trace
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if rt.settings.base_url.startswith("https://"):
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        response.headers["traceparent"] = trace.traceparent
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        rt.metrics.requests.labels(request.method, path, str(response.status_code)).inc()
        return response

    app.include_router(auth_router)
    app.include_router(cases.router)
    app.include_router(exchanges.router)
    app.include_router(audit.router)
    app.include_router(policies.router)
    app.include_router(ops.router)
    app.state.version = __version__
    return app

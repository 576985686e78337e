"""The privacy officers' console: server-rendered pages at ``/console/`` (Dutch; English available).

``create_console(runtime)`` is an app of its own, mounted by the gateway at ``/console``: its own
session cookie (scoped to ``/console``), its own error pages (HTML in the user's language, never a
traceback or a problem document), no JavaScript and no asset from elsewhere. Logging in starts with a
one-time link (`mint_login_token`, printed by ``gateway console-link`` and ``gateway serve``) or, in
production, OpenID Connect with the agency's identity provider (`gateway.console.oidc`, configured by
``GATEWAY_CONSOLE_OIDC_*``); both end in `start_session`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from audit import AuditWriteError
from gateway.api.problems import dependency_problem
from gateway.console.integrity import Verifications
from gateway.console.oidc import oidc_login
from gateway.console.reports import router as reports_router
from gateway.console.routes import FormRefused, LoginRequired, PageError, page, router
from gateway.console.sessions import (
    CONSOLE_ROLES,
    IDLE_SECONDS,
    SESSION_COOKIE,
    ConsoleUser,
    mint_login_token,
    session_secret,
    spend_login_token,
    start_session,
)
from gateway.console.table import router as table_router
from gateway.errors import GatewayError
from gateway.runtime import Runtime

__all__ = [
    "CONSOLE_ROLES",
    "ConsoleUser",
    "create_console",
    "login_url",
    "mint_login_token",
    "spend_login_token",
    "start_session",
]

log = logging.getLogger("gateway.console")

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def login_url(base_url: str, token: str) -> str:
    """The link a person opens to log in with ``token``."""
    return f"{base_url.rstrip('/')}/console/login?token={token}"


def create_console(rt: Runtime) -> FastAPI:
    """The console app for one runtime, to mount at ``/console``."""
    console = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    console.state.runtime = rt
    console.state.verifications = Verifications(rt)
    secret = session_secret(rt.settings.data_dir, rt.settings.console_session_key_file)
    console.state.oidc = oidc_login(rt.settings, secret)  # None: one-time links only
    console.include_router(router)
    console.include_router(reports_router)
    console.include_router(table_router)
    console.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")
    console.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=SESSION_COOKIE,
        max_age=IDLE_SECONDS,
        path="/console",
        same_site="strict",
        https_only=rt.settings.base_url.startswith("https://"),
    )

    @console.middleware("http")
    async def _headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def error(request: Request, status: int, title: str, messages: list[str]) -> HTMLResponse:
        return page(
            request, "error.html", {"status": status, "title_key": title, "messages": messages}, status
        )

    @console.exception_handler(LoginRequired)
    async def _login(request: Request, _exc: LoginRequired) -> Response:
        return page(request, "login.html", {"user": None}, status=401)

    @console.exception_handler(FormRefused)
    async def _csrf(request: Request, _exc: FormRefused) -> Response:
        return error(request, 403, "err.403.title", ["err.csrf"])

    @console.exception_handler(PageError)
    async def _page(request: Request, exc: PageError) -> Response:
        return error(request, exc.status, exc.title, exc.messages)

    @console.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            return error(request, 405, "err.405.title", ["err.405"])
        return error(request, exc.status_code, "err.404.title", ["err.404"])

    @console.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        fields = {str(e["loc"][-1]) for e in exc.errors() if e.get("loc")}
        if request.method == "GET" and fields <= {"index", "case_id"}:
            return error(request, 404, "err.404.title", ["err.404"])  # no such page, whatever its address
        return error(
            request, 400, "err.400.title", [f"field.{f}" for f in sorted(fields)] or ["err.400.title"]
        )

    @console.exception_handler(GatewayError)
    async def _gateway(request: Request, exc: GatewayError) -> Response:
        if exc.status == 503:
            return error(request, 503, "err.503.title", ["err.503"])
        if exc.status == 404:
            return error(request, 404, "err.404.title", ["err.404"])
        return error(request, exc.status if exc.status < 500 else 500, "err.title", ["err.500"])

    async def _dependency(request: Request, exc: Exception) -> Response:
        if dependency_problem(exc) is None:
            log.error("console: unexpected %s", type(exc).__name__)
            return error(request, 500, "err.title", ["err.500"])
        log.warning("console: dependency fault %s", type(exc).__name__)
        return error(request, 503, "err.503.title", ["err.503"])

    for error_class in (SQLAlchemyError, AuditWriteError):
        console.add_exception_handler(error_class, _dependency)

    @console.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("console: unexpected %s", type(exc).__name__)
        return error(request, 500, "err.title", ["err.500"])

    return console


def mount_console(app: FastAPI, rt: Runtime) -> None:
    """Serve the console at ``/console/`` and send ``/`` there."""
    app.mount("/console", create_console(rt), name="console")

    @app.get("/console", include_in_schema=False)
    async def _console_root() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=307)

    @app.get("/", include_in_schema=False)
    async def _root() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=307)

"""Every error becomes RFC 9457 ``application/problem+json``; invalid input is a 400 naming the field."""

from __future__ import annotations

import logging
import sqlite3
import traceback
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from audit import AuditWriteError, LogCorrupted
from gateway.db import fault_kind
from gateway.errors import AuditUnavailable, DatabaseUnavailable, GatewayError

log = logging.getLogger("gateway.api")
PROBLEM = "application/problem+json"


def problem_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    """A problem document response."""
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def field_name(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """``("body", "subjects", 0, "bsn")`` -> ``subjects[0].bsn``; the request part is dropped."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "body"


def _validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    errors = []
    for err in exc.errors():
        # Only the location and the message: pydantic's ``input`` could echo a BSN or payload content.
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "json_invalid":
            message = "the body is not valid JSON"
        errors.append({"field": field_name(err.get("loc", ())), "message": message})
    return errors


_DATABASE_DETAIL = {
    "locked": "the database is locked by another writer; retry after Retry-After seconds",
    "full": "the database has no space left; retry after Retry-After seconds",
    "unavailable": "the database cannot be reached; retry after Retry-After seconds",
}


def _internal_error(exc: BaseException) -> JSONResponse:
    # Logged by type only: a message could carry case content.
    log.error("unexpected error: %s\n%s", type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__)))
    return problem_response(
        500,
        {"type": "about:blank", "title": "Internal error", "status": 500, "detail": "unexpected error"},
    )


def dependency_problem(exc: BaseException) -> GatewayError | None:
    """The 503 a database or audit-log fault answers (``DependencyUnavailable``, with ``Retry-After``),
    or None when ``exc`` is not such a fault (an integrity error or a bad statement is a bug: 500)."""
    kind = fault_kind(exc)
    if isinstance(exc, AuditWriteError):
        # The audit log refusing a write is a dependency fault whatever the cause: no audit, no exchange.
        return AuditUnavailable("the audit log could not be written; nothing was done")
    if kind is None:
        return None
    return DatabaseUnavailable(_DATABASE_DETAIL[kind], extra={"fault": kind})


def install(app: FastAPI) -> None:
    """Register the handlers."""

    @app.exception_handler(GatewayError)
    async def _gateway_error(_request: Request, exc: GatewayError) -> JSONResponse:
        return problem_response(exc.status, exc.problem(), exc.headers)

    @app.exception_handler(LogCorrupted)
    async def _corrupted(_request: Request, exc: LogCorrupted) -> JSONResponse:
        # Fail closed: never sign or serve a view of a log that contradicts its own checkpoints.
        log.critical("audit log integrity failure: %s", type(exc).__name__)
        return problem_response(
            503,
            {
                "type": "https://veilig-delen.example/problems/audit-integrity",
                "title": "Audit log integrity failure",
                "status": 503,
                "detail": "the audit log contradicts an earlier checkpoint; run `gateway audit verify`",
            },
        )

    async def _dependency(_request: Request, exc: Exception) -> JSONResponse:
        problem = dependency_problem(exc)
        if problem is None:
            return _internal_error(exc)
        # The fault by type and kind only: a driver's message can quote a statement or a value.
        log.warning("%s: %s (%s)", problem.title, type(exc).__name__, problem.extra.get("fault", "audit"))
        return problem_response(problem.status, problem.problem(), problem.headers)

    # Every SQLAlchemy error, the bare driver's and the audit store's: the handler sorts faults (503)
    # from bugs (500), so no route needs its own try/except for a locked, full or unreachable database.
    for error_class in (SQLAlchemyError, sqlite3.Error, AuditWriteError):
        app.add_exception_handler(error_class, _dependency)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(
            400,
            {
                "type": "https://veilig-delen.example/problems/invalid-input",
                "title": "Invalid input",
                "status": 400,
                "detail": detail,
                "errors": errors,
            },
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 401: "Unauthenticated", 403: "Forbidden"}
        return problem_response(
            exc.status_code,
            {
                "type": "about:blank",
                "title": titles.get(exc.status_code, "HTTP error"),
                "status": exc.status_code,
                "detail": str(exc.detail),
            },
            dict(exc.headers or {}),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        return _internal_error(exc)

"""Every error becomes RFC 9457 ``application/problem+json``; invalid input is a 400 naming the field."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from audit import LogCorrupted
from gateway.errors import GatewayError

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
        # Logged by type only: a message could carry case content.
        log.error(
            "unexpected error: %s\n%s", type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__))
        )
        return problem_response(
            500,
            {"type": "about:blank", "title": "Internal error", "status": 500, "detail": "unexpected error"},
        )

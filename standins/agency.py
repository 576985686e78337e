"""A stand-in agency system over HTTP: the receiving end of ``HttpConnector``, backed by a simulated system.

Tests run it under uvicorn to exercise the HTTP connector against a real server; operators run it to
stand in for an agency whose system is not connected yet::

    python -m standins.agency --agency politie --port 9001

It speaks the wire protocol in ``connectors._wire``. Errors are RFC 9457 problem documents that never
echo the request body back: it holds case data.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from connectors._wire import (
    DELIVERIES_PATH,
    FETCH_PATH,
    HEALTH_PATH,
    DeliveryBody,
    FetchBody,
    delivery_from,
    fetch_from,
    receipt_json,
    result_json,
)
from connectors.base import AGENCIES, ConnectorRejected, ConnectorUnavailable
from connectors.simulated import SimulatedAgencySystem

TraceParent = Annotated[str | None, Header()]


def _problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra},
        status_code=status,
        media_type="application/problem+json",
    )


def make_agency_app(system: SimulatedAgencySystem) -> FastAPI:
    """An app serving ``system`` at the deliveries, fetch and health endpoints."""
    app = FastAPI(title=f"Veilig Delen stand-in: {system.agency}", openapi_url=None, docs_url=None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default answer repeats each bad input value; name the field and the problem only.
        errors = [
            {"field": ".".join(str(p) for p in err["loc"][1:]), "message": err["msg"]} for err in exc.errors()
        ]
        return _problem(400, "Invalid input", "the request body is not valid", errors=errors)

    @app.exception_handler(ConnectorUnavailable)
    async def _down(_request: Request, exc: ConnectorUnavailable) -> JSONResponse:
        return _problem(503, "Unavailable", exc.detail)

    @app.exception_handler(ConnectorRejected)
    async def _refused(_request: Request, exc: ConnectorRejected) -> JSONResponse:
        return _problem(422, "Refused", exc.detail)

    @app.post(DELIVERIES_PATH)
    def deliver(body: DeliveryBody, traceparent: TraceParent = None) -> dict[str, Any]:
        """Receive a delivery; a repeated messageId is acknowledged again but kept once."""
        return receipt_json(system.deliver(delivery_from(body, traceparent)))

    @app.post(FETCH_PATH)
    def fetch(body: FetchBody, traceparent: TraceParent = None) -> dict[str, Any]:
        """Answer a fetch from the simulated records."""
        return result_json(system.fetch(fetch_from(body, traceparent)))

    @app.get(HEALTH_PATH)
    def health() -> JSONResponse:
        """200 while up, 503 while the system is set down."""
        up = system.health()
        return JSONResponse({"agency": system.agency, "status": "up" if up else "down"}, 200 if up else 503)

    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Run a stand-in agency system until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m standins.agency", description=__doc__)
    parser.add_argument("--agency", required=True, choices=AGENCIES)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    args = parser.parse_args(argv)
    uvicorn.run(make_agency_app(SimulatedAgencySystem(args.agency)), host=args.host, port=args.port)


if __name__ == "__main__":
    main()

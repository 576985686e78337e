"""Fixtures for the auth tests: real SQLite in tmp_path and a real HTTP server (uvicorn in a thread)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker

from gateway.auth import (
    AuthService,
    ExchangeCaller,
    auth_router,
    generate_keypair,
    make_client_assertion,
)
from gateway.auth.assertions import KeyKind
from gateway.db import Base, make_engine, make_sessionmaker
from gateway.errors import GatewayError
from gateway.settings import Settings
from tests.live import free_port, serve

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def make_settings(data_dir: Path, port: int = 8000) -> Settings:
    """Local-mode settings on loopback, with everything in ``data_dir``."""
    return Settings(
        mode="local",
        host="127.0.0.1",
        port=port,
        public_url=None,
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'gateway.db'}",
    )


def make_sessions(settings: Settings) -> sessionmaker[Session]:
    """A session factory over a fresh SQLite database with the gateway's tables."""
    engine = make_engine(settings.effective_database_url)
    Base.metadata.create_all(engine)
    return make_sessionmaker(engine)


def build_app(auth: AuthService) -> FastAPI:
    """The smallest app that uses the auth package: its router and one route needing ``exchange``."""
    app = FastAPI()
    app.state.auth = auth
    app.include_router(auth_router)

    @app.exception_handler(GatewayError)
    async def _problem(_request: Request, exc: GatewayError) -> JSONResponse:
        return JSONResponse(
            exc.problem(), status_code=exc.status, headers=exc.headers, media_type="application/problem+json"
        )

    @app.get("/v1/ping")
    def ping(caller: ExchangeCaller) -> dict[str, Any]:
        return {
            "clientId": caller.client_id,
            "agency": caller.agency,
            "role": caller.role,
            "scopes": sorted(caller.scopes),
        }

    return app


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, free_port())


@pytest.fixture
def sessions(settings: Settings) -> sessionmaker[Session]:
    return make_sessions(settings)


@pytest.fixture
def auth(settings: Settings, sessions: sessionmaker[Session]) -> AuthService:
    return AuthService(settings, sessions)


@dataclass
class LiveGateway:
    """The test app served over HTTP, and the private keys of the clients registered on it."""

    base: str
    auth: AuthService
    http: httpx.Client
    keys: dict[str, bytes] = field(default_factory=dict)

    @property
    def token_url(self) -> str:
        return f"{self.base}/oauth2/token"

    def register(
        self, client_id: str, agency: str = "politie", role: str = "agency_system", kind: KeyKind = "Ed25519"
    ) -> bytes:
        private_pem, public_pem = generate_keypair(kind)
        self.auth.clients.register(client_id, agency, role, public_pem)
        self.keys[client_id] = private_pem
        return private_pem

    def assertion(self, client_id: str, **kw: Any) -> str:
        key = kw.pop("private_key", None) or self.keys[client_id]
        token_url = kw.pop("token_url", self.token_url)
        return make_client_assertion(client_id, key, token_url, **kw)

    def post_token(self, assertion: str, scope: str | None = None, **extra: str) -> httpx.Response:
        data = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        }
        if scope is not None:
            data["scope"] = scope
        data.update(extra)
        return self.http.post(self.token_url, data=data)

    def token(self, client_id: str, scope: str | None = None) -> str:
        r = self.post_token(self.assertion(client_id), scope=scope)
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def ping(self, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.http.get(f"{self.base}/v1/ping", headers=headers)


@pytest.fixture
def gateway(settings: Settings, auth: AuthService) -> Iterator[LiveGateway]:
    """The test app under uvicorn on the port ``settings`` names, so that issuer and URL agree."""
    with serve(build_app(auth), port=settings.port) as base, httpx.Client(timeout=30) as http:
        assert base == auth.issuer
        yield LiveGateway(base=base, auth=auth, http=http)

"""Authentication: OAuth2 client credentials with RFC 7523 client assertions, RFC 9068 access tokens.

Wiring (once, at start-up)::

    app.state.auth = AuthService(settings, sessions)
    app.include_router(auth_router)

Routes then take ``caller: ExchangeCaller`` (or ``Caller``, ``AuditCaller``, ``PolicyCaller``), or
``Depends(require_scope(...))``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.auth.assertions import generate_keypair, make_client_assertion
    from gateway.auth.clients import (
        ClientAlreadyRegistered,
        ClientError,
        ClientRegistry,
        InvalidClientRegistration,
        UnknownClient,
        key_alg_for_public_key,
    )
    from gateway.auth.deps import (
        AuditCaller,
        AuthServiceDep,
        Caller,
        ExchangeCaller,
        PolicyCaller,
        current_principal,
        get_auth_service,
        require_scope,
    )
    from gateway.auth.keys import SigningKey, SigningKeyError, load_or_create_signing_key
    from gateway.auth.roles import AGENCIES, ROLE_SCOPES, ROLES, SCOPES
    from gateway.auth.router import router as auth_router  # the routes, as the app gathers routers
    from gateway.auth.server import TokenResponse
    from gateway.auth.service import AuthService
    from gateway.auth.tokens import Principal, authenticate

__all__ = [
    "AGENCIES",
    "ROLES",
    "ROLE_SCOPES",
    "SCOPES",
    "AuditCaller",
    "AuthService",
    "AuthServiceDep",
    "Caller",
    "ClientAlreadyRegistered",
    "ClientError",
    "ClientRegistry",
    "ExchangeCaller",
    "InvalidClientRegistration",
    "PolicyCaller",
    "Principal",
    "SigningKey",
    "SigningKeyError",
    "TokenResponse",
    "UnknownClient",
    "auth_router",
    "authenticate",
    "current_principal",
    "generate_keypair",
    "get_auth_service",
    "key_alg_for_public_key",
    "load_or_create_signing_key",
    "make_client_assertion",
    "require_scope",
]

_WHERE = {
    "AGENCIES": "gateway.auth.roles",
    "ROLES": "gateway.auth.roles",
    "ROLE_SCOPES": "gateway.auth.roles",
    "SCOPES": "gateway.auth.roles",
    "AuditCaller": "gateway.auth.deps",
    "AuthService": "gateway.auth.service",
    "AuthServiceDep": "gateway.auth.deps",
    "Caller": "gateway.auth.deps",
    "ClientAlreadyRegistered": "gateway.auth.clients",
    "ClientError": "gateway.auth.clients",
    "ClientRegistry": "gateway.auth.clients",
    "ExchangeCaller": "gateway.auth.deps",
    "InvalidClientRegistration": "gateway.auth.clients",
    "PolicyCaller": "gateway.auth.deps",
    "Principal": "gateway.auth.tokens",
    "SigningKey": "gateway.auth.keys",
    "SigningKeyError": "gateway.auth.keys",
    "TokenResponse": "gateway.auth.server",
    "UnknownClient": "gateway.auth.clients",
    "auth_router": "gateway.auth.router:router",
    "authenticate": "gateway.auth.tokens",
    "current_principal": "gateway.auth.deps",
    "generate_keypair": "gateway.auth.assertions",
    "get_auth_service": "gateway.auth.deps",
    "key_alg_for_public_key": "gateway.auth.clients",
    "load_or_create_signing_key": "gateway.auth.keys",
    "make_client_assertion": "gateway.auth.assertions",
    "require_scope": "gateway.auth.deps",
}
"""Where each public name is defined (``module:name`` when it is known here by another name).
Importing the package loads none of them: the first use of a name imports its module (PEP 562), so
``gateway token`` (client assertions) does not load FastAPI, SQLAlchemy and the rate limiter."""


if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any name imported from here

    def __getattr__(name: str) -> object:
        try:
            module, _, attr = _WHERE[name].partition(":")
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), attr or name)
        globals()[name] = value  # the next use is a plain lookup
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})

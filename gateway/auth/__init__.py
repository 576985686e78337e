"""Authentication: OAuth2 client credentials with RFC 7523 client assertions, RFC 9068 access tokens.

Wiring (once, at start-up)::

    app.state.auth = AuthService(settings, sessions)
    app.include_router(auth_router)

Routes then take ``caller: ExchangeCaller`` (or ``Caller``, ``AuditCaller``, ``PolicyCaller``), or
``Depends(require_scope(...))``.
"""

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
from gateway.auth.router import router
from gateway.auth.server import TokenResponse
from gateway.auth.service import AuthService
from gateway.auth.tokens import Principal, authenticate

#: The authorization server's routes, under the name the app gathers routers by.
auth_router = router

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
    "router",
]

"""FastAPI dependencies: who is calling, and may they. Routes read ``caller: ExchangeCaller``.

The app keeps one ``AuthService`` at ``app.state.auth``; these dependencies read it from there.

FastAPI runs a plain ``def`` dependency in its thread pool, a hand-over to a thread and back per
dependency and request; the ones here that neither block nor compute much are ``async def`` and run on
the event loop. ``current_principal`` reads the database (the client's registration) and stays a
``def``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2

from gateway.auth.roles import SCOPE_DESCRIPTIONS, SCOPES
from gateway.auth.service import TOKEN_PATH, AuthService
from gateway.auth.tokens import Principal
from gateway.errors import Forbidden

# Documents the client-credentials flow in the OpenAPI document and hands over the raw header; the
# checks (and the 401 with WWW-Authenticate) are ours, so auto_error is off.
oauth2_scheme = OAuth2(
    flows=OAuthFlows(
        clientCredentials=OAuthFlowClientCredentials(tokenUrl=TOKEN_PATH, scopes=SCOPE_DESCRIPTIONS)
    ),
    scheme_name="OAuth2ClientCredentials",
    description="Client credentials with a private_key_jwt client assertion (RFC 7523).",
    auto_error=False,
)


def auth_service_of(request: Request) -> AuthService:
    """The ``AuthService`` the app stored at ``app.state.auth``."""
    service = getattr(request.app.state, "auth", None)
    if not isinstance(service, AuthService):
        raise RuntimeError("app.state.auth is not set: create an AuthService at start-up")
    return service


async def get_auth_service(request: Request) -> AuthService:
    """``auth_service_of`` as a dependency (on the event loop: it only reads an attribute)."""
    return auth_service_of(request)


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]


def current_principal(
    auth: AuthServiceDep, authorization: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal:
    """The authenticated caller, counted against its rate limit; ``Unauthenticated`` (401 +
    WWW-Authenticate) or ``RateLimited`` (429 + Retry-After) otherwise."""
    return auth.caller(auth.verified_token(authorization))


Caller = Annotated[Principal, Depends(current_principal)]


def scope_check(*scopes: str) -> Callable[[frozenset[str]], None]:
    """A check that granted scopes hold at least one of ``scopes``; it raises ``Forbidden`` otherwise."""
    if not scopes:
        raise ValueError("require_scope needs at least one scope")
    unknown = set(scopes) - SCOPES
    if unknown:
        raise ValueError(f"unknown scope(s): {', '.join(sorted(unknown))}")
    wanted = frozenset(scopes)
    needed = " or ".join(scopes)
    challenge = f'Bearer realm="veilig-delen", error="insufficient_scope", scope="{" ".join(scopes)}"'

    def check(granted: frozenset[str]) -> None:
        if granted.isdisjoint(wanted):
            raise Forbidden(f"scope {needed} required", headers={"WWW-Authenticate": challenge})

    return check


def require_scope(*scopes: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that admits a caller holding at least one of ``scopes``; ``Forbidden`` otherwise."""
    check = scope_check(*scopes)

    async def check_scope(caller: Caller) -> Principal:
        check(caller.scopes)
        return caller

    return check_scope


ExchangeCaller = Annotated[Principal, Depends(require_scope("exchange"))]
AuditCaller = Annotated[Principal, Depends(require_scope("audit", "audit:all"))]
PolicyCaller = Annotated[Principal, Depends(require_scope("policy"))]

"""Dependencies as ``Annotated`` aliases, so routes read like a sentence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.auth import Principal
from gateway.errors import Forbidden
from gateway.runtime import Runtime
from gateway.trail import CallContext
from gateway.tracing import TraceContext, from_header

_bearer = HTTPBearer(auto_error=False, description="RFC 9068 access token from /oauth2/token")


def get_runtime(request: Request) -> Runtime:
    """The runtime of this app."""
    rt: Runtime = request.app.state.runtime
    return rt


def get_trace(request: Request) -> TraceContext:
    """The trace context the middleware took from ``traceparent`` (or started)."""
    trace = getattr(request.state, "trace", None)
    return trace if isinstance(trace, TraceContext) else from_header(request.headers.get("traceparent"))


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
TraceDep = Annotated[TraceContext, Depends(get_trace)]


def get_principal(
    rt: RuntimeDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The authenticated caller; 401 when the token is missing or invalid."""
    header = f"{credentials.scheme} {credentials.credentials}" if credentials else None
    return rt.auth.authenticate(header)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def requires(*scopes: str) -> Callable[..., CallContext]:
    """A dependency that admits callers holding any of ``scopes`` and yields their call context."""

    def dependency(principal: PrincipalDep, trace: TraceDep) -> CallContext:
        if not principal.scopes.intersection(scopes):
            raise Forbidden(f"this call needs scope {' or '.join(scopes)}")
        return CallContext(principal=principal, trace=trace)

    return dependency


Exchange = Annotated[CallContext, Depends(requires("exchange"))]
AuditReader = Annotated[CallContext, Depends(requires("audit", "audit:all"))]
PolicyAuthor = Annotated[CallContext, Depends(requires("policy"))]

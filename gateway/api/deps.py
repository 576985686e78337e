"""Dependencies as ``Annotated`` aliases, so routes read like a sentence.

No ``from __future__ import annotations`` here: FastAPI must see the closure's ``Depends`` objects.
They are ``async def`` because they only read attributes: FastAPI runs a plain ``def`` dependency in its
thread pool, a hand-over to a thread and back on every request.

``ExchangeCall`` is the exchange routes' caller in one hand-over: the dependency verifies the token
(from the cache; no database) and its scope on the event loop, and the route's own thread confirms the
client's registration (`UnconfirmedCall.confirm`) before anything else, since that is a database read.
A route gets a `CallContext` only from ``confirm``, so none can act for a revoked client.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from gateway.auth import AuthService, Principal, require_scope
from gateway.auth.deps import auth_service_of, oauth2_scheme, scope_check
from gateway.auth.tokens import VerifiedToken, token_scopes
from gateway.runtime import Runtime
from gateway.services.trail import CallContext
from gateway.tracing import TraceContext, from_header


async def get_runtime(request: Request) -> Runtime:
    """The runtime of this app."""
    rt: Runtime = request.app.state.runtime
    return rt


def trace_of(request: Request) -> TraceContext:
    """The trace context the middleware took from ``traceparent`` (or started)."""
    trace = getattr(request.state, "trace", None)
    return trace if isinstance(trace, TraceContext) else from_header(request.headers.get("traceparent"))


async def get_trace(request: Request) -> TraceContext:
    """`trace_of` as a dependency."""
    return trace_of(request)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
TraceDep = Annotated[TraceContext, Depends(get_trace)]


def requires(*scopes: str) -> Callable[..., Awaitable[CallContext]]:
    """A dependency admitting callers with any of ``scopes`` (401/403 otherwise), as a call context."""
    scoped = require_scope(*scopes)

    async def dependency(principal: Annotated[Principal, Depends(scoped)], trace: TraceDep) -> CallContext:
        return CallContext(principal=principal, trace=trace)

    return dependency


@dataclass(frozen=True)
class UnconfirmedCall:
    """A call whose token is verified and whose scope admits the route, its client not yet confirmed."""

    auth: AuthService
    token: VerifiedToken
    trace: TraceContext

    def confirm(self) -> CallContext:
        """The call's context once the client's registration confirms it (blocking: one indexed read;
        call it first, in the route's thread), counted against its rate limit. ``Unauthenticated`` (401)
        for a revoked client, ``RateLimited`` (429) past its limit."""
        return CallContext(principal=self.auth.caller(self.token), trace=self.trace)


def confirmed_in_route(*scopes: str) -> Callable[..., Awaitable[UnconfirmedCall]]:
    """A dependency admitting tokens with any of ``scopes`` (401/403 otherwise) on the event loop, with
    no hand-over to a thread; the route confirms the client (`UnconfirmedCall.confirm`)."""
    check = scope_check(*scopes)

    async def dependency(
        request: Request, authorization: Annotated[str | None, Depends(oauth2_scheme)]
    ) -> UnconfirmedCall:
        auth = auth_service_of(request)
        token = auth.verified_token(authorization)
        check(token_scopes(token))
        return UnconfirmedCall(auth=auth, token=token, trace=trace_of(request))

    return dependency


# The caller of a route, by the scope it needs: an agency system, a privacy officer, a policy author.
ExchangeCaller = Annotated[CallContext, Depends(requires("exchange"))]
ExchangeCall = Annotated[UnconfirmedCall, Depends(confirmed_in_route("exchange"))]
AuditReader = Annotated[CallContext, Depends(requires("audit", "audit:all"))]
PolicyAuthor = Annotated[CallContext, Depends(requires("policy"))]

"""Dependencies as ``Annotated`` aliases, so routes read like a sentence.

No ``from __future__ import annotations`` here: FastAPI must see the closure's ``Depends`` objects.
They are ``async def`` because they only read attributes: FastAPI runs a plain ``def`` dependency in its
thread pool, a hand-over to a thread and back on every request.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from gateway.auth import Principal, require_scope
from gateway.runtime import Runtime
from gateway.services.trail import CallContext
from gateway.tracing import TraceContext, from_header


async def get_runtime(request: Request) -> Runtime:
    """The runtime of this app."""
    rt: Runtime = request.app.state.runtime
    return rt


async def get_trace(request: Request) -> TraceContext:
    """The trace context the middleware took from ``traceparent`` (or started)."""
    trace = getattr(request.state, "trace", None)
    return trace if isinstance(trace, TraceContext) else from_header(request.headers.get("traceparent"))


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
TraceDep = Annotated[TraceContext, Depends(get_trace)]


def requires(*scopes: str) -> Callable[..., Awaitable[CallContext]]:
    """A dependency admitting callers with any of ``scopes`` (401/403 otherwise), as a call context."""
    scoped = require_scope(*scopes)

    async def dependency(principal: Annotated[Principal, Depends(scoped)], trace: TraceDep) -> CallContext:
        return CallContext(principal=principal, trace=trace)

    return dependency


# The caller of a route, by the scope it needs: an agency system, a privacy officer, a policy author.
ExchangeCaller = Annotated[CallContext, Depends(requires("exchange"))]
AuditReader = Annotated[CallContext, Depends(requires("audit", "audit:all"))]
PolicyAuthor = Annotated[CallContext, Depends(requires("policy"))]

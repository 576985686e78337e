"""Operations: liveness, readiness and Prometheus metrics (no token needed; they reveal no case data)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.api.deps import RuntimeDep
from gateway.db import database_health
from gateway.errors import DEPENDENCY_RETRY_AFTER
from gateway.runtime import Runtime

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


_PROBE_THREADS = 2
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


def _limiter() -> anyio.CapacityLimiter:
    """The probe's own threads (per event loop): when every worker thread of the request path waits on
    a locked database, the probe must still run, and say so, rather than queue behind them; and a
    flood of probes waits here rather than starting a thread each."""
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters.setdefault(loop, anyio.CapacityLimiter(_PROBE_THREADS))
    return limiter


@router.get("/readyz")
async def readyz(rt: RuntimeDep) -> JSONResponse:
    """Ready when the database can be written, the policy engine can decide and the signing keys work.

    503 while any of them cannot: the database locked, full or unreachable, the engine unhealthy
    (``health()``, e.g. stalled), a key missing. Cheap (no decision, nothing written, at most one
    short lock probe) and never itself an error: a check that raises reports its type.
    """
    try:
        database = await anyio.to_thread.run_sync(database_health(rt.db).problem, limiter=_limiter())
    except Exception as e:  # /readyz reports what broke rather than answering 500
        database = f"failed: {type(e).__name__}"
    try:
        rate_limits = await anyio.to_thread.run_sync(rt.auth.limits.problem, limiter=_limiter())
    except Exception as e:
        rate_limits = f"failed: {type(e).__name__}"
    checks = {
        "database": database or "ok",
        "rateLimits": rate_limits or "ok",
        "policy": _check(lambda: _policy_problem(rt)),
        "signingKey": _check(lambda: None if rt.auth.ready() and rt.signer.verifier_key() else "missing"),
    }
    ready = all(v == "ok" for v in checks.values())
    headers = None if ready else {"Retry-After": str(DEPENDENCY_RETRY_AFTER)}
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
        headers=headers,
    )


def _check(problem: Callable[[], str | None]) -> str:
    """``ok``, the problem a check names, or ``failed: <type>`` when the check itself raised."""
    try:
        reason = problem()
    except Exception as e:  # /readyz reports what broke rather than answering 500
        return f"failed: {type(e).__name__}"
    return "ok" if reason is None else reason


def _policy_problem(rt: Runtime) -> str | None:
    engine = rt.policy.current
    if not engine.revision:
        return "no revision"
    return engine.health()


@router.get("/metrics")
def metrics(rt: RuntimeDep) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)

"""Operations: liveness, readiness and Prometheus metrics (no token needed; they reveal no case data)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from gateway.api.deps import RuntimeDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(rt: RuntimeDep) -> JSONResponse:
    """Ready when the database answers, a policy revision is loaded and the signing keys are there."""
    checks: dict[str, Any] = {}
    try:
        with rt.db.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as e:
        checks["database"] = f"failed: {type(e).__name__}"
    try:
        checks["policy"] = "ok" if rt.policy.current.revision else "no revision"
    except Exception as e:
        checks["policy"] = f"failed: {type(e).__name__}"
    checks["signingKey"] = "ok" if rt.auth.ready() and rt.signer.verifier_key() else "missing"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get("/metrics")
def metrics(rt: RuntimeDep) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)

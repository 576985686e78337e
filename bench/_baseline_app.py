"""The baseline of the HTTP benchmarks: a bare FastAPI endpoint that validates a share's body.

It takes the gateway's own ``ShareIn`` model at the gateway's own path, so the two servers parse and
validate the same bytes with the same pydantic model; it answers a result per recipient and does
nothing else (no middleware, no authentication, no policy, no database).

    .venv/bin/python -m bench._baseline_app --port 8100 [--workers 2]
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from fastapi import FastAPI, Path

from gateway.schemas import ShareIn

app = FastAPI()


@app.post("/v1/cases/{caseId}/shares")
def share(body: ShareIn, caseId: str = Path(min_length=1, max_length=64)) -> dict[str, Any]:
    """Validate and answer, nothing else."""
    return {"results": [{"recipient": r, "allowed": True} for r in body.recipients]}


@app.post("/share")
def share_anywhere(body: ShareIn) -> dict[str, Any]:
    """The same without a case id (``bench.gateway_http`` posts here)."""
    return {"results": [{"recipient": r, "allowed": True} for r in body.recipients]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        "bench._baseline_app:app",
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
        timeout_worker_healthcheck=60,  # as gateway serve: a slow start on a busy machine is no crash
    )

"""The baseline of the HTTP benchmark: a bare FastAPI endpoint that validates a share-sized body."""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Share(BaseModel):
    informationType: str
    purpose: str
    recipients: list[str]
    payload: dict[str, Any]


@app.post("/share")
def share(body: Share) -> dict[str, Any]:
    """Validate and answer, nothing else."""
    return {"results": [{"recipient": r, "allowed": True} for r in body.recipients]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")

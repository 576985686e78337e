"""``GET /v1/audit/checkpoint/witnesses``: the newest checkpoint's cosignatures and the quorum policy."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from gateway.api.deps import AuditReader, RuntimeDep
from gateway.schemas import Schema
from gateway.services.witnessing import checkpoint_of, witness_status

router = APIRouter(prefix="/v1/audit", tags=["audit"])


class CosignatureOut(Schema):
    witness: str = Field(description="The witness's key name, as in its verifier key.")
    time: str | None = Field(description="When the witness cosigned (its own clock, UTC, ISO 8601).")
    valid: bool = Field(description="Whether it verifies now with the witness's configured key.")


class TreeHeadOut(Schema):
    size: int = Field(description="The checkpoint's tree size.")
    root_hash: str = Field(description="The checkpoint's RFC 6962 root hash, base64.")


class WitnessesOut(Schema):
    size: int = Field(description="The tree size of the newest checkpoint (as GET /v1/audit/checkpoint).")
    root_hash: str = Field(description="Its root hash, base64.")
    cosignatures: list[CosignatureOut] = Field(description="The cosignatures kept for it.")
    quorum: int = Field(description="Valid cosignatures by different witnesses that make it witnessed.")
    witnessed: bool = Field(description="Whether the quorum holds for this checkpoint.")
    witnesses: list[str] = Field(description="The configured witnesses' names.")
    latest_witnessed: TreeHeadOut | None = Field(
        description="The largest checkpoint the quorum cosigned (none yet: null)."
    )


EXAMPLE = {
    "size": 42,
    "rootHash": "q8x5mS0wz6XyK8C1P0m3y1Uu6a9hJc8m0F6a2l9m5Yc=",
    "cosignatures": [
        {"witness": "witness.om.example", "time": "2026-12-02T19:00:05Z", "valid": True},
        {"witness": "witness.rvdk.example", "time": "2026-12-02T19:00:06Z", "valid": True},
    ],
    "quorum": 2,
    "witnessed": True,
    "witnesses": ["witness.om.example", "witness.rvdk.example", "witness.vt.example"],
    "latestWitnessed": {"size": 42, "rootHash": "q8x5mS0wz6XyK8C1P0m3y1Uu6a9hJc8m0F6a2l9m5Yc="},
}


@router.get(
    "/checkpoint/witnesses",
    response_model=WitnessesOut,
    response_model_by_alias=True,
    responses={200: {"content": {"application/json": {"example": EXAMPLE}}}},
)
def checkpoint_witnesses(_ctx: AuditReader, rt: RuntimeDep) -> Any:
    """Which witnesses cosigned the newest checkpoint, and whether that meets the quorum
    (``GATEWAY_WITNESS_QUORUM`` of ``GATEWAY_WITNESSES``)."""
    return witness_status(rt, checkpoint_of(rt.audit.checkpoint())).to_json()

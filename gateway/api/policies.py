"""Policy routes for policy authors: what is loaded, and a safe reload."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import Field

from gateway.api.deps import PolicyAuthor, RuntimeDep
from gateway.policy.admin import reload_policy
from gateway.schemas import JsonDateTime, RequestBody
from gateway.services.impact import MAX_REPLAY, runtime_impact, validate_reviewed
from gateway.services.policy_archive import list_revisions

router = APIRouter(prefix="/v1/policies", tags=["policies"])


@router.get("")
def policy_info(_ctx: PolicyAuthor, rt: RuntimeDep) -> dict[str, Any]:
    """The active revision, the engine and the loaded modules; ``revisions``: every archived revision,
    the newest activation first, ``active`` for the one this gateway serves."""
    engine = rt.policy.current
    info = engine.info()
    info["revisions"] = [r.to_json(engine.revision) for r in list_revisions(rt.db)]
    return info


class ImpactIn(RequestBody):
    """Which recorded decisions to replay: the newest ``last``, those ``since`` a time, or the newest
    ``last`` of those since a time (both)."""

    last: int | None = Field(default=None, ge=1, le=MAX_REPLAY, description="The newest N (default 1000).")
    since: JsonDateTime | None = Field(default=None, description="Every decision since this time.")


class ReloadIn(RequestBody):
    """An optional reviewed impact the reload must match."""

    expect_impact: dict[str, Any] | None = Field(
        default=None,
        description="A reviewed impact report (POST /v1/policies/impact); refused when it differs.",
    )


@router.post("/reload")
def reload(
    ctx: PolicyAuthor, rt: RuntimeDep, body: Annotated[ReloadIn | None, Body()] = None
) -> dict[str, Any]:
    """Compile and test the policy directory, then switch; on failure 422 and the old revision stays."""
    expected = body.expect_impact if body is not None else None
    if expected is not None:
        validate_reviewed(expected)
    return reload_policy(rt, ctx, expect_impact=expected)


@router.post("/impact")
def impact(
    _ctx: PolicyAuthor, rt: RuntimeDep, body: Annotated[ImpactIn | None, Body()] = None
) -> dict[str, Any]:
    """Replay recorded decisions on the policy directory as it is on disk (not activated) and list every
    decision that would change; 422 with the errors when the candidate does not compile or pass its tests.
    """
    asked = body or ImpactIn()
    return runtime_impact(rt, last=asked.last, since=asked.since)

"""Policy routes for policy authors: what is loaded, and a safe reload."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.api.deps import PolicyAuthor, RuntimeDep
from gateway.policy.admin import reload_policy
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


@router.post("/reload")
def reload(ctx: PolicyAuthor, rt: RuntimeDep) -> dict[str, Any]:
    """Compile and test the policy directory, then switch; on failure 422 and the old revision stays."""
    return reload_policy(rt, ctx)

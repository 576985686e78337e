"""Reloading policies without downtime: compile, test, then swap; the change is an audit entry."""

from __future__ import annotations

import threading
from typing import Any

from gateway.errors import PolicyLoadFailed
from gateway.policy import EmbeddedEngine, run_tests
from gateway.runtime import Runtime
from gateway.trail import CallContext, make_entry

_reload_lock = threading.Lock()


def reload_policy(rt: Runtime, ctx: CallContext) -> dict[str, Any]:
    """Load ``policy_dir`` as a new revision; keep the old one serving if anything fails."""
    with _reload_lock:
        old = rt.policy.current
        try:
            candidate = EmbeddedEngine(rt.settings.policy_dir)
        except Exception as e:
            _audit(rt, ctx, old.revision, None, "compile_failed")
            raise PolicyLoadFailed(
                "the policy does not compile; the old revision stays active",
                errors=[{"field": "policies", "message": str(e)[:2000]}],
                extra={"revision": old.revision},
            ) from e
        report = run_tests(rt.settings.policy_dir)
        if report.failed or report.errors:
            _audit(rt, ctx, old.revision, candidate.revision, "tests_failed")
            failures = [{"field": r.name, "message": r.message} for r in report.results if not r.ok]
            failures += [{"field": "policies", "message": m} for m in report.errors]
            raise PolicyLoadFailed(
                f"{report.passed} passed, {report.failed} failed; the old revision stays active",
                errors=failures,
                extra={"revision": old.revision},
            )
        _audit(rt, ctx, old.revision, candidate.revision, "loaded")
        rt.policy.swap(candidate)
        return {
            "revision": candidate.revision,
            "previousRevision": old.revision,
            "testsPassed": report.passed,
        }


def _audit(rt: Runtime, ctx: CallContext, old: str, new: str | None, outcome: str) -> None:
    refs = {"oldRevision": old}
    if new:
        refs["newRevision"] = new
    rt.audit_append([make_entry(ctx, type_="policy", action="policy.reload", outcome=outcome, refs=refs)])

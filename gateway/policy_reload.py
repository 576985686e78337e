"""Reloading policies without downtime: compile, test, then swap; the change is an audit entry."""

from __future__ import annotations

import threading
from typing import Any

from gateway.errors import PolicyLoadFailed
from gateway.policy import (
    CompiledPolicy,
    EmbeddedEngine,
    PolicyEngine,
    compile_source,
    read_policy,
    run_tests,
)
from gateway.runtime import Runtime, make_policy_engine
from gateway.trail import CallContext, make_entry

_reload_lock = threading.Lock()


def reload_policy(rt: Runtime, ctx: CallContext) -> dict[str, Any]:
    """Load ``policy_dir`` as a new revision; keep the old one serving if anything fails."""
    with _reload_lock:
        old = rt.policy.current
        opa = rt.settings.policy_engine == "opa"
        try:
            # Read once: what is compiled, tested and served are the same bytes, even if a file
            # changes while this runs (the next reload, or the watcher, picks the change up).
            source = read_policy(rt.settings.policy_dir)
            # Compiled and probed with regopy for either engine: what fails here never reaches OPA.
            checked: EmbeddedEngine | CompiledPolicy = (
                compile_source(source) if opa else EmbeddedEngine(source)
            )
        except Exception as e:
            _audit(rt, ctx, old.revision, None, "compile_failed")
            raise PolicyLoadFailed(
                "the policy does not compile; the old revision stays active",
                errors=[{"field": "policies", "message": str(e)[:2000]}],
                extra={"revision": old.revision},
            ) from e
        report = run_tests(source)
        if report.failed or report.errors:
            _audit(rt, ctx, old.revision, checked.revision, "tests_failed")
            failures = [{"field": r.name, "message": r.message} for r in report.results if not r.ok]
            failures += [{"field": "policies", "message": m} for m in report.errors]
            raise PolicyLoadFailed(
                f"{report.passed} passed, {report.failed} failed; the old revision stays active",
                errors=failures,
                extra={"revision": old.revision},
            )
        candidate: PolicyEngine
        if isinstance(checked, CompiledPolicy):
            try:
                # Uploads and verifies the revision that was tested; a refusal restores OPA's old modules.
                candidate = make_policy_engine(rt.settings, checked.source, wait=0)
            except Exception as e:
                _audit(rt, ctx, old.revision, checked.revision, "engine_failed")
                raise PolicyLoadFailed(
                    "the policy engine did not load the revision; the old revision stays active",
                    errors=getattr(e, "errors", None) or [{"field": "opa", "message": str(e)[:2000]}],
                    extra={"revision": old.revision},
                ) from e
        else:
            candidate = checked
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

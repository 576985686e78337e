"""Reloading policies without downtime: compile, test, then swap; the change is an audit entry."""

from __future__ import annotations

import threading
from typing import Any

from gateway.errors import PolicyLoadFailed
from gateway.policy import (
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
            # Compiled and probed with regopy for either engine: what fails here never reaches OPA,
            # and no worker process starts for a revision that is then refused.
            checked = compile_source(source)
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
        try:
            # OPA: uploads and verifies the revision that was tested (a refusal restores OPA's old
            # modules). Embedded: the same snapshot, in new worker processes.
            candidate = (
                make_policy_engine(rt.settings, checked.source, wait=0)
                if opa
                else EmbeddedEngine(checked.source)
            )
        except Exception as e:
            _audit(rt, ctx, old.revision, checked.revision, "engine_failed")
            raise PolicyLoadFailed(
                "the policy engine did not load the revision; the old revision stays active",
                errors=getattr(e, "errors", None)
                or [{"field": rt.settings.policy_engine, "message": str(e)[:2000]}],
                extra={"revision": old.revision},
            ) from e
        try:
            _audit(rt, ctx, old.revision, candidate.revision, "loaded")
        except Exception:
            _close(candidate)
            raise
        retire(rt.policy.swap(candidate))
        return {
            "revision": candidate.revision,
            "previousRevision": old.revision,
            "testsPassed": report.passed,
        }


RETIRE_AFTER_SECONDS = 5.0
"""How long a swapped-out engine keeps its workers: requests that took it before the swap finish on it
(a decision waits at most twice the decision timeout), then it is closed."""


def retire(engine: PolicyEngine, after: float = RETIRE_AFTER_SECONDS) -> None:
    """Close ``engine`` once the requests that still hold it are done: no worker process outlives it."""
    timer = threading.Timer(after, _close, args=(engine,))
    timer.daemon = True
    timer.name = "policy-retire"
    timer.start()


def _close(engine: object) -> None:
    close = getattr(engine, "close", None)
    if callable(close):
        close()


def _audit(rt: Runtime, ctx: CallContext, old: str, new: str | None, outcome: str) -> None:
    refs = {"oldRevision": old}
    if new:
        refs["newRevision"] = new
    rt.audit_append([make_entry(ctx, type_="policy", action="policy.reload", outcome=outcome, refs=refs)])

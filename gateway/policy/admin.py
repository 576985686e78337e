"""Policy administration: reload without downtime, and the file watcher that reloads on a change.

A reload checks (OPA's compiler), compiles, tests, then swaps; the change is an audit entry and a log line.

An optional file watcher (``GATEWAY_POLICY_WATCH=true``) that reloads the policy when its files change.

It polls: every ``GATEWAY_POLICY_WATCH_INTERVAL`` seconds it stats the files that make up a revision
(``.rego`` and ``.json`` under the policy directory). A change must hold still for one more poll, so
an editor or a ``git checkout`` that writes several files is taken as a whole; then, when the content
hash differs from the serving revision, it reloads through `reload_policy`, the same path as
``POST /v1/policies/reload``: compile, test, swap, audit. A revision that fails stays refused until
the files change again, and the old one keeps serving. No library: stat calls on a few files.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from gateway.auth import Principal
from gateway.errors import PolicyLoadFailed
from gateway.policy import (
    EmbeddedEngine,
    PolicyEngine,
    PolicySource,
    compile_source,
    policy_fingerprint,
    policy_revision,
    read_policy,
    run_tests,
)
from gateway.policy._check import CheckReport, check_source
from gateway.polling import Poller
from gateway.runtime import Runtime, make_policy_engine
from gateway.services.impact import ImpactUnexpected, require_impact
from gateway.services.policy_archive import store_revision
from gateway.services.trail import CallContext, make_entry
from gateway.tracing import from_header

_reload_lock = threading.Lock()


class PolicyCheckFailed(Exception):
    """`check_source` found what OPA's compiler refuses."""

    def __init__(self, report: CheckReport) -> None:
        super().__init__(report.summary)
        self.report = report


def reload_policy(
    rt: Runtime, ctx: CallContext, expect_impact: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Load ``policy_dir`` as a new revision; keep the old one serving if anything fails.

    With ``expect_impact`` (a reviewed impact report) the tested revision is replayed on that report's
    window first and refused (``impact_unexpected``) when its changed decisions differ from the reviewed.
    """
    with _reload_lock:
        old = rt.policy.current
        opa = rt.settings.policy_engine == "opa"
        try:
            # Read once: what is compiled, tested and served are the same bytes, even if a file
            # changes while this runs (the next reload, or the watcher, picks the change up).
            source = read_policy(rt.settings.policy_dir)
            # What OPA's compiler refuses (an unknown function, an unsafe variable) never compiles into
            # an engine: regopy would take it and fail only when a decision reaches the rule.
            check = check_source(source)
            if not check.ok:
                raise PolicyCheckFailed(check)
            # Compiled and probed with regopy for either engine: what fails here never reaches OPA,
            # and no worker process starts for a revision that is then refused.
            checked = compile_source(source)
        except PolicyCheckFailed as e:
            findings = [{"field": f.place, "message": f"{f.code}: {f.message}"} for f in e.report.findings]
            _audit(rt, ctx, old.revision, e.report.revision, "check_failed", errors=findings)
            raise PolicyLoadFailed(
                f"{e.report.compiler} refuses the policy ({len(findings)} finding(s)); "
                "the old revision stays active",
                errors=findings,
                extra={"revision": old.revision},
            ) from None
        except Exception as e:
            compile_errors = getattr(e, "errors", None) or [{"field": "policies", "message": str(e)}]
            _audit(rt, ctx, old.revision, _on_disk(rt), "compile_failed", errors=compile_errors)
            raise PolicyLoadFailed(
                "the policy does not compile; the old revision stays active",
                errors=[{"field": "policies", "message": str(e)[:2000]}],
                extra={"revision": old.revision},
            ) from e
        report = run_tests(source)
        if report.failed or report.errors:
            failures = [{"field": r.name, "message": r.message} for r in report.results if not r.ok]
            failures += [{"field": "policies", "message": m} for m in report.errors]
            _audit(rt, ctx, old.revision, checked.revision, "tests_failed", errors=failures)
            raise PolicyLoadFailed(
                f"{report.passed} passed, {report.failed} failed; the old revision stays active",
                errors=failures,
                extra={"revision": old.revision},
            )
        if expect_impact is not None:
            try:
                require_impact(rt.db, old.revision, checked.source, expect_impact)
            except ImpactUnexpected as e:
                _audit(rt, ctx, old.revision, checked.revision, "impact_unexpected", errors=e.errors)
                raise
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
            engine_errors = getattr(e, "errors", None) or [
                {"field": rt.settings.policy_engine, "message": str(e)[:2000]}
            ]
            _audit(rt, ctx, old.revision, checked.revision, "engine_failed", errors=engine_errors)
            raise PolicyLoadFailed(
                "the policy engine did not load the revision; the old revision stays active",
                errors=engine_errors,
                extra={"revision": old.revision},
            ) from e
        try:
            # The revision is archived (issue 11) in the transaction of the entry that says it loaded.
            _audit(rt, ctx, old.revision, candidate.revision, "loaded", archive=checked.source)
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


def _audit(
    rt: Runtime,
    ctx: CallContext,
    old: str,
    new: str | None,
    outcome: str,
    *,
    errors: list[dict[str, str]] | None = None,
    archive: PolicySource | None = None,
) -> None:
    """The reload's entry: the old and the candidate revision, why it was refused (``errors``: each
    place and its message's first line, no more), and with ``archive`` the revision stored with it."""
    refs = {"oldRevision": old}
    if new:
        refs["newRevision"] = new
    if errors:
        refs["errors"] = error_lines(errors)
    writes = None
    if archive is not None:
        source = archive

        def writes(conn: Connection) -> None:
            store_revision(conn, source)

    entry = make_entry(ctx, type_="policy", action="policy.reload", outcome=outcome, refs=refs)
    try:
        rt.audit_append([entry], writes=writes)
    except Exception:
        # Not recorded, so not loaded either (a ``loaded`` whose entry failed is refused by the caller).
        _log_reload(ctx, old, new, f"{outcome} not recorded (audit write failed)", errors or [])
        raise
    _log_reload(ctx, old, new, outcome, errors or [])


def _log_reload(
    ctx: CallContext, old: str, new: str | None, outcome: str, errors: list[dict[str, str]]
) -> None:
    """One line per reload, loaded or refused: who, the outcome, the old and the candidate revision, how
    many errors and the first one's place and first line (policy text, never case data, as in the entry)."""
    first = f"; first: {error_lines(errors[:1])}" if errors else ""
    log.log(
        logging.INFO if outcome == "loaded" else logging.WARNING,
        "policy reload %s by %s: old revision %s, candidate %s, %d error(s)%s",
        outcome,
        ctx.principal.client_id,
        old,
        new or "unknown",
        len(errors),
        first,
    )


MAX_ERROR_LINES = 5
"""How many errors a refused reload's entry names (the answer of the reload has them all)."""


def error_lines(errors: list[dict[str, str]]) -> str:
    """``field: first line of message`` of the first `MAX_ERROR_LINES` errors, ``; ``-joined, at most 1000
    characters: where and what, never a payload (a policy error quotes policy, not case data)."""
    lines = []
    for error in errors[:MAX_ERROR_LINES]:
        message = (str(error.get("message", "")).strip().splitlines() or [""])[0][:200]
        lines.append(f"{error.get('field', 'policies')}: {message}")
    if len(errors) > MAX_ERROR_LINES:
        lines.append(f"(+{len(errors) - MAX_ERROR_LINES})")
    return "; ".join(lines)[:1000]


def _on_disk(rt: Runtime) -> str | None:
    """The revision of the policy directory as it is, for a reload that could not even read it."""
    try:
        return policy_revision(rt.settings.policy_dir)
    except Exception:
        return None


log = logging.getLogger("gateway.policy")

WATCHER = Principal(client_id="policy-watcher", agency="gateway", role="system", scopes=frozenset({"policy"}))
"""Who reloads, in the audit trail, when the watcher does."""

Fingerprint = tuple[tuple[str, int, int], ...]


class PolicyWatcher(Poller):
    """Polls the policy directory and reloads on a settled change. ``check`` is one poll."""

    thread_name = "policy-watcher"
    log = log

    def __init__(self, rt: Runtime, *, interval: float = 2.0) -> None:
        super().__init__(interval=interval)
        self.rt = rt
        self._seen: Fingerprint = self._fingerprint()
        self._pending: Fingerprint | None = None
        self._refused: str | None = None

    def _fingerprint(self) -> Fingerprint:
        try:
            return policy_fingerprint(self.rt.settings.policy_dir)
        except Exception as e:  # a missing directory is a state like any other: nothing to load
            log.warning("cannot read the policy directory: %s", type(e).__name__)
            return ()

    def check(self) -> dict[str, Any] | None:
        """One poll: the reload's answer when it reloaded, else None. Never raises for a bad policy."""
        now = self._fingerprint()
        if now == self._seen:
            self._pending = None
            return None
        if now != self._pending:  # changed since the last poll: let it settle for one more
            self._pending = now
            return None
        self._seen, self._pending = now, None
        try:
            revision = policy_revision(self.rt.settings.policy_dir)
        except Exception as e:
            log.warning("cannot hash the policy directory: %s", type(e).__name__)
            return None
        if revision in (self.rt.policy.current.revision, self._refused):
            return None
        ctx = CallContext(principal=WATCHER, trace=from_header(None))
        try:
            answer = reload_policy(self.rt, ctx)
        except PolicyLoadFailed as e:
            self._refused = revision
            log.error("policy change refused, the old revision keeps serving: %s", e.detail)
            return None
        self._refused = None
        log.info("policy reloaded by the watcher: %s", answer["revision"])
        return answer

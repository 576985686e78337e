"""Replicas follow the policy revision the database says is active (``GATEWAY_POLICY_FOLLOW=true``).

A reload (``POST /v1/policies/reload``, ``gateway policy`` via the API, the file watcher) runs on one
replica: it compiles and tests the revision, and in the transaction of its audit entry archives the
revision as the newest activation (`gateway.services.policy_archive.store_revision`). Every replica
with ``policy_follow`` on polls the archive (`active_revision`: one small query every
``GATEWAY_POLICY_FOLLOW_INTERVAL`` seconds) and, when the active revision is not the one it serves,
loads that revision's files from ``policy_revisions`` (`load_revision`, which checks that they still hash
to the revision), builds its engine and swaps it in the way a reload does: requests in flight finish on
the old one. So all replicas serve the revision activated last, within one interval, without sharing a
policy directory or any process talking to another.

At start (`adopt_active_revision`): a revision on disk the archive has never seen is a new deployment
and becomes active, as before; one the archive knows but is not the active one is stale (an old copy of
the files, a replica restarted before its ConfigMap caught up), and the replica serves the active one
instead, with a warning. A rollback is therefore a reload, never only older files on disk.

The database is the tool here rather than Redis: the revision must be durable, its files are already
archived there in the reload's own transaction, and every replica has the database anyway.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from gateway.polling import Poller
from gateway.services.policy_archive import (
    RevisionNotArchived,
    active_revision,
    list_revisions,
    load_revision,
)

if TYPE_CHECKING:
    from gateway.policy import PolicyEngine, PolicySource
    from gateway.runtime import Runtime

log = logging.getLogger("gateway.policy")

__all__ = ["PolicyFollower", "adopt_active_revision", "engine_for_revision"]


def engine_for_revision(rt: Runtime, source: PolicySource) -> PolicyEngine:
    """An engine serving ``source`` (an archived revision) as this runtime's settings say: embedded, in
    its own worker processes, or uploaded to this replica's OPA sidecar."""
    from gateway.policy import EmbeddedEngine
    from gateway.runtime import make_policy_engine

    if rt.settings.policy_engine == "opa":
        return make_policy_engine(rt.settings, source, wait=0)
    return EmbeddedEngine(source)


def adopt_active_revision(rt: Runtime) -> None:
    """At start: archive the revision on disk if it is new (it becomes active), else serve the active one.

    Called by `Runtime` instead of plain archiving when ``policy_follow`` is on.
    """
    engine = rt.policy.current
    known = {r.revision for r in list_revisions(rt.db)}
    if engine.revision not in known:
        rt.archive_policy(engine)  # a new deployment: its revision serves from now on, everywhere
        return
    try:
        active = active_revision(rt.db)
    except RevisionNotArchived:
        active = None
    if active is None or active == engine.revision:
        return
    log.warning(
        "the policy files on disk are revision %s, but revision %s was activated since (by a reload on "
        "some replica); serving %s. Reload to activate the files on disk.",
        engine.revision,
        active,
        active,
    )
    PolicyFollower(rt).follow(active)


class PolicyFollower(Poller):
    """Polls the archive's active revision and swaps this replica onto it. ``check`` is one poll."""

    thread_name = "policy-follower"
    log = log

    def __init__(self, rt: Runtime, *, interval: float = 2.0) -> None:
        super().__init__(interval=interval)
        self.rt = rt
        self.swaps = 0
        """How many times this follower moved its replica to another revision."""
        self._failed: str | None = None

    def check(self) -> str | None:
        """One poll: the revision swapped in, or None (already on it, nothing archived, or it failed and
        the old revision keeps serving). Never raises for a database or policy problem."""
        try:
            active = active_revision(self.rt.db)
        except RevisionNotArchived:
            return None
        except SQLAlchemyError as e:  # the database is down: keep serving; /readyz says the rest
            log.warning("policy follower cannot read the active revision: %s", type(e).__name__)
            return None
        if active == self.rt.policy.current.revision:
            self._failed = None
            return None
        return self.follow(active)

    def follow(self, revision: str) -> str | None:
        """Serve the archived ``revision`` from now on; None when it cannot be loaded (logged once)."""
        from gateway.policy.admin import _reload_lock, retire

        with _reload_lock:  # never interleaved with a reload of this process
            if revision == self.rt.policy.current.revision:
                return None
            try:
                engine = engine_for_revision(self.rt, load_revision(self.rt.db, revision))
            except Exception as e:  # altered in the archive, does not compile here, OPA refused it
                if self._failed != revision:
                    log.error(
                        "cannot follow policy revision %s, %s keeps serving: %s",
                        revision,
                        self.rt.policy.current.revision,
                        getattr(e, "detail", None) or type(e).__name__,
                    )
                self._failed = revision
                return None
            old = self.rt.policy.swap(engine)
        self._failed = None
        self.swaps += 1
        log.info("policy revision %s activated elsewhere; this replica now serves it", revision)
        retire(old)
        return revision

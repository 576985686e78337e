"""An optional file watcher (``GATEWAY_POLICY_WATCH=true``) that reloads the policy when its files change.

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
from typing import Any

from gateway.auth import Principal
from gateway.errors import PolicyLoadFailed
from gateway.policy import policy_fingerprint, policy_revision
from gateway.policy_reload import reload_policy
from gateway.runtime import Runtime
from gateway.tracing import from_header
from gateway.trail import CallContext

log = logging.getLogger("gateway.policy")

WATCHER = Principal(client_id="policy-watcher", agency="gateway", role="system", scopes=frozenset({"policy"}))
"""Who reloads, in the audit trail, when the watcher does."""

Fingerprint = tuple[tuple[str, int, int], ...]


class PolicyWatcher:
    """Polls the policy directory and reloads on a settled change. ``check`` is one poll."""

    def __init__(self, rt: Runtime, *, interval: float = 2.0) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.rt = rt
        self.interval = interval
        self._seen: Fingerprint = self._fingerprint()
        self._pending: Fingerprint | None = None
        self._refused: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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

    def start(self) -> None:
        """Poll in a daemon thread until `stop`."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="policy-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (waits for a reload in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # the watcher must outlive any failure; the audit trail has the rest
                log.exception("policy watcher poll failed")

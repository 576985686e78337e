"""The composition root: one ``Runtime`` holds every service the request path needs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from audit import (
    LogSigner,
    SigningKeyUnavailable,
    SqlAuditStore,
    load_or_create_signing_key,
    log_size,
    private_directory,
    retired_verifier_keys,
)
from connectors import Connector, build_connectors
from gateway.auth import AuthService
from gateway.auth.keyring import KeyRing, RingSigner
from gateway.auth.keys import DeliveryKey
from gateway.bsn import Pseudonymizer
from gateway.db import fault_kind, make_engine, make_sessionmaker
from gateway.errors import AuditUnavailable, StartupRefused
from gateway.migrations import require_current, upgrade
from gateway.policy import Decision, EmbeddedEngine, PolicyEngine, PolicySource
from gateway.policy._cache import cache_counts
from gateway.sealing import open_sealer, seal_legacy_messages
from gateway.services.policy_archive import (
    PendingInputs,
    archive_revision,
    entry_digests,
    pending_input,
    write_inputs,
)
from gateway.services.process import ProcessFacts
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.services.outbox import Deliverer

log = logging.getLogger("gateway")

OPA_STARTUP_WAIT = 15.0
"""Seconds to wait for the OPA sidecar's health at start (it may start after the gateway)."""


def make_policy_engine(
    settings: Settings, source: PolicySource | None = None, *, wait: float = OPA_STARTUP_WAIT
) -> PolicyEngine:
    """The engine ``GATEWAY_POLICY_ENGINE`` names: ``embedded`` (regopy, in-process) or ``opa``.

    For ``opa``, ``wait`` is how long to wait for the sidecar's health first (a reload waits for none).
    """
    if settings.policy_engine == "opa":
        from gateway.policy import OpaEngine  # here: the OPA client loads aiohttp (~0.3 s at every start)

        return OpaEngine(
            settings.opa_url,
            source or settings.policy_dir,
            timeout=settings.opa_timeout,
            upload=settings.opa_upload,
            wait=wait,
        )
    return EmbeddedEngine(source.directory if source else settings.policy_dir)


AUDIT_KEY_FILE = "audit-log.key"
"""The audit log's signing key in the data directory; ``audit-log.key.retired`` keeps rotated-out ones."""


def audit_key_path(settings: Settings) -> Path:
    """Where the audit log's signing key is: ``GATEWAY_AUDIT_KEY_FILE``, else in the data directory."""
    return settings.audit_key_file or settings.data_dir / AUDIT_KEY_FILE


def open_audit_log(settings: Settings, engine: Engine) -> SqlAuditStore:
    """The audit log with its signing key and key history; a new key is made for an empty log only.

    Raises ``StartupRefused`` when the log has entries and its key is missing, or when the key or its
    history cannot be used: a silently made new key would leave every earlier checkpoint unverifiable
    with the key people trust. A new key for such a log only comes from ``gateway audit rotate-key``.
    """
    path = audit_key_path(settings)
    try:
        entries = 0 if path.exists() else log_size(engine)
        key = load_or_create_signing_key(path, create=entries == 0)
        retired = retired_verifier_keys(path)
    except SigningKeyUnavailable as e:
        size = log_size(engine)
        held = f"the audit log holds {size} entries" if size else "the audit log is empty"
        raise StartupRefused(
            f"{held} but {e.reason}; restore the key from a backup, or make a new one deliberately with "
            "`gateway audit rotate-key --lost-key` (older checkpoints then verify only with the old "
            "verifier key)"
        ) from e
    return SqlAuditStore(engine, LogSigner(key, settings.log_origin), retired=retired)


class PolicyHolder:
    """The active policy engine; a reload swaps it in one assignment.

    A request takes ``current`` once and decides with it to the end, so requests in flight finish on the
    revision they started with.
    """

    def __init__(self, engine: PolicyEngine) -> None:
        self._engine = engine
        self._lock = threading.Lock()

    @property
    def current(self) -> PolicyEngine:
        """The engine serving new requests."""
        return self._engine

    def swap(self, engine: PolicyEngine) -> PolicyEngine:
        """Make ``engine`` current; returns the previous one."""
        with self._lock:
            old, self._engine = self._engine, engine
        return old


@dataclass
class Metrics:
    """Prometheus metrics of one runtime (own registry, so tests can run several gateways)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "gateway_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.decisions = Counter(
            "gateway_policy_decisions", "Policy decisions", ["action", "allowed"], registry=self.registry
        )
        self.decision_seconds = Histogram(
            "gateway_policy_decision_seconds",
            "Time to evaluate one decision",
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1),
            registry=self.registry,
        )
        self.audit_seconds = Histogram(
            "gateway_audit_append_seconds",
            "Time to commit audit entries",
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5),
            registry=self.registry,
        )
        self.audit_failures = Counter(
            "gateway_audit_failures", "Failed audit appends", registry=self.registry
        )
        self.rate_limited = Counter(
            "gateway_rate_limited", "Requests refused by a rate limit", ["limit"], registry=self.registry
        )
        self.deliveries = Counter(
            "gateway_delivery_attempts",
            "Push attempts by outcome (delivered, push_failed, dead_letter, skipped)",
            ["outcome"],
            registry=self.registry,
        )

    def count_rate_limited(self, limit: str) -> None:
        """Count one refusal by the rate limit ``limit`` (``client``, ``token_client``, ...)."""
        self.rate_limited.labels(limit).inc()


class Runtime:
    """Settings, database, policy, audit log, connectors, pseudonymiser and auth of one gateway process."""

    def __init__(
        self,
        settings: Settings,
        *,
        connectors: dict[str, Connector] | None = None,
        policy: PolicyEngine | None = None,
    ) -> None:
        self.settings = settings
        private_directory(settings.data_dir)
        self.db: Engine = make_engine(settings.effective_database_url, busy_timeout=settings.db_busy_timeout)
        if settings.mode == "production":
            require_current(self.db)  # replicas never migrate at start: `gateway migrate` does, once
        else:
            upgrade(self.db)
        self.sessions: sessionmaker[Session] = make_sessionmaker(self.db)
        self.policy = PolicyHolder(policy or make_policy_engine(settings))
        self.pending_inputs = PendingInputs()
        """Decision inputs not yet written: `audit_append` stores those its entries name (issue 11)."""
        if settings.policy_follow:  # replicas: a revision another replica activated serves here too
            from gateway.policy.follow import adopt_active_revision

            adopt_active_revision(self)
        else:
            self.archive_policy(self.policy.current)
        self.audit = open_audit_log(settings, self.db)
        self.signer = self.audit.signer
        # The delivery key as a ring: a rotation (gateway keys rotate delivery) reaches the signer live.
        self.delivery_keys = KeyRing.for_settings(settings, "delivery")
        self.connectors: dict[str, Connector] = connectors or build_connectors(
            settings.connectors,
            settings.agency_urls,
            file=settings.connectors_file,
            signer=RingSigner(self.delivery_keys),
        )
        self.pseudonymizer = Pseudonymizer.from_settings(
            settings.pseudonym_secret, settings.data_dir, settings.pseudonym_secret_file
        )
        self.sealer = open_sealer(self.db, settings.data_dir, settings.sealing_key_file)
        self.metrics = Metrics()
        self.auth = AuthService(
            settings,
            self.sessions,
            on_rate_limited=self.metrics.count_rate_limited,
            registry=self.metrics.registry,  # the token cache's hit rate in /metrics
            delivery_keys=self.delivery_keys,
        )
        # The serving engine's decision cache beside it (counted since that revision was loaded).
        self.auth.count_cache("policy_decision", lambda: cache_counts(self.policy.current))
        self._process_facts: tuple[PolicyEngine, ProcessFacts] | None = None
        # Rows stored in clear before sealing (0004) are sealed once, by whichever process starts first.
        seal_legacy_messages(self.db, self.sealer, self.process_facts().default_message_retention())
        from gateway.services.outbox import Deliverer  # it reads messages through this runtime

        self.deliverer: Deliverer = Deliverer(self)
        """The outbox's deliverer: the share's first attempts, and (once started) the retries."""

    @property
    def delivery_key(self) -> DeliveryKey:
        """The key that signs deliveries now."""
        return self.delivery_keys.delivery_key()

    def process_facts(self) -> ProcessFacts:
        """The process facts (flows, steps, types, purposes) of the active policy revision.

        Read once per revision, not per request.
        """
        engine = self.policy.current
        cached = self._process_facts
        if cached is None or cached[0] is not engine:
            cached = (engine, ProcessFacts(engine.facts()))
            self._process_facts = cached  # a benign race: two threads may both build the same view
        return cached[1]

    def archive_policy(self, engine: PolicyEngine) -> None:
        """Keep ``engine``'s revision in the policy archive (insert if absent) as the active one."""
        source = getattr(engine, "source", None)
        if not isinstance(source, PolicySource):
            log.warning("policy revision %s not archived: its engine keeps no source", engine.revision)
            return
        try:
            archive_revision(self.db, source)
        except ValueError as e:  # a source built by hand, without the texts it was hashed from
            log.warning("policy revision %s not archived: %s", engine.revision, e)

    def decide(self, policy_input: dict[str, Any], engine: PolicyEngine | None = None) -> Decision:
        """One policy decision, timed and counted. Fail-closed behaviour lives in the engine.

        The input is remembered under its digest (the decision's ``input_digest``), for the entry that
        will carry the decision to store with it (`audit_append`); an input that could hold a BSN or
        payload text is not (`policy_archive.withheld_reason`), and its decision names no digest.
        """
        engine = engine or self.policy.current
        t0 = time.perf_counter()
        decision = engine.decide(policy_input)
        self.metrics.decision_seconds.observe(time.perf_counter() - t0)
        self.metrics.decisions.labels(str(policy_input.get("action")), str(decision.allowed).lower()).inc()
        recorded = pending_input(policy_input)
        if recorded is None:
            log.warning("decision input of %s withheld from the archive", policy_input.get("action"))
            return decision
        self.pending_inputs.remember(recorded)
        return replace(decision, input_digest=recorded.digest)

    def audit_append(
        self, entries: list[dict[str, Any]], writes: Callable[[Connection], None] | None = None
    ) -> list[int]:
        """Commit entries to the audit log, with ``writes`` in the same transaction; else the call fails.

        ``writes`` are the exchange's own rows (messages, the case's change, its involvement): they and
        the entries commit together or not at all, so there is no message without its entry and no
        "authorised" entry without its message. A failure is `AuditUnavailable` (503): nothing was done.
        """
        t0 = time.perf_counter()
        # The inputs the entries' decisions name commit with them (issue 11), or nothing does; those this
        # process stored already need nothing.
        inputs, missing = self.pending_inputs.take(entry_digests(entries))
        if inputs or missing:
            own = writes

            def writes(conn: Connection) -> None:
                write_inputs(conn, inputs, missing)
                if own is not None:
                    own(conn)

        try:
            indexes = self.audit.append(entries, writes=writes) if writes else self.audit.append(entries)
        except Exception as e:
            self.metrics.audit_failures.inc()
            # By type and fault kind only (locked, full, unavailable): the message may quote a statement.
            kind = fault_kind(e)
            log.error("audit append failed: %s (%s)", type(e).__name__, kind or "not a database fault")
            raise AuditUnavailable(
                "the audit log could not be written; nothing was done",
                extra={"fault": kind} if kind else None,
            ) from e
        self.metrics.audit_seconds.observe(time.perf_counter() - t0)
        if inputs or missing:
            self.pending_inputs.written([*(p.digest for p in inputs), *missing])
        return indexes

    def close(self) -> None:
        """Stop the deliverer, the policy engine (its worker processes) and release the database pool."""
        self.deliverer.stop()
        close = getattr(self.policy.current, "close", None)
        if callable(close):
            close()
        self.db.dispose()

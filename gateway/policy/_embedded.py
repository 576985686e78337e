"""The embedded engine: regopy (rego-cpp) in-process, one compiled bundle per policy revision."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
import logging
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import regopy

from gateway.policy._cache import DEFAULT_SIZE, DecisionCache
from gateway.policy._decision import (
    ENGINE_ERROR,
    ENGINE_TIMEOUT,
    ENGINE_UNAVAILABLE,
    MALFORMED_DECISION,
    UNDEFINED_DECISION,
    Decision,
    MalformedDecision,
)
from gateway.policy._readpaths import ReadPaths, derive
from gateway.policy._render import Templates, load_templates
from gateway.policy._source import (
    ENTRYPOINT,
    PolicyCompileError,
    PolicySource,
    read_policy,
    refused_constructs,
    rego_errors,
)
from gateway.policy._workers import EvaluationError, PoolClosed, WorkerPool, WorkerTimeout

log = logging.getLogger("gateway.policy")

DECISION_TIMEOUT_SECONDS = 1.0
"""How long one evaluation may run, and how long a decision may wait for a free worker, before it is a
deny.

A decision takes about a millisecond; a second means the engine is stuck or starved, and the caller
gets ``engine_timeout`` instead of waiting; a stuck evaluation's worker is killed and replaced (see
docs/policies.md, "Bounds")."""


SHADOW_FIRST = 64
SHADOW_EVERY = 128
"""The shadow check of the projection: the first ``SHADOW_FIRST`` evaluations of a revision, and then one
in ``SHADOW_EVERY``, are made on the whole input as well. Should the two decisions ever differ (a read
the derivation missed), the engine says so in an error line and keys on the whole input from then on:
that decision, and every later one, is the whole input's."""


def new_interpreter() -> Any:
    """A quiet interpreter: regopy prints compile errors to stdout unless told not to."""
    interp = regopy.Interpreter()
    interp.log_level = regopy.LogLevel.NONE
    return interp


def input_term(value: Any) -> str:
    """``value`` as the JSON text regopy parses: canonical (keys sorted, no spaces), so it is also the
    decision cache's key.

    regopy 1.5.2's ``Input(obj)`` stores Python strings unescaped, so a ``"`` or ``\\`` in any input
    string corrupts the engine's JSON output; and ``\\uXXXX`` escapes are not decoded before comparison.
    Handing over UTF-8 JSON text avoids both. Raises ``TypeError``/``ValueError`` for non-JSON values.
    """
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class CompiledPolicy:
    """One revision compiled: the interpreter that owns the bundle. Not thread-safe on its own."""

    source: PolicySource
    interpreter: Any
    bundle: Any
    loaded_at: dt.datetime
    templates: Templates
    """data.json's message templates, checked at load: the policy's reasons are rendered with them."""

    @property
    def revision(self) -> str:
        """The revision of the source this was compiled from."""
        return self.source.revision

    def evaluate(self, term: str) -> str:
        """The raw output text for one input (JSON text); callers hold the lock."""
        self.interpreter.set_input_term(term)
        output = self.interpreter.query_bundle_entrypoint(self.bundle, ENTRYPOINT)
        if not output.ok():
            raise regopy.RegoError(str(output))
        return str(output)


def load_policy(policy_dir: Path | str) -> CompiledPolicy:
    """Read and compile ``policy_dir``; raises `PolicyCompileError` naming each problem by file:line."""
    source = read_policy(policy_dir)
    return compile_source(source)


def compile_source(source: PolicySource) -> CompiledPolicy:
    """Compile what `read_policy` read (tests left out), and check that the entrypoint always decides."""
    refused = refused_constructs(source.modules)
    if refused:
        raise PolicyCompileError(f"{refused[0]['field']}: {refused[0]['message']}", errors=refused)
    modules = source.policy_modules
    templates = load_templates(source.facts, modules)
    interp = new_interpreter()
    try:
        for name, text in sorted(modules.items()):
            interp.add_module(name, text)
        interp.add_data_json(json.dumps(source.data, ensure_ascii=False))
        bundle = interp.build(None, [ENTRYPOINT])
    except regopy.RegoError as e:
        errors = rego_errors(str(e), modules)
        raise PolicyCompileError(f"{errors[0]['field']}: {errors[0]['message']}", errors=errors) from e
    if not bundle.ok():
        raise PolicyCompileError(
            "the bundle did not build", errors=[{"field": ENTRYPOINT, "message": "no bundle"}]
        )
    compiled = CompiledPolicy(source, interp, bundle, dt.datetime.now(dt.UTC), templates)
    _probe(compiled, modules)
    return compiled


def _probe(compiled: CompiledPolicy, modules: dict[str, str]) -> None:
    """An empty input must give a defined deny: a policy that cannot decide never goes live."""
    try:
        text = compiled.evaluate("{}")
        result = json.loads(text)["expressions"][0]
        decision = Decision.from_result(compiled.templates.result(result), compiled.revision, {})
    except regopy.RegoError as e:
        errors = rego_errors(str(e), modules)
        message = f"evaluating {ENTRYPOINT} failed: {errors[0]['message']}"
        raise PolicyCompileError(message, errors=errors) from e
    except (ValueError, KeyError, IndexError, TypeError, MalformedDecision) as e:
        raise PolicyCompileError(
            f"{ENTRYPOINT} gives no well-formed decision for an empty input",
            errors=[{"field": ENTRYPOINT, "message": f"undefined or malformed: {e}"}],
        ) from e
    if decision.allowed:
        raise PolicyCompileError(
            f"{ENTRYPOINT} allows an empty input", errors=[{"field": ENTRYPOINT, "message": "must deny"}]
        )


def default_pool_size() -> int:
    """One worker per core, at most four."""
    return max(1, min(4, os.cpu_count() or 1))


class EmbeddedEngine:
    """`PolicyEngine` on regopy: compiled once per revision, fail closed, every decision bounded.

    With a ``timeout`` (the default) each decision runs in one of ``pool_size`` worker processes that
    hold the compiled bundle (`gateway.policy._workers`): past the deadline the worker is killed and
    replaced and the caller is denied ``engine_timeout``, so no evaluation keeps an interpreter busy
    for longer than the deadline. With ``timeout=None`` decisions run in the calling thread on a pool
    of in-process interpreters, unbounded (for tools and tests that want no child processes).

    The parent compiles and probes the revision too: compile errors name file and line, and `facts`
    and `info` need no worker. To change revision, build a new engine, swap it in and `close` the old
    one (the gateway's reload does). `close` stops the workers; a decision after it fails closed.

    Decisions are cached (``cache_size`` entries, least recently used out; 0 for none) by what the
    policy can see of the input: its projection onto the paths this revision's Rego reads
    (``read_paths``, derived from the source when the engine is built, `gateway.policy._readpaths`).
    With the cache on, that projection is also what the engine evaluates, so an entry is the decision
    of exactly its key; when the paths cannot be derived the key is the whole input, and the engine
    says so in a log line. ``cache.stats()`` gives hits, misses and what the key holds. A sample of the
    evaluations is made on the whole input as well (`SHADOW_FIRST`, `SHADOW_EVERY`): a projection that
    ever changes a decision is dropped for the whole input, with an error line.
    """

    name = "embedded"

    def __init__(
        self,
        policy: Path | str | PolicySource,
        *,
        pool_size: int | None = None,
        timeout: float | None = DECISION_TIMEOUT_SECONDS,
        cache_size: int = DEFAULT_SIZE,
    ) -> None:
        # A PolicySource is a snapshot already read (the reload compiles and tests the same bytes).
        source = policy if isinstance(policy, PolicySource) else read_policy(policy)
        self._compiled = compile_source(source)
        size = pool_size if pool_size is not None else default_pool_size()
        if size < 1:
            raise ValueError("pool_size must be at least 1")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive (or None for no bound)")
        self.pool_size = size
        self.timeout = timeout
        self._pool: queue.Queue[CompiledPolicy] = queue.Queue()
        self._pool.put(self._compiled)
        self._workers: WorkerPool | None = None
        # Decisions of this revision by what it reads of the input (gateway.policy._cache); 0: no cache.
        self.read_paths: ReadPaths = derive(source.policy_modules, source.data)
        if cache_size > 0:
            _log_read_paths(self._compiled.revision, self.read_paths)
        self.cache = (
            DecisionCache(self._compiled.revision, cache_size, self.read_paths) if cache_size > 0 else None
        )
        self._evaluations = itertools.count()
        self._projection_lock = threading.Lock()
        self._closed = False
        if timeout is None:
            for _ in range(size - 1):
                # Same source, so the same revision: what was hashed is what every interpreter runs.
                self._pool.put(compile_source(self._compiled.source))
        else:
            self._workers = WorkerPool(self._compiled.source, size, timeout)

    @property
    def revision(self) -> str:
        """The loaded revision."""
        return self._compiled.revision

    @property
    def policy_dir(self) -> Path:
        """The directory this revision was read from."""
        return self._compiled.source.directory

    @property
    def source(self) -> PolicySource:
        """The files of this revision, as read and hashed (archived by `gateway.services.policy_archive`)."""
        return self._compiled.source

    def decide(self, policy_input: dict[str, Any]) -> Decision:
        """Evaluate the decision; any failure of the engine is a deny with its own reason code."""
        revision = self._compiled.revision
        try:
            term = input_term(policy_input)
        except (TypeError, ValueError):
            return Decision.fail_closed(ENGINE_ERROR, revision, policy_input, "the input is not JSON")
        whole = term
        read_paths = self.read_paths
        if self.cache is not None and read_paths.paths is not None:
            try:
                # An input the engine cannot take whole stays a failure, as without the projection.
                term.encode("utf-8")
            except UnicodeEncodeError:
                log.error("policy engine error (UnicodeEncodeError): the input is not UTF-8")
                return Decision.fail_closed(ENGINE_ERROR, revision, policy_input)
            # What the policy can see of the input: the key, and what is evaluated on a miss.
            term = input_term(read_paths.project(policy_input))
        cached = self.cache.get(term) if self.cache is not None and not self._closed else None
        if cached is not None:
            # The same text parsed into a decision before; every hit gets its own Decision.
            return self._decision(json.loads(cached)["expressions"][0], policy_input)
        try:
            text = self._run(term)
            if term != whole and self._shadow_due():
                text, term = self._shadow(term, whole, text, policy_input)
        except WorkerTimeout as e:
            log.error(
                "policy decision timed out (%s s, %s) for action %r", self.timeout, e, _action(policy_input)
            )
            return Decision.fail_closed(ENGINE_TIMEOUT, revision, policy_input)
        except PoolClosed:
            log.error("policy decision on a closed engine for action %r", _action(policy_input))
            return Decision.fail_closed(ENGINE_UNAVAILABLE, revision, policy_input)
        except json.JSONDecodeError:
            # regopy parses its own output; invalid JSON there is a malformed decision, not a crash.
            log.error("policy output is not JSON for action %r", _action(policy_input))
            return Decision.fail_closed(MALFORMED_DECISION, revision, policy_input)
        except EvaluationError as e:
            log.error("policy engine error: %s", str(e)[:200])
            return Decision.fail_closed(ENGINE_ERROR, revision, policy_input)
        except Exception as e:  # whatever the engine raises, the answer is a deny
            log.error("policy engine error (%s): %s", type(e).__name__, error_summary(str(e)))
            return Decision.fail_closed(ENGINE_ERROR, revision, policy_input)
        if text.strip() == "undefined":
            log.error("policy decision undefined for action %r", _action(policy_input))
            return Decision.fail_closed(UNDEFINED_DECISION, revision, policy_input)
        try:
            decision = self._decision(json.loads(text)["expressions"][0], policy_input)
        except (ValueError, KeyError, IndexError, TypeError, MalformedDecision) as e:
            log.error("malformed policy decision for action %r: %s", _action(policy_input), e)
            return Decision.fail_closed(MALFORMED_DECISION, revision, policy_input)
        if self.cache is not None:
            self.cache.put(term, text)
        return decision

    def _shadow_due(self) -> bool:
        n = next(self._evaluations)
        return n < SHADOW_FIRST or n % SHADOW_EVERY == 0

    def _shadow(self, term: str, whole: str, text: str, policy_input: Any) -> tuple[str, str]:
        """The projected decision checked against the whole input's: ``(text, term)`` to keep, the whole
        input's when they differ (and from then on the engine keys on the whole input)."""
        whole_text = self._run(whole)
        if _expressions(whole_text) == _expressions(text):
            return text, term
        with self._projection_lock:
            if self.read_paths.paths is not None:
                action = _action(policy_input)
                why = f"the projection on the read paths changed a decision of action {action!r}"
                log.error("policy %s: %s; keying on the whole input", self.revision[:19], why)
                self.read_paths = ReadPaths(None, why)
                if self.cache is not None:
                    self.cache.clear()
                    self.cache.read_paths = self.read_paths
        return whole_text, whole

    def _decision(self, result: Any, policy_input: Any) -> Decision:
        """The policy's result with its reasons rendered, checked; raises `MalformedDecision`."""
        compiled = self._compiled
        return Decision.from_result(compiled.templates.result(result), compiled.revision, policy_input)

    def _run(self, term: str) -> str:
        """The output text: from a worker within the deadline, or here when unbounded."""
        if self._workers is None:
            compiled = self._pool.get()
            try:
                return compiled.evaluate(term)
            finally:
                self._pool.put(compiled)
        tag, text = self._workers.evaluate(term)
        if tag == "e":
            raise EvaluationError(error_summary(text))
        return text

    def info(self) -> dict[str, Any]:
        """What is loaded: revision, engine, when, which modules."""
        loaded = self._compiled.loaded_at.isoformat(timespec="seconds").replace("+00:00", "Z")
        return {
            "revision": self.revision,
            "engine": self.name,
            "loadedAt": loaded,
            "modules": sorted(self._compiled.source.policy_modules),
        }

    def facts(self) -> dict[str, Any]:
        """A copy of ``data.veiligdelen.facts``."""
        return copy.deepcopy(self._compiled.source.facts)

    def health(self) -> str | None:
        """``"stalled"`` when no worker can take a decision now (each busy past the deadline or being
        replaced), ``"closed"`` after `close`; None when the engine can decide."""
        return self._workers.health() if self._workers is not None else None

    def worker_pids(self) -> list[int]:
        """The process ids of the live workers (none for an unbounded, in-thread engine)."""
        return self._workers.pids() if self._workers is not None else []

    def close(self) -> None:
        """Stop the workers (killed, reaped, not replaced); decisions after this fail closed."""
        self._closed = True
        if self.cache is not None:
            self.cache.clear()
        if self._workers is not None:
            self._workers.close()

    def __enter__(self) -> EmbeddedEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _log_read_paths(revision: str, read_paths: ReadPaths) -> None:
    if read_paths.paths is None:
        log.warning(
            "policy %s: the decision cache keys on the whole input: %s", revision[:19], read_paths.fallback
        )
    else:
        log.info(
            "policy %s: the decision cache keys on the %d input paths it reads: %s",
            revision[:19],
            len(read_paths.paths),
            ", ".join(read_paths.dotted()),
        )


def _expressions(text: str) -> Any:
    """The result in an output text, or the text itself when it holds none (``undefined``)."""
    try:
        return json.loads(text)["expressions"]
    except (ValueError, KeyError, TypeError):
        return text


def error_summary(text: str) -> str:
    """The first error message of a regopy error, never the echoed input."""
    errors = rego_errors(text, {})
    return errors[0]["message"][:200] if errors else "unknown"


def _action(policy_input: Any) -> str:
    return str(policy_input.get("action")) if isinstance(policy_input, dict) else "?"

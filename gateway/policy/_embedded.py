"""The embedded engine: regopy (rego-cpp) in-process, one compiled bundle per policy revision."""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import os
import queue
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import regopy

from gateway.policy._decision import (
    ENGINE_ERROR,
    ENGINE_TIMEOUT,
    MALFORMED_DECISION,
    UNDEFINED_DECISION,
    Decision,
    MalformedDecision,
)
from gateway.policy._source import (
    ENTRYPOINT,
    PolicyCompileError,
    PolicySource,
    read_policy,
    refused_constructs,
    rego_errors,
)

log = logging.getLogger("gateway.policy")

DECISION_TIMEOUT_SECONDS = 1.0
"""How long one decision may take, waiting for a free interpreter included, before it is a deny.

A decision takes about a millisecond; a second means the engine is stuck or starved, and the caller
gets ``engine_timeout`` instead of waiting (see docs/policies.md, "Fail closed")."""


def new_interpreter() -> Any:
    """A quiet interpreter: regopy prints compile errors to stdout unless told not to."""
    interp = regopy.Interpreter()
    interp.log_level = regopy.LogLevel.NONE
    return interp


def input_term(value: Any) -> str:
    """``value`` as the JSON text regopy parses.

    regopy 1.5.2's ``Input(obj)`` stores Python strings unescaped, so a ``"`` or ``\\`` in any input
    string corrupts the engine's JSON output; and ``\\uXXXX`` escapes are not decoded before comparison.
    Handing over UTF-8 JSON text avoids both. Raises ``TypeError``/``ValueError`` for non-JSON values.
    """
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


@dataclass(frozen=True)
class CompiledPolicy:
    """One revision compiled: the interpreter that owns the bundle. Not thread-safe on its own."""

    source: PolicySource
    interpreter: Any
    bundle: Any
    loaded_at: dt.datetime

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
    compiled = CompiledPolicy(source, interp, bundle, dt.datetime.now(dt.UTC))
    _probe(compiled, modules)
    return compiled


def _probe(compiled: CompiledPolicy, modules: dict[str, str]) -> None:
    """An empty input must give a defined deny: a policy that cannot decide never goes live."""
    try:
        text = compiled.evaluate("{}")
        result = json.loads(text)["expressions"][0]
        decision = Decision.from_result(result, compiled.revision, {})
    except regopy.RegoError as e:
        errors = rego_errors(str(e), modules)
        message = f"evaluating {ENTRYPOINT} failed: {errors[0]['message']}"
        raise PolicyCompileError(message, errors=errors) from e
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise PolicyCompileError(
            f"{ENTRYPOINT} gives no well-formed decision for an empty input",
            errors=[{"field": ENTRYPOINT, "message": f"undefined or malformed: {e}"}],
        ) from e
    if decision.allowed:
        raise PolicyCompileError(
            f"{ENTRYPOINT} allows an empty input", errors=[{"field": ENTRYPOINT, "message": "must deny"}]
        )


def default_pool_size() -> int:
    """One interpreter per core, at most four: regopy releases the GIL while it evaluates."""
    return max(1, min(4, os.cpu_count() or 1))


class EmbeddedEngine:
    """`PolicyEngine` on regopy: compiled once per revision, fail closed.

    A regopy interpreter is not thread-safe, so each decision borrows one interpreter from a small
    pool (each holding the same compiled bundle) and returns it after; with one interpreter this is
    a lock. ctypes releases the GIL during evaluation, so a pool of N decides on N cores. To change
    revision, build a new engine and swap it in (the gateway's reload does).
    """

    name = "embedded"

    def __init__(
        self,
        policy: Path | str | PolicySource,
        *,
        pool_size: int | None = None,
        timeout: float | None = DECISION_TIMEOUT_SECONDS,
    ) -> None:
        # A PolicySource is a snapshot already read (the reload compiles and tests the same bytes).
        source = policy if isinstance(policy, PolicySource) else read_policy(policy)
        self._compiled = compile_source(source)
        size = pool_size if pool_size is not None else default_pool_size()
        if size < 1:
            raise ValueError("pool_size must be at least 1")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive (or None for no bound)")
        self._pool: queue.Queue[CompiledPolicy] = queue.Queue()
        self._pool.put(self._compiled)
        for _ in range(size - 1):
            # Same source, so the same revision: what was hashed is what every interpreter runs.
            self._pool.put(compile_source(self._compiled.source))
        self.pool_size = size
        self.timeout = timeout
        # regopy cannot be interrupted, so a bounded decision runs on a worker and the caller stops
        # waiting at the deadline. A stuck evaluation keeps its worker and interpreter until it ends;
        # the next callers then wait for a free one and, past the deadline, are denied too.
        self._workers = (
            ThreadPoolExecutor(max_workers=size, thread_name_prefix="rego-decision")
            if timeout is not None
            else None
        )

    @property
    def revision(self) -> str:
        """The loaded revision."""
        return self._compiled.revision

    @property
    def policy_dir(self) -> Path:
        """The directory this revision was read from."""
        return self._compiled.source.directory

    def decide(self, policy_input: dict[str, Any]) -> Decision:
        """Evaluate the decision; any failure of the engine is a deny with its own reason code."""
        revision = self._compiled.revision
        try:
            term = input_term(policy_input)
        except (TypeError, ValueError):
            return Decision.fail_closed(ENGINE_ERROR, revision, policy_input, "the input is not JSON")
        try:
            text = self._run(term)
        except FutureTimeout:
            log.error("policy decision timed out (%s s) for action %r", self.timeout, _action(policy_input))
            return Decision.fail_closed(ENGINE_TIMEOUT, revision, policy_input)
        except json.JSONDecodeError:
            # regopy parses its own output; invalid JSON there is a malformed decision, not a crash.
            log.error("policy output is not JSON for action %r", _action(policy_input))
            return Decision.fail_closed(MALFORMED_DECISION, revision, policy_input)
        except Exception as e:  # whatever the engine raises, the answer is a deny
            log.error("policy engine error (%s): %s", type(e).__name__, _short(str(e)))
            return Decision.fail_closed(ENGINE_ERROR, revision, policy_input)
        if text.strip() == "undefined":
            log.error("policy decision undefined for action %r", _action(policy_input))
            return Decision.fail_closed(UNDEFINED_DECISION, revision, policy_input)
        try:
            result = json.loads(text)["expressions"][0]
            return Decision.from_result(result, revision, policy_input)
        except (ValueError, KeyError, IndexError, TypeError, MalformedDecision) as e:
            log.error("malformed policy decision for action %r: %s", _action(policy_input), e)
            return Decision.fail_closed(MALFORMED_DECISION, revision, policy_input)

    def _run(self, term: str) -> str:
        """Evaluate on a pooled interpreter: on a worker within ``timeout``, or here when unbounded."""
        if self._workers is None:
            return self._evaluate(term)
        future = self._workers.submit(self._evaluate, term)
        try:
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            future.cancel()  # still queued: it never runs; already running: it finishes unobserved
            raise

    def _evaluate(self, term: str) -> str:
        compiled = self._pool.get()
        try:
            return compiled.evaluate(term)
        finally:
            self._pool.put(compiled)

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
        """None: this engine has no state that stops it deciding (a failed decision is a deny anyway)."""
        return None


def _short(text: str) -> str:
    """The first error message of a regopy error, never the echoed input."""
    errors = rego_errors(text, {})
    return errors[0]["message"][:200] if errors else "unknown"


def _action(policy_input: Any) -> str:
    return str(policy_input.get("action")) if isinstance(policy_input, dict) else "?"

"""Policy decisions: the `PolicyEngine` seam, the embedded regopy and OPA engines, the Rego test runner.

The sharing rules live in ``policies/`` (Rego + ``data.json``); this package loads them, asks
``veiligdelen/decision/result`` and turns the answer into a `Decision`. Every failure is a deny.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.policy._decision import (
        ENFORCED_OBLIGATIONS,
        ENGINE_ERROR,
        ENGINE_TIMEOUT,
        ENGINE_UNAVAILABLE,
        MALFORMED_DECISION,
        STRIP_FIELDS,
        UNDEFINED_DECISION,
        USAGE_RESTRICTION,
        Decision,
        MalformedDecision,
        Obligation,
        PolicyEngine,
        Reason,
        RecipientDecision,
    )
    from gateway.policy._embedded import (
        DECISION_TIMEOUT_SECONDS,
        CompiledPolicy,
        EmbeddedEngine,
        compile_source,
        load_policy,
    )
    from gateway.policy._opa import OpaEngine, OpaLoadError
    from gateway.policy._source import (
        ENTRYPOINT,
        FACTS_PATH,
        PolicyCompileError,
        PolicySource,
        policy_fingerprint,
        policy_revision,
        read_policy,
    )
    from gateway.policy._testrunner import TestReport, TestResult, run_tests

__all__ = [
    "DECISION_TIMEOUT_SECONDS",
    "ENFORCED_OBLIGATIONS",
    "ENGINE_ERROR",
    "ENGINE_TIMEOUT",
    "ENGINE_UNAVAILABLE",
    "ENTRYPOINT",
    "FACTS_PATH",
    "MALFORMED_DECISION",
    "STRIP_FIELDS",
    "UNDEFINED_DECISION",
    "USAGE_RESTRICTION",
    "CompiledPolicy",
    "Decision",
    "EmbeddedEngine",
    "MalformedDecision",
    "Obligation",
    "OpaEngine",
    "OpaLoadError",
    "PolicyCompileError",
    "PolicyEngine",
    "PolicySource",
    "Reason",
    "RecipientDecision",
    "TestReport",
    "TestResult",
    "compile_source",
    "load_policy",
    "policy_fingerprint",
    "policy_revision",
    "read_policy",
    "run_tests",
]

_WHERE = {
    "DECISION_TIMEOUT_SECONDS": "gateway.policy._embedded",
    "ENFORCED_OBLIGATIONS": "gateway.policy._decision",
    "ENGINE_ERROR": "gateway.policy._decision",
    "ENGINE_TIMEOUT": "gateway.policy._decision",
    "ENGINE_UNAVAILABLE": "gateway.policy._decision",
    "ENTRYPOINT": "gateway.policy._source",
    "FACTS_PATH": "gateway.policy._source",
    "MALFORMED_DECISION": "gateway.policy._decision",
    "STRIP_FIELDS": "gateway.policy._decision",
    "UNDEFINED_DECISION": "gateway.policy._decision",
    "USAGE_RESTRICTION": "gateway.policy._decision",
    "CompiledPolicy": "gateway.policy._embedded",
    "Decision": "gateway.policy._decision",
    "EmbeddedEngine": "gateway.policy._embedded",
    "MalformedDecision": "gateway.policy._decision",
    "Obligation": "gateway.policy._decision",
    "OpaEngine": "gateway.policy._opa",
    "OpaLoadError": "gateway.policy._opa",
    "PolicyCompileError": "gateway.policy._source",
    "PolicyEngine": "gateway.policy._decision",
    "PolicySource": "gateway.policy._source",
    "Reason": "gateway.policy._decision",
    "RecipientDecision": "gateway.policy._decision",
    "TestReport": "gateway.policy._testrunner",
    "TestResult": "gateway.policy._testrunner",
    "compile_source": "gateway.policy._embedded",
    "load_policy": "gateway.policy._embedded",
    "policy_fingerprint": "gateway.policy._source",
    "policy_revision": "gateway.policy._source",
    "read_policy": "gateway.policy._source",
    "run_tests": "gateway.policy._testrunner",
}
"""Where each public name is defined. Importing the package loads none of them: the first use of a name
imports its module (PEP 562), so the OPA client (and aiohttp) loads only when the OPA engine is used."""


if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any name imported from here

    def __getattr__(name: str) -> object:
        try:
            module = _WHERE[name]
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # the next use is a plain lookup
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})

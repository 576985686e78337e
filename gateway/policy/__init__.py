"""Policy decisions: the `PolicyEngine` seam, the embedded regopy and OPA engines, the Rego test runner.

The sharing rules live in ``policies/`` (Rego + ``data.json``); this package loads them, asks
``veiligdelen/decision/result`` and turns the answer into a `Decision`. Every failure is a deny.
"""

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

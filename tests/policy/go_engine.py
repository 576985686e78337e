"""OPA's own Go Rego evaluator (opa-golib-python-bindings, in this process) as a `decide` function.

It decides the repository's policies as the gateway's OPA engine does (the result rendered and checked
by `Decision.from_result`), in about a tenth of regopy's time: exhaustive sweeps decide every input on
it and a fixed spread on regopy (all of them under ``make test-golden``). The two engines giving the same
decisions is itself tested (tests/policy/test_golden.py, test_opa_parity.py).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from gateway.policy import Decision, read_policy
from gateway.policy._render import load_templates
from tests.policy.conftest import POLICIES
from tests.policy.standin import OPA_GO_AVAILABLE

FULL_ENV = "VEILIG_DELEN_GOLDEN_FULL"
"""Set to 1 (``make test-golden``) to decide every input of the exhaustive sweeps on regopy too."""


def regopy_step(step: int) -> int:
    """Every ``step``-th input goes to regopy in the suite; every one under ``make test-golden``, or when
    OPA's Go engine is not installed (regopy then decides them all)."""
    return 1 if os.environ.get(FULL_ENV) == "1" or not OPA_GO_AVAILABLE else step


class GoEngine:
    """OPA's Go evaluator on ``policies``; `decide` like `EmbeddedEngine.decide` (one caller at a time)."""

    def __init__(self, policies: Path = POLICIES) -> None:
        import opa_bindings  # type: ignore[import-not-found]

        source = read_policy(policies)
        self._revision = source.revision
        self._templates = load_templates(source.facts, source.policy_modules)
        self._opa = opa_bindings.OpaEngine()
        for name, text in sorted(source.policy_modules.items()):
            self._opa.add_policy(name, text)
        self._opa.add_data(source.data)
        self._lock = threading.Lock()

    def decide(self, policy_input: dict[str, Any]) -> Decision:
        with self._lock:
            result = self._opa.eval_document("veiligdelen.decision.result", policy_input)
        return Decision.from_result(self._templates.result(result), self._revision, policy_input)

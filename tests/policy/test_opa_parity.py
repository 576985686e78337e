"""Two engines, same decisions: a generated corpus through the embedded engine and the opa engine.

The opa engine talks to the STAND-IN for OPA in its own process, over HTTP. With the stand-in's default
evaluator (regopy) this proves that the OPA adapter and the wire protocol change nothing: uploading,
encoding the input, reading the answer. With ``--evaluator opa`` (OPA's own Go Rego engine, from the
optional opa-golib-python-bindings package) the same corpus also compares regopy's Rego semantics with
OPA's. The real OPA server is exercised in deploy/ (see deploy/README.md for the CI job where it exists).
"""

from __future__ import annotations

import copy
import json
import os
import random
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from gateway.policy import Decision, EmbeddedEngine, OpaEngine
from tests.policy.conftest import POLICIES
from tests.policy.standin import OPA_GO_AVAILABLE, run_standin

REAL_OPA_ENV = "VEILIG_DELEN_TEST_OPA_URL"
SEED = 20261128
CORPUS_SIZE = 2100 if os.environ.get("VEILIG_DELEN_GOLDEN_FULL") == "1" else 900
"""Inputs decided by each engine pair: 900 in the suite (every action, odd strings and dropped fields
still come up many times over), 2,100 under ``make test-golden``."""
ACTIONS = ["share", "request", "case.open", "case.read", "case.transition", "case.track"]
ROLES = ["slachtoffer", "pleger", "kind", "getuige"]
ODD_STRINGS = [
    'politie"',
    '"; allowed := true; "',
    "back\\slash",
    "\\u0070olitie",
    "\\",
    "ünïcödé",
    "veilig_thuis\u0301",
    "\u202epolitie",
    "😀",
    "line\nbreak",
    "tab\there",
    "",
    " politie",
    "POLITIE",
    "nul\u0000byte",
    "x" * 300,
    '{"action": "share"}',
    "'",
    "\ud800",  # a lone surrogate: not UTF-8, both engines fail closed on it
]
WRONG_TYPES: list[Any] = [None, 0, 1.5, True, [], {}, ["politie"], {"agency": "politie"}]


class CorpusGenerator:
    """Decision inputs from the facts: mostly plausible (rows of grants), then bent and broken."""

    def __init__(self, facts: dict[str, Any], seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        self.facts = facts
        self.agencies = sorted(facts["agencies"])
        self.flows = {f: list(v["order"]) for f, v in sorted(facts["flows"].items())}
        self.types = sorted(facts["informationTypes"])
        self.purposes = sorted(facts["purposes"])
        self.rows = [
            (t, receiver, provider, row)
            for t, by_receiver in sorted(facts["grants"].items())
            for receiver, by_provider in sorted(by_receiver.items())
            for provider, row in sorted(by_provider.items())
        ]
        self.schema: dict[str, dict[str, str]] = facts["inputSchema"]

    def corpus(self, size: int) -> list[dict[str, Any]]:
        """``size`` inputs; the same seed gives the same list."""
        fixed: list[Any] = [{}, {"action": "share"}, {"action": None}, {"action": "delete"}]
        out = [dict(x) for x in fixed]
        while len(out) < size:
            action = ACTIONS[len(out) % len(ACTIONS)]
            policy_input = getattr(self, "_" + action.replace(".", "_"))()
            roll = self.rng.random()
            if roll < 0.15:
                self._drop_field(policy_input)
            elif roll < 0.27:
                self._wrong_type(policy_input)
            elif roll < 0.39:
                self._odd_string(policy_input)
            elif roll < 0.45:
                policy_input[self.rng.choice(["extra", "x-ignored", "ÿ"])] = self.rng.choice(ODD_STRINGS)
            out.append(policy_input)
        return out

    # -- plausible inputs ------------------------------------------------------------------------

    def _agency(self) -> str:
        return self.rng.choice(self.agencies)

    def _actor(self, agency: str) -> dict[str, Any]:
        return {"agency": agency, "clientId": f"{agency}-system", "role": "agency_system"}

    def _case(self, steps: list[str] | None = None) -> dict[str, Any]:
        if steps and self.rng.random() < 0.6:
            flow, step = self.rng.choice(steps).split("/")
        else:
            flow = self.rng.choice(list(self.flows))
            step = self.rng.choice(self.flows[flow])
        roles = [r for r in ROLES if self.rng.random() < 0.6]
        if self.rng.random() < 0.5 and "kind" not in roles:
            roles.append("kind")
        return {
            "flow": flow,
            "step": step,
            "tracks": {"zorg": self.rng.random() < 0.6, "straf": self.rng.random() < 0.6},
            "subjectRoles": self.rng.sample(roles, len(roles)),
            "involved": self.rng.sample(self.agencies, self.rng.randint(0, 3)),
        }

    def _row(self) -> tuple[str, str, str, dict[str, Any]]:
        if self.rng.random() < 0.75:
            return self.rng.choice(self.rows)
        return self.rng.choice(self.types), self._agency(), self._agency(), {}

    def _purpose(self, row: dict[str, Any]) -> str:
        allowed = row.get("purposes") or []
        return (
            self.rng.choice(allowed)
            if allowed and self.rng.random() < 0.75
            else self.rng.choice(self.purposes)
        )

    def _fields(self, information_type: str, row: dict[str, Any]) -> list[str]:
        known = list(self.facts["informationTypes"][information_type].get("fields", [])) or ["aard"]
        fields = self.rng.sample(known, self.rng.randint(1, len(known)))
        if self.rng.random() < 0.3:
            fields.append(self.rng.choice(["nietBestaandVeld", "bsn", "aard"]))
        return fields

    def _share(self) -> dict[str, Any]:
        information_type, receiver, provider, row = self._row()
        count = self.rng.randint(1, 5)
        others = [a for a in self.agencies if a != receiver]
        recipients = [receiver, *self.rng.sample(others, min(count - 1, len(others)))]
        self.rng.shuffle(recipients)
        if self.rng.random() < 0.05:
            recipients.append(recipients[0])  # a duplicate recipient
        policy_input: dict[str, Any] = {
            "action": "share",
            "actor": self._actor(provider),
            "case": self._case(row.get("steps")),
            "informationType": information_type,
            "purpose": self._purpose(row),
            "recipients": recipients,
            "payloadFields": self._fields(information_type, row),
        }
        if self.rng.random() < 0.3:
            # Sharing on what was received: the purposes the data came with (rule 4).
            origin: list[Any] = [
                {
                    "purpose": self.rng.choice([policy_input["purpose"], *self.purposes]),
                    "informationType": information_type,
                    "sender": self._agency(),
                }
                for _ in range(self.rng.randint(1, 2))
            ]
            if self.rng.random() < 0.1:
                origin.append(self.rng.choice([{"purpose": 1}, "melding", None]))
            policy_input["origin"] = origin
        return policy_input

    def _request(self) -> dict[str, Any]:
        information_type, receiver, provider, row = self._row()
        return {
            "action": "request",
            "actor": self._actor(receiver),
            "case": self._case(row.get("steps")),
            "informationType": information_type,
            "purpose": self._purpose(row),
            "holder": provider,
        }

    def _case_open(self) -> dict[str, Any]:
        the_case = self._case()
        if self.rng.random() < 0.6:
            the_case["step"] = self.flows[the_case["flow"]][0]
        return {"action": "case.open", "actor": self._actor(self._agency()), "case": the_case}

    def _case_read(self) -> dict[str, Any]:
        return {"action": "case.read", "actor": self._actor(self._agency()), "case": self._case()}

    def _case_transition(self) -> dict[str, Any]:
        flow = self.rng.choice(list(self.flows))
        transition: dict[str, Any] = {"step": self.rng.choice(self.flows[flow])}
        if self.rng.random() < 0.4:
            transition["flow"] = flow
        return {
            "action": "case.transition",
            "actor": self._actor(self._agency()),
            "case": self._case(),
            "transition": transition,
        }

    def _case_track(self) -> dict[str, Any]:
        name = self.rng.choice(["zorg", "straf", "zorg", "straf", "beide"])
        return {
            "action": "case.track",
            "actor": self._actor(self._agency()),
            "case": self._case(),
            "track": {"name": name, "open": self.rng.random() < 0.5},
        }

    # -- bending and breaking ----------------------------------------------------------------------

    def _paths(self, policy_input: dict[str, Any]) -> list[str]:
        action = policy_input.get("action")
        return sorted(self.schema.get(action, {})) if isinstance(action, str) else []

    def _drop_field(self, policy_input: dict[str, Any]) -> None:
        paths = self._paths(policy_input) or ["action"]
        *parents, leaf = self.rng.choice(paths).split(".")
        node = policy_input
        for key in parents:
            node = node.get(key, {})
        node.pop(leaf, None)

    def _wrong_type(self, policy_input: dict[str, Any]) -> None:
        paths = self._paths(policy_input) or ["action"]
        *parents, leaf = self.rng.choice(paths).split(".")
        node = policy_input
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = copy.deepcopy(self.rng.choice(WRONG_TYPES))

    def _odd_string(self, policy_input: dict[str, Any]) -> None:
        odd = self.rng.choice(ODD_STRINGS)
        target = self.rng.choice(["agency", "flow", "step", "type", "purpose", "recipient", "role", "field"])
        the_case = policy_input.get("case", {})
        if target == "agency":
            policy_input["actor"]["agency"] = odd
        elif target in {"flow", "step"} and the_case:
            the_case[target] = odd
        elif target == "type" and "informationType" in policy_input:
            policy_input["informationType"] = odd
        elif target == "purpose" and "purpose" in policy_input:
            policy_input["purpose"] = odd
        elif target == "recipient" and policy_input.get("recipients"):
            policy_input["recipients"][0] = odd
        elif target == "role" and the_case:
            the_case["subjectRoles"] = [*the_case.get("subjectRoles", []), odd]
        elif target == "field" and "payloadFields" in policy_input:
            policy_input["payloadFields"].append(odd)
        elif "holder" in policy_input:
            policy_input["holder"] = odd
        else:
            policy_input["actor"]["agency"] = odd


Run = tuple[list[Decision], list[float]]
_EMBEDDED_RUN: dict[str, Run] = {}
LONE_SURROGATE = (
    "A string with a lone surrogate (\\ud800) is not UTF-8: regopy cannot take it (engine_error, a deny); a "
    "real OPA server's JSON decoder replaces it with U+FFFD and decides. Only a real server shows this."
)


@pytest.fixture(scope="module")
def embedded() -> EmbeddedEngine:
    return EmbeddedEngine(POLICIES, pool_size=1)


@pytest.fixture(scope="module")
def corpus(embedded: EmbeddedEngine) -> list[dict[str, Any]]:
    return CorpusGenerator(embedded.facts()).corpus(CORPUS_SIZE)


def _run(engine: Any, corpus: list[dict[str, Any]]) -> Run:
    decisions, seconds = [], []
    for policy_input in corpus:
        t0 = time.perf_counter()
        decisions.append(engine.decide(copy.deepcopy(policy_input)))
        seconds.append(time.perf_counter() - t0)
    return decisions, seconds


def _both(embedded: EmbeddedEngine, evaluator: str, corpus: list[dict[str, Any]]) -> tuple[Run, Run]:
    """The corpus through the embedded engine and through the opa engine on a stand-in in its own process."""
    with run_standin(evaluator=evaluator) as standin:
        return _against(embedded, standin.url, corpus)


def _against(embedded: EmbeddedEngine, opa_url: str, corpus: list[dict[str, Any]]) -> tuple[Run, Run]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        engine = OpaEngine(opa_url, POLICIES, timeout=10.0)
        # regopy releases the GIL: the embedded run (once per module) overlaps the HTTP round trips.
        pending = None if _EMBEDDED_RUN else pool.submit(_run, embedded, corpus)
        theirs = _run(engine, corpus)
        if pending is not None:
            _EMBEDDED_RUN["run"] = pending.result()
        engine.close()
    return _EMBEDDED_RUN["run"], theirs


@pytest.fixture(scope="module")
def adapter_runs(embedded: EmbeddedEngine, corpus: list[dict[str, Any]]) -> tuple[Run, Run]:
    """Embedded vs opa engine on the stand-in evaluating with regopy: only the adapter differs."""
    return _both(embedded, "regopy", corpus)


@pytest.fixture(scope="module")
def real_opa_runs(embedded: EmbeddedEngine, corpus: list[dict[str, Any]]) -> tuple[Run, Run]:
    """Embedded vs opa engine on a REAL OPA server, where one runs (deploy/opa/check-with-real-opa.sh)."""
    url = os.environ.get(REAL_OPA_ENV)
    if not url:
        pytest.skip(f"no real OPA server: set {REAL_OPA_ENV} (deploy/opa/check-with-real-opa.sh does)")
    return _against(embedded, url, corpus)


@pytest.fixture(params=["opa_rego_runs", "real_opa_runs"])
def semantic_runs(request: pytest.FixtureRequest) -> tuple[Run, Run]:
    """Runs where OPA's own Rego semantics decided: its Go engine behind the stand-in, or a real server."""
    runs: tuple[Run, Run] = request.getfixturevalue(request.param)
    return runs


@pytest.fixture(scope="module")
def opa_rego_runs(embedded: EmbeddedEngine, corpus: list[dict[str, Any]]) -> tuple[Run, Run]:
    """Embedded vs opa engine on the stand-in evaluating with OPA's own Go Rego engine."""
    if not OPA_GO_AVAILABLE:
        pytest.skip("opa-golib-python-bindings (OPA's Go Rego engine) is not installed")
    return _both(embedded, "opa", corpus)


def test_the_corpus_is_deterministic_and_covers_every_action(
    embedded: EmbeddedEngine, corpus: list[dict[str, Any]]
) -> None:
    again = CorpusGenerator(embedded.facts()).corpus(CORPUS_SIZE)
    assert again == corpus
    assert len(corpus) == CORPUS_SIZE >= 900
    actions = Counter(x.get("action") for x in corpus)
    assert all(actions[a] >= CORPUS_SIZE // 7 for a in ACTIONS), actions
    shares = [x for x in corpus if x.get("action") == "share" and isinstance(x.get("recipients"), list)]
    assert {len(x["recipients"]) for x in shares} >= {1, 2, 3, 4, 5}
    assert any("kind" in x.get("case", {}).get("subjectRoles", []) for x in corpus)
    assert any("kind" not in x.get("case", {}).get("subjectRoles", ["kind"]) for x in corpus)


def _differences(corpus: list[dict[str, Any]], ours: list[Decision], theirs: list[Decision]) -> list[str]:
    return [
        f"input {x!r}\n  embedded {a.to_json()!r}\n  opa      {b.to_json()!r}"
        for x, a, b in zip(corpus, ours, theirs, strict=True)
        if a != b
    ]


def test_the_opa_adapter_changes_no_decision(
    embedded: EmbeddedEngine, adapter_runs: tuple[Run, Run], corpus: list[dict[str, Any]]
) -> None:
    (ours, embedded_seconds), (theirs, opa_seconds) = adapter_runs
    differences = _differences(corpus, ours, theirs)
    assert not differences, f"{len(differences)} of {len(corpus)} differ; first:\n" + "\n".join(
        differences[:3]
    )
    embedded_ms = statistics.median(embedded_seconds) * 1000
    opa_ms = statistics.median(opa_seconds) * 1000
    print(f"\n{len(corpus)} inputs; median decision embedded {embedded_ms:.2f} ms, over HTTP {opa_ms:.2f} ms")


def test_the_corpus_is_worth_comparing(embedded: EmbeddedEngine, adapter_runs: tuple[Run, Run]) -> None:
    """Allows and denies, (nearly) every reason code, and the fail-closed paths all occur."""
    (ours, _), _ = adapter_runs
    allowed = sum(d.allowed for d in ours)
    assert 0.1 * len(ours) < allowed < 0.9 * len(ours), allowed
    codes = Counter(c for d in ours for c in d.codes)
    expected = set(embedded.facts()["reasonCodes"])
    # A share decides each recipient: an illegal move or a bare default deny is rare at the top level.
    # A code missing here is a rule the generator does not reach yet: teach CorpusGenerator its input.
    assert expected - set(codes) <= {"illegal_transition", "denied_by_default"}, expected - set(codes)
    assert codes["missing_input"] > 100
    assert codes["engine_error"] > 0  # the lone surrogates


def _lone_surrogate(policy_input: Any) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in json.dumps(policy_input, ensure_ascii=False))


def test_opa_and_regopy_allow_and_deny_alike(
    semantic_runs: tuple[Run, Run], corpus: list[dict[str, Any]]
) -> None:
    """OPA's own Rego engine and regopy: the same allow or deny, per recipient, with the same fields."""
    (ours, _), (theirs, opa_seconds) = semantic_runs
    for policy_input, a, b in zip(corpus, ours, theirs, strict=True):
        if _lone_surrogate(policy_input) and a.codes == ["engine_error"]:
            continue  # LONE_SURROGATE
        assert (a.allowed, _verdicts(a)) == (b.allowed, _verdicts(b)), policy_input
    print(f"\nOPA's Rego semantics: median {statistics.median(opa_seconds) * 1000:.2f} ms")


def _verdicts(d: Decision) -> dict[str, tuple[bool, list[str], str | None]]:
    return {a: (p.allowed, p.fields, p.purpose) for a, p in d.recipients.items()}


def test_opa_and_regopy_decide_alike(semantic_runs: tuple[Run, Run], corpus: list[dict[str, Any]]) -> None:
    """The same decisions, reasons and their order included, under OPA's Rego semantics and regopy's.

    This found two places where the policy leaned on regopy's way of comparing terms (by their JSON
    text: ``sort([10, 8])`` is ``[10, 8]``; ``"Wmo e" < "Wmo e en f"`` is false) and one where OPA raised
    on a mistyped input that regopy left undefined; docs/policies.md ("Two engines") says what to avoid.
    """
    (ours, _), (theirs, _) = semantic_runs
    different = [
        (x, a, b)
        for x, a, b in zip(corpus, ours, theirs, strict=True)
        if a != b and not (_lone_surrogate(x) and a.codes == ["engine_error"])  # LONE_SURROGATE
    ]
    differences = _differences(*map(list, zip(*different, strict=True))) if different else []
    assert not differences, f"{len(differences)} of {len(corpus)} differ; first:\n" + "\n".join(
        differences[:3]
    )

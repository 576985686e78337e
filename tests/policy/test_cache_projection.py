"""The decision cache keyed by what the policy reads: the key changes with every read path and with
nothing else, decisions through the projection equal those without a cache (golden corpus, also after a
hit made by another input with the same projection), a policy that starts reading a new path keys on it,
and a policy the derivation cannot bound keys on the whole input and says so."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.policy import Decision, EmbeddedEngine, read_policy
from gateway.policy._embedded import input_term
from gateway.policy._readpaths import ReadPaths, derive
from gateway.policy._render import load_templates
from tests.policy.conftest import POLICIES, actor, case, share
from tests.policy.golden_corpus import comparable, read
from tests.policy.standin import OPA_GO_AVAILABLE

SHARE = share("politie", case(), "melding", "veiligheid_herstellen", ["veilig_thuis", "om"], ["aard"])
EVERY = {
    "action": "share",
    "actor": actor("politie"),
    "case": {
        "flow": "acuut",
        "step": "melding",
        "tracks": {"zorg": True, "straf": False},
        "subjectRoles": ["kind"],
        "involved": ["politie"],
    },
    "holder": "om",
    "informationType": "melding",
    "origin": [{"purpose": "p", "informationType": "t", "sender": "s"}],
    "payloadFields": ["aard"],
    "purpose": "veiligheid_herstellen",
    "recipients": ["om"],
    "track": {"name": "zorg", "open": True},
    "transition": {"flow": "acuut", "step": "onderzoek"},
}
"""An input with a value at every path the policy reads."""


def unread_changes(x: Any) -> Any:
    """``x`` with what the policy does not read changed: client id, role, identifiers it never names."""
    y = copy.deepcopy(x)
    if not isinstance(y, dict):
        return y
    y["caseId"] = "zaak-4711"
    y["messageId"] = "m-0815"
    if isinstance(y.get("actor"), dict):
        y["actor"]["clientId"] = "another-system"
        y["actor"]["role"] = "another_role"
    if isinstance(y.get("case"), dict):
        y["case"]["id"] = "c-1"
        if isinstance(y["case"].get("tracks"), dict):
            y["case"]["tracks"]["reopenedAt"] = "2026-12-03T12:00:00Z"
    return y


def _set(x: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        x = x[key]
    x[path[-1]] = value


def test_the_key_differs_at_every_read_path_and_nowhere_else() -> None:
    with EmbeddedEngine(POLICIES, pool_size=1, timeout=None) as engine:
        rp = engine.read_paths
        assert rp.paths is not None and len(rp.paths) == 18

        def key(x: Any) -> str:
            return input_term(rp.project(x))

        base = key(EVERY)
        for path in sorted(rp.paths):
            changed = copy.deepcopy(EVERY)
            _set(changed, path, "changed")
            assert key(changed) != base, path
        assert key(unread_changes(EVERY)) == base
        stats = engine.cache.stats() if engine.cache is not None else {}
        assert (stats["keysOn"], stats["readPaths"], stats["fallback"]) == ("read paths", 18, None)


def test_another_input_with_the_same_projection_is_a_hit_with_its_own_decision() -> None:
    uncached = EmbeddedEngine(POLICIES, pool_size=1, timeout=None, cache_size=0)
    with EmbeddedEngine(POLICIES, pool_size=1, timeout=None) as engine:
        first = engine.decide(SHARE)
        other = unread_changes(SHARE)
        second = engine.decide(other)
        assert engine.cache is not None and (engine.cache.hits, engine.cache.misses) == (1, 1)
        assert first == second == uncached.decide(other) == uncached.decide(SHARE)
        assert first.allowed and set(second.recipients) == {"veilig_thuis", "om"}
        # The decision echoes input values (recipients, purpose, reasons' arguments) only from read paths.
        assert second.to_json() == uncached.decide(other).to_json()


@pytest.fixture(scope="module")
def golden() -> list[tuple[Any, dict[str, Any]]]:
    return read()


def test_decisions_through_the_projection_equal_the_golden_ones_also_after_a_hit(
    golden: list[tuple[Any, dict[str, Any]]],
) -> None:
    """Every seventh golden input (regopy takes ~8 ms a decision) and then its twin with other unread
    values, which must be a hit: both equal the decision made on the whole input without a cache."""
    rows = golden[::7]
    bad = []
    with EmbeddedEngine(POLICIES, pool_size=1, timeout=None) as engine:
        assert engine.cache is not None
        for x, want in rows:
            got = comparable(engine.decide(x).to_json())
            hits = engine.cache.hits
            twin = comparable(engine.decide(unread_changes(x)).to_json())
            failed = any(r["code"] == "engine_error" for r in want["reasons"])
            if got != want or twin != want or (engine.cache.hits != hits + 1 and not failed):
                bad.append(json.dumps(x)[:200])
        assert engine.cache.hits >= len(rows) - 20
    assert not bad, f"{len(bad)} of {len(rows)} differ, first: {bad[:3]}"


def test_opa_decides_every_golden_projection_as_the_whole_input() -> None:
    """OPA's Go evaluator on every other input of the golden file (the suite's time): the projection
    is the input as far as OPA's Rego semantics can tell too."""
    if not OPA_GO_AVAILABLE:
        pytest.skip("opa-golib-python-bindings (OPA's Go Rego engine) is not installed")
    import opa_bindings  # type: ignore[import-not-found]

    source = read_policy(POLICIES)
    rp = derive(source.policy_modules, source.data)
    templates = load_templates(source.facts, source.policy_modules)
    opa = opa_bindings.OpaEngine()
    for name, text in sorted(source.policy_modules.items()):
        opa.add_policy(name, text)
    opa.add_data(source.data)
    bad, golden = [], read()
    for x, want in golden[::2]:
        if any(0xD800 <= ord(c) <= 0xDFFF for c in json.dumps(x, ensure_ascii=False)):
            continue  # regopy's engine_error, checked above
        result = opa.eval_document("veiligdelen.decision.result", rp.project(x))
        got = comparable(Decision.from_result(templates.result(result), source.revision, x).to_json())
        if got != want:
            bad.append(json.dumps(x)[:200])
    assert not bad, f"{len(bad)} of {len(golden)} differ, first: {bad[:3]}"


def _add_module(policy_dir: Path, name: str, text: str) -> None:
    (policy_dir / "veiligdelen" / "decision" / name).write_text(text, encoding="utf-8")


def test_a_policy_that_starts_reading_a_path_keys_on_it(policy_copy: Path) -> None:
    urgent = copy.deepcopy(SHARE)
    urgent["case"]["urgency"] = "hoog"
    with EmbeddedEngine(policy_copy, pool_size=1, timeout=None) as before:
        assert input_term(before.read_paths.project(urgent)) == input_term(before.read_paths.project(SHARE))
    _add_module(
        policy_copy,
        "urgency.rego",
        'package veiligdelen.decision\n\nimport rego.v1\n\n_urgent if input.case.urgency == "hoog"\n',
    )
    # A reload builds a new engine on the new revision: its read paths are derived from its own source.
    with EmbeddedEngine(policy_copy, pool_size=1, timeout=None) as after:
        assert after.revision != before.revision
        assert "case.urgency" in after.read_paths.dotted()
        assert input_term(after.read_paths.project(urgent)) != input_term(after.read_paths.project(SHARE))
        after.decide(SHARE)
        after.decide(urgent)
        assert after.cache is not None and after.cache.stats()["misses"] == 2
        assert after.cache.stats()["readPaths"] == 19


def test_a_policy_the_derivation_cannot_bound_keys_on_the_whole_input_and_says_so(
    policy_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _add_module(
        policy_copy,
        "walk.rego",
        "package veiligdelen.decision\n\nimport rego.v1\n\n_paths contains p if walk(input, [p, _])\n",
    )
    uncached = EmbeddedEngine(POLICIES, pool_size=1, timeout=None, cache_size=0)
    with caplog.at_level(logging.WARNING, logger="gateway.policy"):
        engine = EmbeddedEngine(policy_copy, pool_size=1, timeout=None)
    with engine:
        assert engine.read_paths.paths is None
        why = "veiligdelen/decision/walk.rego:5: the input is passed whole to walk"
        assert engine.read_paths.fallback == why
        assert any(
            "keys on the whole input" in r.getMessage() and why in r.getMessage() for r in caplog.records
        )
        stats = engine.cache.stats() if engine.cache is not None else {}
        assert (stats["keysOn"], stats["readPaths"], stats["fallback"]) == ("whole input", 0, why)
        a, b = engine.decide(SHARE), engine.decide(unread_changes(SHARE))
        assert a.to_json() | {"policyRevision": 0} == uncached.decide(SHARE).to_json() | {"policyRevision": 0}
        assert a == b and engine.cache is not None and (engine.cache.hits, engine.cache.misses) == (0, 2)


def test_a_projection_that_changes_a_decision_is_dropped_for_the_whole_input(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The shadow check: were a read missed (here ``purpose`` is taken out of the derived paths), the
    projected input is decided ``missing_input``; the whole input's decision is given instead, and the
    engine keys on the whole input from then on."""
    whole = EmbeddedEngine(POLICIES, pool_size=1, timeout=None, cache_size=0).decide(SHARE)
    assert whole.allowed
    with EmbeddedEngine(POLICIES, pool_size=1, timeout=None) as engine:
        assert engine.cache is not None and engine.read_paths.paths is not None
        missed = ReadPaths(frozenset(p for p in engine.read_paths.paths if p != ("purpose",)))
        engine.read_paths = engine.cache.read_paths = missed
        with caplog.at_level(logging.ERROR, logger="gateway.policy"):
            got = engine.decide(SHARE)
        assert got == whole
        assert engine.read_paths.paths is None
        assert engine.cache.stats()["keysOn"] == "whole input"
        assert "changed a decision of action 'share'" in str(engine.cache.stats()["fallback"])
        assert any("keying on the whole input" in r.getMessage() for r in caplog.records)
        # Keyed on the whole input now: another input is a miss, decided whole.
        assert engine.decide(unread_changes(SHARE)) == whole
        assert engine.cache.hits == 0


def test_the_shadow_check_keeps_a_projection_that_decides_alike() -> None:
    with EmbeddedEngine(POLICIES, pool_size=1, timeout=None) as engine:
        for recipients in (["om"], ["veilig_thuis"], ["veilig_thuis", "om"], ["rvdk", "om"]):
            engine.decide({**SHARE, "recipients": recipients})
        assert engine.cache is not None and engine.cache.stats()["keysOn"] == "read paths"
        assert engine.read_paths.paths is not None

"""The opa engine against the STAND-IN for OPA in its own process: loading, reloading, failing closed."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.policy import (
    ENGINE_ERROR,
    ENGINE_TIMEOUT,
    ENGINE_UNAVAILABLE,
    MALFORMED_DECISION,
    UNDEFINED_DECISION,
    Decision,
    EmbeddedEngine,
    OpaEngine,
    OpaLoadError,
    PolicyEngine,
    policy_revision,
    read_policy,
)
from gateway.policy._opa import _client
from gateway.runtime import make_policy_engine
from gateway.settings import Settings
from standins.opa import STANDIN_BANNER
from tests.policy.conftest import POLICIES, case, request, share
from tests.policy.standin import StandIn, run_standin

DECISION_MODULES = sorted(read_policy(POLICIES).policy_modules)
"""The decision package's modules (decision.rego, context.rego, exchange.rego, ...)."""
UPLOADED = {f"gateway/{m}" for m in DECISION_MODULES}
FACTS_FILE = "veiligdelen/facts/data.json"

DEMO_SHARE = share(
    "veilig_thuis",
    case("structureel", "veiligheidsplan", zorg=True, straf=True),
    "veiligheidsplan",
    "zorg_en_straf_afstemmen",
    ["politie", "om", "reclassering"],
    ["veiligheidsvoorwaarden", "afspraken", "medischeGegevensSlachtoffer"],
)


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    """An empty stand-in, as an OPA sidecar is before the gateway uploads."""
    with run_standin() as s:
        yield s


@pytest.fixture(scope="module")
def opa(standin: StandIn) -> Iterator[OpaEngine]:
    engine = OpaEngine(standin.url, POLICIES, timeout=2.0)
    yield engine
    engine.close()


@pytest.fixture(autouse=True)
def _no_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "standin" in request.fixturenames:
        request.getfixturevalue("standin").faults("none")


def test_the_standin_is_a_separate_process_that_names_itself(standin: StandIn) -> None:
    assert standin.process.pid != os.getpid()
    assert standin.process.poll() is None
    assert STANDIN_BANNER in standin.log
    assert httpx.get(f"{standin.url}/health").json() == {}


def test_loads_the_same_revision_as_the_embedded_engine(
    opa: OpaEngine, engine: EmbeddedEngine, standin: StandIn
) -> None:
    assert isinstance(opa, PolicyEngine)
    assert opa.revision == engine.revision == policy_revision(POLICIES)
    info = opa.info()
    assert info["engine"] == "opa"
    assert info["revision"] == opa.revision
    assert info["modules"] == DECISION_MODULES
    assert opa.facts() == engine.facts()
    served = {p["id"]: p["raw"] for p in standin.policies()}
    assert served == {f"gateway/{m}": (POLICIES / m).read_text(encoding="utf-8") for m in DECISION_MODULES}
    facts = httpx.get(f"{standin.url}/v1/data/veiligdelen/facts").json()["result"]
    assert facts == json.loads((POLICIES / FACTS_FILE).read_text(encoding="utf-8"))


def test_decides_as_the_embedded_engine(opa: OpaEngine, engine: EmbeddedEngine) -> None:
    ours, theirs = opa.decide(DEMO_SHARE), engine.decide(DEMO_SHARE)
    assert ours == theirs
    assert ours.allowed
    assert {a: p.allowed for a, p in ours.recipients.items()} == {
        "politie": True,
        "om": True,
        "reclassering": True,
    }
    assert ours.policy_revision == engine.revision
    assert not ours.engine_failure


def test_a_missing_input_field_is_the_policys_deny(opa: OpaEngine, engine: EmbeddedEngine) -> None:
    policy_input = request("veilig_thuis", case(), "melding", "veiligheid_herstellen", "politie")
    del policy_input["purpose"]
    decision = opa.decide(policy_input)
    assert decision == engine.decide(policy_input)
    assert not decision.allowed
    assert decision.codes == ["missing_input"]
    assert "purpose" in decision.reasons[0].message
    assert decision.recipients["veilig_thuis"].allowed is False
    assert not decision.engine_failure


def _assert_fail_closed(decision: Decision, code: str, policy_input: dict[str, Any]) -> None:
    assert not decision.allowed
    assert decision.codes == [code]
    assert decision.engine_failure
    assert decision.legal_basis is None
    assert decision.obligations == ()
    assert set(decision.recipients) == set(policy_input.get("recipients", []))
    for part in decision.recipients.values():
        assert part.allowed is False
        assert [r.code for r in part.reasons] == [code]
        assert part.fields == ()


@pytest.mark.parametrize(
    ("mode", "code"),
    [
        ("undefined", UNDEFINED_DECISION),
        ("garbage", MALFORMED_DECISION),
        ("malformed", MALFORMED_DECISION),
        ("error", ENGINE_ERROR),
    ],
)
def test_a_bad_answer_is_a_deny_with_its_own_reason(
    opa: OpaEngine, standin: StandIn, mode: str, code: str
) -> None:
    standin.faults(mode)
    decision = opa.decide(DEMO_SHARE)
    _assert_fail_closed(decision, code, DEMO_SHARE)
    standin.faults("none")
    assert opa.decide(DEMO_SHARE).allowed  # and the next answer is read again


def test_a_slow_opa_is_a_timeout_deny(standin: StandIn) -> None:
    engine = OpaEngine(standin.url, POLICIES, timeout=0.3)
    standin.faults("delay", delay=2.0)
    t0 = time.monotonic()
    decision = engine.decide(DEMO_SHARE)
    elapsed = time.monotonic() - t0
    _assert_fail_closed(decision, ENGINE_TIMEOUT, DEMO_SHARE)
    assert elapsed < 1.5  # the timeout, not the delay, decided
    engine.close()


def test_an_opa_that_accepts_and_never_answers_is_a_timeout_deny(opa: OpaEngine) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
        port = silent.getsockname()[1]
        engine = OpaEngine.__new__(OpaEngine)
        engine.__dict__.update(opa.__dict__)
        engine._client = _client(f"http://127.0.0.1:{port}", 0.3)
        engine.timeout = 0.3
        decision = engine.decide(DEMO_SHARE)
    _assert_fail_closed(decision, ENGINE_TIMEOUT, DEMO_SHARE)


def test_an_opa_that_went_away_is_an_unavailable_deny() -> None:
    with run_standin() as gone:
        engine = OpaEngine(gone.url, POLICIES, timeout=1.0)
        assert engine.decide(DEMO_SHARE).allowed
    t0 = time.monotonic()
    decision = engine.decide(DEMO_SHARE)
    _assert_fail_closed(decision, ENGINE_UNAVAILABLE, DEMO_SHARE)
    assert time.monotonic() - t0 < 1.0  # refused at once, not waited for
    engine.close()


def test_an_input_that_is_not_json_never_leaves_the_gateway(opa: OpaEngine) -> None:
    decision = opa.decide({"action": "share", "recipients": ["politie"], "payloadFields": {1, 2}})
    assert decision.codes == [ENGINE_ERROR]
    assert "not JSON" in decision.reasons[0].message
    assert decision.recipients["politie"].allowed is False


def test_each_failure_has_its_own_reason(opa: OpaEngine, standin: StandIn) -> None:
    seen = {}
    for mode in ["undefined", "garbage", "error"]:
        standin.faults(mode)
        seen[mode] = opa.decide(DEMO_SHARE).codes[0]
    standin.faults("none")
    missing = dict(DEMO_SHARE)
    del missing["purpose"]
    seen["missing"] = opa.decide(missing).codes[0]
    seen["down"] = _closed_port_engine(opa).decide(DEMO_SHARE).codes[0]
    assert seen == {
        "undefined": UNDEFINED_DECISION,
        "garbage": MALFORMED_DECISION,
        "error": ENGINE_ERROR,
        "missing": "missing_input",
        "down": ENGINE_UNAVAILABLE,
    }


def _closed_port_engine(opa: OpaEngine) -> OpaEngine:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: connecting is refused
    engine = OpaEngine.__new__(OpaEngine)
    engine.__dict__.update(opa.__dict__)
    engine._client = _client(f"http://127.0.0.1:{port}", 0.5)
    return engine


def test_no_opa_at_start_refuses_to_load() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OpaLoadError) as caught:
        OpaEngine(f"http://127.0.0.1:{port}", POLICIES, timeout=0.5)
    assert "did not load the policy" in caught.value.detail
    assert caught.value.status == 422


def test_an_opa_that_cannot_decide_is_not_loaded(standin: StandIn) -> None:
    standin.faults("undefined")
    with pytest.raises(OpaLoadError) as caught:
        OpaEngine(standin.url, POLICIES)
    assert "probe decision failed" in caught.value.detail
    assert "undefined_decision" in caught.value.detail


@pytest.mark.parametrize("url", ["opa:8181", "ftp://opa:8181", "http://opa:8181/v1"])
def test_a_bad_opa_url_is_refused(url: str) -> None:
    with pytest.raises(OpaLoadError):
        OpaEngine(url, POLICIES)


def _set_legal_basis(policy_dir: Path, basis: str) -> None:
    facts_file = policy_dir / FACTS_FILE
    facts = json.loads(facts_file.read_text(encoding="utf-8"))
    facts["grants"]["veiligheidsplan"]["politie"]["veilig_thuis"]["legalBasis"] = basis
    facts_file.write_text(json.dumps(facts, ensure_ascii=False, indent=2), encoding="utf-8")


def test_a_new_revision_replaces_the_old_and_drops_stale_modules(policy_copy: Path) -> None:
    with run_standin() as s:
        extra = policy_copy / "veiligdelen" / "extra" / "extra.rego"
        extra.parent.mkdir()
        extra.write_text("package veiligdelen.extra\n\nanswer := 42\n", encoding="utf-8")
        first = OpaEngine(s.url, policy_copy)
        assert {p["id"] for p in s.policies()} == UPLOADED | {"gateway/veiligdelen/extra/extra.rego"}
        extra.unlink()
        _set_legal_basis(policy_copy, "Testwet art. 1")
        second = OpaEngine(s.url, policy_copy)
        assert second.revision != first.revision
        assert second.revision == policy_revision(policy_copy)
        assert {p["id"] for p in s.policies()} == UPLOADED
        decision = second.decide(DEMO_SHARE)
        assert decision.recipients["politie"].legal_basis == "Testwet art. 1"
        assert decision.policy_revision == second.revision


def test_a_revision_opa_refuses_leaves_the_old_one_serving(policy_copy: Path) -> None:
    with run_standin() as s:
        old = OpaEngine(s.url, POLICIES)
        before = {p["id"]: p["raw"] for p in s.policies()}
        _set_legal_basis(policy_copy, "Testwet art. 2")
        broken = policy_copy / "veiligdelen" / "decision" / "broken.rego"
        broken.write_text("package veiligdelen.broken\n\nx := {\n", encoding="utf-8")
        with pytest.raises(OpaLoadError) as caught:
            OpaEngine(s.url, policy_copy)
        assert any("broken.rego" in e["field"] for e in caught.value.errors or [])
        assert {p["id"]: p["raw"] for p in s.policies()} == before
        decision = old.decide(DEMO_SHARE)
        assert decision.allowed
        assert decision.recipients["politie"].legal_basis != "Testwet art. 2"
        assert decision == EmbeddedEngine(POLICIES, pool_size=1).decide(DEMO_SHARE)


def test_verify_only_accepts_an_opa_that_loaded_the_directory_itself(policy_copy: Path) -> None:
    with run_standin(policy_dir=POLICIES) as s:
        engine = OpaEngine(s.url, POLICIES, upload=False)
        assert engine.revision == policy_revision(POLICIES)
        assert engine.decide(DEMO_SHARE).allowed
        assert {p["id"] for p in s.policies()} == set(DECISION_MODULES)  # nothing uploaded
        _set_legal_basis(policy_copy, "Testwet art. 3")
        with pytest.raises(OpaLoadError) as caught:
            OpaEngine(s.url, policy_copy, upload=False)
        assert caught.value.errors == [
            {"field": "data.veiligdelen.facts", "message": "OPA does not serve this data as it is on disk"}
        ]


def test_the_settings_choose_the_engine(standin: StandIn, tmp_path: Path) -> None:
    # A generous decision timeout: this shows the choice of engine, not its timing on a busy machine.
    chosen = make_policy_engine(
        Settings(data_dir=tmp_path, policy_engine="opa", opa_url=standin.url, opa_timeout=10.0)
    )
    assert isinstance(chosen, OpaEngine)
    assert chosen.info()["engine"] == "opa"
    assert chosen.decide(DEMO_SHARE).allowed
    default = make_policy_engine(Settings(data_dir=tmp_path))
    # The suite hands every default gateway one shared embedded engine (tests/conftest.py): a proxy.
    assert isinstance(getattr(default, "_engine", default), EmbeddedEngine)
    assert default.info()["engine"] == "embedded"
    assert default.revision == chosen.revision

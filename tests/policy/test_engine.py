"""The embedded engine on the real policies: every reason code, the demo, fail-closed behaviour."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.policy import (
    ENGINE_ERROR,
    ENGINE_TIMEOUT,
    MALFORMED_DECISION,
    UNDEFINED_DECISION,
    Decision,
    EmbeddedEngine,
    PolicyCompileError,
    PolicyEngine,
    RecipientDecision,
)
from tests.policy.conftest import POLICIES, actor, case, request, share

BEOORDELING = ["conclusie", "risicofactoren", "hulpverleningsgeschiedenis", "medischeGegevensSlachtoffer"]
PLAN = "structureel", "veiligheidsplan"


def codes(part: Decision | RecipientDecision) -> set[str]:
    return {r.code for r in part.reasons}


# --- the demo scenario --------------------------------------------------------------------------


def test_demo_refused_while_only_zorg_is_open(engine: EmbeddedEngine) -> None:
    d = engine.decide(
        share(
            "veilig_thuis",
            case(*PLAN, zorg=True),
            "veiligheidsbeoordeling",
            "zorg_en_straf_afstemmen",
            ["om", "reclassering", "rvdk"],
            BEOORDELING,
        )
    )
    assert d.allowed is False
    assert codes(d) == {"samenloop_required"}
    assert set(d.recipients) == {"om", "reclassering", "rvdk"}
    for part in d.recipients.values():
        assert part.allowed is False
        assert codes(part) == {"samenloop_required"}
        assert part.fields == ()
    assert d.legal_basis is None
    assert d.obligations == ()


def test_demo_allowed_for_all_three_once_straf_opens(engine: EmbeddedEngine) -> None:
    d = engine.decide(
        share(
            "veilig_thuis",
            case(*PLAN, zorg=True, straf=True),
            "veiligheidsbeoordeling",
            "zorg_en_straf_afstemmen",
            ["om", "reclassering", "rvdk"],
            BEOORDELING,
        )
    )
    assert d.allowed is True
    for agency in ["om", "reclassering", "rvdk"]:
        part = d.recipients[agency]
        assert part.allowed is True
        assert codes(part) == {"allowed"}
        assert part.legal_basis
        assert part.purpose == "zorg_en_straf_afstemmen"
        assert "medischeGegevensSlachtoffer" not in part.fields
    assert d.recipients["reclassering"].fields == ("conclusie", "risicofactoren")
    assert "hulpverleningsgeschiedenis" in d.recipients["rvdk"].fields
    strips = {o.recipient: o for o in d.obligations if o.code == "strip_fields"}
    assert strips["om"].params["removed"] == ["hulpverleningsgeschiedenis", "medischeGegevensSlachtoffer"]
    usage = [o for o in d.obligations if o.code == "usage_restriction"]
    assert {o.recipient for o in usage} == {"om", "reclassering", "rvdk"}
    assert all(o.params["purpose"] == "zorg_en_straf_afstemmen" for o in usage)


# --- every reason code from a crafted input -----------------------------------------------------

ACUUT = case()
CASES: list[tuple[str, dict[str, Any], str | None]] = [
    # (code, input, recipient whose reasons must hold the code; None: the top level)
    (
        "allowed",
        share("politie", ACUUT, "melding", "veiligheid_herstellen", ["veilig_thuis"]),
        "veilig_thuis",
    ),
    (
        "not_a_participant",
        share("om", ACUUT, "justitiele_informatie", "maatregelen_afstemmen", ["politie"]),
        None,
    ),
    (
        "recipient_not_a_participant",
        share("politie", ACUUT, "melding", "veiligheid_herstellen", ["reclassering"]),
        "reclassering",
    ),
    (
        "consulted_party_cannot_share",
        share(
            "reclassering",
            case("acuut", "motorkapoverleg"),
            "reclasseringsinformatie",
            "veiligheid_beoordelen",
            ["veilig_thuis"],
        ),
        None,
    ),
    (
        "holder_not_a_participant",
        request("veilig_thuis", ACUUT, "justitiele_informatie", "veiligheid_beoordelen", "om"),
        None,
    ),
    (
        "samenloop_required",
        share("veilig_thuis", case(*PLAN, zorg=True), "veiligheidsplan", "zorg_en_straf_afstemmen", ["om"]),
        "om",
    ),
    (
        "purpose_not_allowed",
        share("veilig_thuis", ACUUT, "maatregel", "melding_behandelen", ["politie"]),
        "politie",
    ),
    (
        "purpose_not_in_step",
        share("politie", ACUUT, "melding", "overdracht", ["veilig_thuis"]),
        "veilig_thuis",
    ),
    (
        "purpose_incompatible_with_origin",
        share("veilig_thuis", ACUUT, "melding", "veiligheid_herstellen", ["politie"])
        | {
            "origin": [
                {
                    "messageId": "m-1",
                    "purpose": "onderzoek_strafbare_feiten",
                    "informationType": "onderzoeksbevindingen",
                    "sender": "politie",
                }
            ]
        },
        "politie",
    ),
    (
        "no_legal_basis",
        share("veilig_thuis", ACUUT, "strafrechtelijke_informatie", "veiligheid_herstellen", ["politie"]),
        "politie",
    ),
    (
        "no_minor_in_case",
        share(
            "veilig_thuis",
            case("acuut", "onderzoek", roles=("slachtoffer", "pleger")),
            "kinderbeschermingsinformatie",
            "onderzoek_kinderbescherming",
            ["rvdk"],
        ),
        "rvdk",
    ),
    ("not_authorised_for_action", {"action": "case.open", "actor": actor("om"), "case": case()}, None),
    (
        "illegal_transition",
        {
            "action": "case.transition",
            "actor": actor("politie"),
            "case": case("acuut", "onderzoek"),
            "transition": {"flow": "acuut", "step": "fysieke_veiligheid"},
        },
        None,
    ),
    (
        "unknown_information_type",
        share("politie", ACUUT, "geheim", "veiligheid_herstellen", ["veilig_thuis"]),
        None,
    ),
    ("unknown_purpose", share("politie", ACUUT, "melding", "nieuwsgierigheid", ["veilig_thuis"]), None),
    ("unknown_agency", share("politie", ACUUT, "melding", "veiligheid_herstellen", ["interpol"]), "interpol"),
    (
        "unknown_step",
        share("politie", case("acuut", "nergens"), "melding", "veiligheid_herstellen", ["om"]),
        None,
    ),
    (
        "unknown_track",
        {"action": "case.track", "actor": actor("politie"), "track": {"name": "civiel", "open": True}},
        None,
    ),
    ("unknown_action", {"action": "case.delete", "actor": actor("politie")}, None),
    ("missing_input", {"action": "share", "actor": actor("politie")}, None),
]


@pytest.mark.parametrize(("code", "policy_input", "recipient"), CASES, ids=[c[0] for c in CASES])
def test_each_reason_code_is_produced(
    engine: EmbeddedEngine, code: str, policy_input: dict[str, Any], recipient: str | None
) -> None:
    d = engine.decide(policy_input)
    assert not d.engine_failure
    assert code in codes(d)
    if recipient is not None:
        assert code in codes(d.recipients[recipient])
    assert d.allowed is (code == "allowed")
    for reason in d.reasons:
        assert reason.message and reason.message_nl


def test_every_documented_code_is_covered() -> None:
    facts = json.loads((POLICIES / "veiligdelen" / "facts" / "data.json").read_text(encoding="utf-8"))
    produced = {c[0] for c in CASES} | {"denied_by_default"}
    assert set(facts["reasonCodes"]) == produced


def test_allow_names_its_legal_basis_in_the_message(engine: EmbeddedEngine) -> None:
    d = engine.decide(
        request(
            "veilig_thuis",
            case("structureel", "informatie_combineren"),
            "melding",
            "melding_behandelen",
            "politie",
        )
    )
    assert d.allowed
    assert d.legal_basis == "Wmo 2015 art. 5.2.6 (meldrecht)"
    (reason,) = d.reasons
    assert reason.code == "allowed"
    assert d.legal_basis in reason.message
    assert "not yet verified" in reason.message


def test_request_lists_the_actor_and_its_fields(engine: EmbeddedEngine) -> None:
    d = engine.decide(
        request(
            "veilig_thuis",
            case("structureel", "informatie_combineren", zorg=True),
            "strafrechtelijke_informatie",
            "veiligheid_beoordelen",
            "politie",
        )
    )
    assert d.allowed
    assert list(d.recipients) == ["veilig_thuis"]
    assert d.recipients["veilig_thuis"].fields == ("contactverbod", "incidenten", "wapenbezit")
    assert {
        "code": "strip_fields",
        "recipient": "veilig_thuis",
        "fields": ["contactverbod", "incidenten", "wapenbezit"],
    } in [o.to_json() for o in d.obligations]


def test_case_actions(engine: EmbeddedEngine) -> None:
    opened = engine.decide(
        {
            "action": "case.open",
            "actor": actor("politie"),
            "case": {"flow": "acuut", "step": "fysieke_veiligheid", "subjectRoles": ["kind"]},
        }
    )
    assert opened.allowed and opened.legal_basis == "Politiewet 2012 art. 3"
    assert opened.recipients == {} and opened.obligations == ()
    handover = {
        "action": "case.transition",
        "actor": actor("veilig_thuis"),
        "case": case("acuut", "overdracht"),
        "transition": {"flow": "structureel", "step": "melding"},
    }
    assert engine.decide(handover).allowed
    escalation = dict(
        handover,
        case=case("structureel", "veiligheidsplan"),
        transition={"flow": "acuut", "step": "fysieke_veiligheid"},
    )
    assert engine.decide(escalation).allowed
    assert not engine.decide(dict(escalation, actor=actor("politie"))).allowed
    read = {"action": "case.read", "actor": actor("reclassering"), "case": case(involved=("reclassering",))}
    assert engine.decide(read).allowed
    assert codes(engine.decide(dict(read, case=case()))) == {"not_a_participant"}
    track = {
        "action": "case.track",
        "actor": actor("om"),
        "case": case(),
        "track": {"name": "straf", "open": False},
    }
    assert engine.decide(track).allowed
    assert codes(engine.decide(dict(track, track={"name": "zorg", "open": True}))) == {
        "not_authorised_for_action"
    }


# --- rule 8: fail closed --------------------------------------------------------------------------

FULL_SHARE = share("politie", ACUUT, "melding", "veiligheid_herstellen", ["veilig_thuis"])


def _without(d: dict[str, Any], path: str) -> dict[str, Any]:
    out = json.loads(json.dumps(d))
    node = out
    *parents, last = path.split(".")
    for p in parents:
        node = node[p]
    del node[last]
    return out


@pytest.mark.parametrize(
    "path",
    [
        "action",
        "actor",
        "actor.agency",
        "case",
        "case.flow",
        "case.step",
        "case.tracks",
        "case.tracks.straf",
        "case.subjectRoles",
        "case.involved",
        "informationType",
        "purpose",
        "recipients",
        "payloadFields",
    ],
)
def test_a_missing_field_denies(engine: EmbeddedEngine, path: str) -> None:
    assert engine.decide(FULL_SHARE).allowed  # the complete input is allowed ...
    d = engine.decide(_without(FULL_SHARE, path))  # ... and without the field it is not
    assert d.allowed is False
    assert "missing_input" in codes(d)
    assert not any(p.allowed for p in d.recipients.values())
    assert d.obligations == ()


def test_missing_input_names_the_field(engine: EmbeddedEngine) -> None:
    d = engine.decide(_without(FULL_SHARE, "purpose"))
    (reason,) = d.reasons
    assert reason.to_json() == {
        "code": "missing_input",
        "message": "Missing or malformed input field(s): purpose",
        "messageNl": "Ontbrekende of ongeldige invoervelden: purpose",
    }


def test_wrong_types_deny(engine: EmbeddedEngine) -> None:
    wrong = json.loads(json.dumps(FULL_SHARE))
    wrong["case"]["tracks"]["zorg"] = "ja"
    assert "missing_input" in codes(engine.decide(wrong))
    assert "missing_input" in codes(engine.decide(dict(FULL_SHARE, recipients=[])))
    assert "missing_input" in codes(engine.decide(dict(FULL_SHARE, purpose="")))


def test_non_json_input_is_an_engine_error(engine: EmbeddedEngine) -> None:
    d = engine.decide({"action": "share", "actor": {"agency": object()}})
    assert d.allowed is False
    assert d.codes == [ENGINE_ERROR]
    assert d.engine_failure


def test_strings_needing_escapes_reach_the_engine_intact(engine: EmbeddedEngine) -> None:
    d = engine.decide(
        share("politie", ACUUT, "melding", "veiligheid_herstellen", ['x"y\\z\n', "veilig_thuis"])
    )
    assert d.allowed
    assert codes(d.recipients['x"y\\z\n']) == {"unknown_agency"}
    assert d.recipients["veilig_thuis"].allowed


FAKE_FACTS = {
    "reasonCodes": {"x": {"rank": 1}, "a": {"rank": 2}, "allowed": {"rank": 3}},
    "messages": {
        "x": {"code": "x", "message": "m", "messageNl": "n"},
        "a": {"code": "a", "message": "m", "messageNl": "n"},
        "allowed": {"code": "allowed", "message": "m", "messageNl": "n"},
    },
}


def _fake_policy(tmp_path: Path, body: str) -> Path:
    """A policy directory whose entrypoint misbehaves on purpose; {} still gets a proper deny."""
    directory = tmp_path / "broken"
    (directory / "veiligdelen" / "decision").mkdir(parents=True)
    (directory / "veiligdelen" / "facts").mkdir(parents=True)
    (directory / "veiligdelen" / "facts" / "data.json").write_text(json.dumps(FAKE_FACTS), encoding="utf-8")
    (directory / "veiligdelen" / "decision" / "decision.rego").write_text(
        "package veiligdelen.decision\n\n"
        '_deny := {"allowed": false, "reasons": [{"template": "x", "args": []}], '
        '"legalBasis": null, "obligations": [], "recipients": {}}\n\n' + body,
        encoding="utf-8",
    )
    return directory


def test_engine_error_fails_closed(tmp_path: Path) -> None:
    # Two values for one complete rule: an evaluation error in OPA and in regopy.
    broken = _fake_policy(
        tmp_path,
        "result := _deny if not input.boom\n\nresult := 1 if input.boom\n\nresult := 2 if input.boom\n",
    )
    engine = EmbeddedEngine(broken, pool_size=1)
    d = engine.decide({"action": "share", "boom": True, "recipients": ["om"], "actor": actor("politie")})
    assert d.allowed is False
    assert d.codes == [ENGINE_ERROR]
    assert d.recipients["om"].allowed is False
    assert engine.decide({}).codes == ["x"]  # the engine still works afterwards


def test_a_decision_past_its_deadline_is_engine_timeout(tmp_path: Path) -> None:
    # A real slow evaluation: input.n squared steps in constant memory (30,000 squared: hours).
    slow = _fake_policy(
        tmp_path,
        "result := _deny if not input.n\n\n"
        "result := _deny if count([1 | some i in numbers.range(1, input.n); "
        "some j in numbers.range(1, input.n); i * j < 0]) < 0\n",
    )
    engine = EmbeddedEngine(slow, pool_size=1, timeout=2.0)
    t0 = time.perf_counter()
    d = engine.decide({"n": 30_000, "action": "share", "recipients": ["om"], "actor": actor("politie")})
    waited = time.perf_counter() - t0
    assert d.allowed is False
    assert d.codes == [ENGINE_TIMEOUT]
    assert d.engine_failure
    assert d.recipients["om"] == RecipientDecision("om", False, d.reasons, None, None, ())
    assert waited < 30  # hang guard: the caller did not wait for the evaluation to end
    # The stuck worker was killed, not left busy: a replacement serves once it has started.
    deadline = time.monotonic() + 60
    while engine.health() is not None:
        assert time.monotonic() < deadline, "the engine did not recover"
        time.sleep(0.05)
    assert engine.decide({}).codes == ["x"]
    engine.close()


def test_an_unbounded_engine_waits(tmp_path: Path) -> None:
    rule = 'result := _deny if count([x | some x in numbers.range(1, object.get(input, "n", 1))]) > 0\n'
    slow = _fake_policy(tmp_path, rule)
    engine = EmbeddedEngine(slow, pool_size=1, timeout=None)
    assert engine.decide({"n": 50_000}).codes == ["x"]
    with pytest.raises(ValueError, match="timeout"):
        EmbeddedEngine(slow, timeout=0)


def test_undefined_decision_fails_closed(tmp_path: Path) -> None:
    engine = EmbeddedEngine(_fake_policy(tmp_path, "result := _deny if not input.nothing\n"), pool_size=1)
    d = engine.decide({"nothing": True})
    assert d.allowed is False
    assert d.codes == [UNDEFINED_DECISION]


@pytest.mark.parametrize(
    "result",
    [
        '{"allowed": "yes"}',
        '{"allowed": true, "reasons": [], "legalBasis": null, "obligations": [], "recipients": {}}',
        '{"allowed": false, "reasons": [], "legalBasis": null, "obligations": [], "recipients": {}}',
        '{"allowed": true, "reasons": [{"template": "allowed", "args": []}],'
        ' "legalBasis": "x", "obligations": [], "recipients": {}}',
    ],
    ids=["not-a-boolean", "allow-without-basis", "deny-without-reason", "share-allow-without-recipient"],
)
def test_malformed_decision_fails_closed(tmp_path: Path, result: str) -> None:
    engine = EmbeddedEngine(
        _fake_policy(tmp_path, f"result := _deny if not input.bad\n\nresult := {result} if input.bad\n"),
        pool_size=1,
    )
    d = engine.decide({"bad": True, "action": "share", "recipients": ["om"], "actor": actor("politie")})
    assert d.allowed is False
    assert d.codes == [MALFORMED_DECISION]


def test_a_policy_that_allows_an_empty_input_is_refused(tmp_path: Path) -> None:
    allow = (
        '{"allowed": true, "reasons": [{"template": "a", "args": []}],'
        ' "legalBasis": "x", "obligations": [], "recipients": {}}'
    )
    with pytest.raises(PolicyCompileError, match="allows an empty input"):
        EmbeddedEngine(_fake_policy(tmp_path, f"result := {allow}\n"))


def test_compile_error_names_file_and_line(policy_copy: Path) -> None:
    rego = policy_copy / "veiligdelen" / "decision" / "decision.rego"
    rego.write_text(rego.read_text(encoding="utf-8") + "\nbroken if {\n\t1 =\n}\n", encoding="utf-8")
    with pytest.raises(PolicyCompileError) as info:
        EmbeddedEngine(policy_copy)
    assert info.value.status == 422
    fields = [e["field"] for e in info.value.errors or []]
    assert any(f.startswith("veiligdelen/decision/decision.rego:") for f in fields), fields


def test_whole_input_with_is_refused_at_load(policy_copy: Path) -> None:
    (policy_copy / "veiligdelen" / "decision" / "decision.rego").write_text(
        (POLICIES / "veiligdelen" / "decision" / "decision.rego").read_text(encoding="utf-8")
        + '\n_x := result with input as {"action": "share"}\n',
        encoding="utf-8",
    )
    with pytest.raises(PolicyCompileError) as info:
        EmbeddedEngine(policy_copy)
    assert (info.value.errors or [{}])[0]["field"].startswith("veiligdelen/decision/decision.rego:")


# --- the engine seam ------------------------------------------------------------------------------


def test_engine_fits_the_protocol_and_describes_itself(engine: EmbeddedEngine) -> None:
    assert isinstance(engine, PolicyEngine)
    info = engine.info()
    assert info["engine"] == "embedded"
    assert info["revision"] == engine.revision and engine.revision.startswith("sha256:")
    assert info["modules"] == [
        f"veiligdelen/decision/{m}.rego"
        for m in ["case", "compat", "context", "decision", "exchange", "reasons"]
    ]
    assert info["loadedAt"].endswith("Z")
    facts = engine.facts()
    assert set(facts["agencies"]) == {"politie", "veilig_thuis", "om", "reclassering", "rvdk"}
    assert facts["flows"]["acuut"]["order"][0] == "fysieke_veiligheid"
    facts["agencies"].clear()  # a copy: the engine's facts stay intact
    assert engine.facts()["agencies"]


def test_decision_json_is_camel_case(engine: EmbeddedEngine) -> None:
    body = engine.decide(FULL_SHARE).to_json()
    assert set(body) == {"allowed", "reasons", "legalBasis", "obligations", "recipients", "policyRevision"}
    assert set(body["recipients"]["veilig_thuis"]) == {
        "allowed",
        "reasons",
        "legalBasis",
        "purpose",
        "fields",
    }
    assert body["policyRevision"] == engine.revision


def test_concurrent_decisions_agree() -> None:
    engine = EmbeddedEngine(POLICIES, pool_size=2, timeout=30.0)  # not a test of the deadline
    allowed = share("politie", ACUUT, "melding", "veiligheid_herstellen", ["veilig_thuis"])
    refused = share("politie", ACUUT, "melding", "overdracht", ["veilig_thuis"])
    failures: list[str] = []

    def work(policy_input: dict[str, Any], expected: bool) -> None:
        for _ in range(30):
            if engine.decide(policy_input).allowed is not expected:
                failures.append(policy_input["purpose"])

    threads = [
        threading.Thread(target=work, args=(inp, exp)) for inp, exp in [(allowed, True), (refused, False)] * 3
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_an_input_that_is_not_utf8_costs_no_worker() -> None:
    # A lone surrogate cannot be encoded: a deny before any worker is taken, and every worker stays.
    with EmbeddedEngine(POLICIES, pool_size=1, timeout=30.0) as engine:
        for _ in range(3):
            assert engine.decide({"action": "share", "purpose": "\ud800"}).codes == [ENGINE_ERROR]
        assert engine.health() is None
        assert len(engine.worker_pids()) == 1
        assert engine.decide({}).codes == ["missing_input"]

"""The rule set covers the whole process: every step's purposes are served, no row or purpose is dead,
and purpose binding (per step, and for data shared on) refuses with reasons that say why."""

from __future__ import annotations

from typing import Any

from gateway.policy import EmbeddedEngine
from gateway.policy._table import rows
from tests.policy.conftest import case, request, share


def _participants(step: dict[str, Any]) -> set[str]:
    return set(step["core"]) | set(step["consulted"]) | set(step["conditional"])


def test_every_purpose_a_step_serves_is_served_by_some_row(engine: EmbeddedEngine) -> None:
    facts = engine.facts()
    table = rows(facts)
    unserved = []
    for flow, spec in facts["flows"].items():
        for step in spec["order"]:
            described = spec["steps"][step]
            if len(_participants(described)) < 2 and not described.get("coreIncludesInvolved"):
                continue  # one agency alone (structureel/veiligheidsbeoordeling): nothing to exchange
            served = {p for r in table if (r.flow, r.step) == (flow, step) for p in r.purposes}
            unserved += [(flow, step, p) for p in described["purposes"] if p not in served]
    assert unserved == []


def test_no_row_and_no_purpose_of_a_row_is_dead(engine: EmbeddedEngine) -> None:
    facts = engine.facts()
    used: dict[tuple[str, str, str], set[str]] = {}
    for r in rows(facts):
        used.setdefault((r.information_type, r.sender, r.receiver), set()).update(r.purposes)
    dead = [
        (information_type, sender, receiver, purpose)
        for information_type, by_receiver in facts["grants"].items()
        for receiver, by_sender in by_receiver.items()
        for sender, grant in by_sender.items()
        for purpose in grant["purposes"]
        if purpose not in used.get((information_type, sender, receiver), set())
    ]
    assert dead == []


def test_the_structural_assessment_is_veilig_thuis_alone(engine: EmbeddedEngine) -> None:
    assert not any(r.step == "veiligheidsbeoordeling" for r in rows(engine.facts()))


def test_a_purpose_the_step_does_not_serve_is_refused_by_name(engine: EmbeddedEngine) -> None:
    d = engine.decide(share("politie", case(), "melding", "overdracht", ["veilig_thuis"]))
    assert d.allowed is False
    assert [r.to_json() for r in d.reasons] == [
        {
            "code": "purpose_not_in_step",
            "message": "Step acuut/fysieke_veiligheid does not serve the purpose overdracht; "
            "it serves: melding_behandelen, veiligheid_herstellen",
            "messageNl": "Stap acuut/fysieke_veiligheid dient niet het doel overdracht; "
            "de stap dient: melding_behandelen, veiligheid_herstellen",
        }
    ]
    assert [r.code for r in d.recipients["veilig_thuis"].reasons] == [
        "purpose_not_in_step",
        "purpose_not_allowed",
    ]


def test_a_request_for_a_purpose_outside_the_step_is_refused(engine: EmbeddedEngine) -> None:
    the_case = case("structureel", "informatie_combineren", zorg=True)
    refused = engine.decide(
        request("veilig_thuis", the_case, "strafrechtelijke_informatie", "maatregelen_afstemmen", "politie")
    )
    assert refused.codes == ["purpose_not_in_step"]
    allowed = engine.decide(
        request("veilig_thuis", the_case, "strafrechtelijke_informatie", "veiligheid_beoordelen", "politie")
    )
    assert allowed.allowed is True


def _onward(purpose: str, origins: list[dict[str, str]], recipients: list[str]) -> dict[str, Any]:
    policy_input = share(
        "veilig_thuis", case("acuut", "onderzoek"), "onderzoeksbevindingen", purpose, recipients
    )
    return policy_input | {"origin": origins}


def _origin(purpose: str, information_type: str = "strafrechtelijke_informatie") -> dict[str, str]:
    return {"messageId": "m-1", "purpose": purpose, "informationType": information_type, "sender": "politie"}


def test_onward_sharing_for_an_incompatible_purpose_is_refused_naming_both(engine: EmbeddedEngine) -> None:
    d = engine.decide(_onward("veiligheid_herstellen", [_origin("onderzoek_strafbare_feiten")], ["politie"]))
    assert d.allowed is False
    assert [r.to_json() for r in d.reasons] == [
        {
            "code": "purpose_incompatible_with_origin",
            "message": "The purpose veiligheid_herstellen is not compatible with the purpose "
            "onderzoek_strafbare_feiten for which veilig_thuis received strafrechtelijke_informatie "
            "from politie; compatible: onderzoek_strafbare_feiten",
            "messageNl": "Het doel veiligheid_herstellen is niet verenigbaar met het doel "
            "onderzoek_strafbare_feiten waarvoor veilig_thuis strafrechtelijke_informatie van politie "
            "ontving; verenigbaar: onderzoek_strafbare_feiten",
        }
    ]
    assert d.recipients["politie"].allowed is False
    assert d.recipients["politie"].fields == ()


def test_onward_sharing_for_the_same_or_a_compatible_purpose_is_decided_as_usual(
    engine: EmbeddedEngine,
) -> None:
    same = engine.decide(_onward("veiligheid_herstellen", [_origin("veiligheid_herstellen")], ["politie"]))
    assert same.allowed is True
    # maatregelen_afstemmen lists veiligheid_herstellen as compatible.
    compatible = engine.decide(
        _onward("veiligheid_herstellen", [_origin("maatregelen_afstemmen", "maatregel")], ["politie"])
    )
    assert compatible.allowed is True
    # Compatible with the origin, but the rest of the rules still apply: no row VT -> om here.
    other = engine.decide(_onward("veiligheid_herstellen", [_origin("veiligheid_herstellen")], ["om"]))
    assert other.allowed is False
    assert "purpose_incompatible_with_origin" not in {r.code for r in other.reasons}


def test_every_origin_counts_and_each_refusal_is_named(engine: EmbeddedEngine) -> None:
    origins = [
        _origin("veiligheid_herstellen"),
        _origin("onderzoek_strafbare_feiten"),
        _origin("zorg_en_straf_afstemmen", "veiligheidsplan"),
    ]
    d = engine.decide(_onward("veiligheid_herstellen", origins, ["politie"]))
    assert d.codes == ["purpose_incompatible_with_origin"] * 2
    assert "onderzoek_strafbare_feiten for which" in d.reasons[0].message
    assert "zorg_en_straf_afstemmen for which" in d.reasons[1].message


def test_an_empty_origin_is_no_origin(engine: EmbeddedEngine) -> None:
    assert engine.decide(_onward("veiligheid_herstellen", [], ["politie"])).allowed is True


def test_a_malformed_origin_is_missing_input(engine: EmbeddedEngine) -> None:
    for origin in (["m-1"], [{"purpose": "veiligheid_herstellen"}], "m-1", None):
        d = engine.decide(_onward("veiligheid_herstellen", origin, ["politie"]))  # type: ignore[arg-type]
        assert d.codes == ["missing_input"], origin
        assert d.reasons[0].message == "Missing or malformed input field(s): origin"


def test_reasons_are_ordered_by_rank_across_one_and_two_digits(engine: EmbeddedEngine) -> None:
    # regopy compares [8] and [10] by their JSON text; the policy shifts ranks so the order holds.
    d = engine.decide(
        share("politie", case(), "melding", "veiligheid_herstellen", ["interpol", "reclassering"])
    )
    ranks = engine.facts()["reasonCodes"]
    codes = d.codes
    assert codes == ["unknown_agency", "recipient_not_a_participant", "no_legal_basis"]
    assert [ranks[c]["rank"] for c in codes] == sorted(ranks[c]["rank"] for c in codes)


def test_joined_legal_bases_do_not_depend_on_prefix_ordering(engine: EmbeddedEngine) -> None:
    d = engine.decide(
        share(
            "veilig_thuis",
            case("structureel", "veiligheidsplan", zorg=True, straf=True),
            "veiligheidsplan",
            "zorg_en_straf_afstemmen",
            ["politie", "rvdk"],
            ["doelen"],
        )
    )
    # "... sub e en f; ..." before "... sub e": ordered by the text with "~" appended, in both engines.
    assert d.legal_basis == (
        "Wmo 2015 art. 4.1.1 lid 2 sub e en f; BW Boek 1 art. 1:240 | Wmo 2015 art. 4.1.1 lid 2 sub e"
    )

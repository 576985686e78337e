"""The decision table in docs/policies.md: generated from data.json, and true of the real engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.policy import Decision, EmbeddedEngine
from gateway.policy._table import END, START, decision_table, rows
from tests.policy.conftest import REPO, request, share
from tests.policy.go_engine import GoEngine, regopy_step
from tests.policy.standin import OPA_GO_AVAILABLE

AGENCIES = ["politie", "veilig_thuis", "om", "reclassering", "rvdk"]


def _case(flow: str, step: str, *, favourable: bool) -> dict[str, Any]:
    """Favourable: samenloop, a minor, everybody involved; otherwise none of these."""
    return {
        "flow": flow,
        "step": step,
        "tracks": {"zorg": favourable, "straf": favourable},
        "subjectRoles": ["slachtoffer", "kind"] if favourable else ["slachtoffer"],
        "involved": AGENCIES if favourable else [],
    }


def test_docs_hold_the_current_table(engine: EmbeddedEngine) -> None:
    docs = (REPO / "docs" / "policies.md").read_text(encoding="utf-8")
    start, end = docs.index(START), docs.index(END) + len(END)
    assert docs[start:end] + "\n" == decision_table(engine.facts()), (
        "docs/policies.md is out of date: regenerate it with `gateway policy table`"
    )


def test_every_row_is_allowed_and_needs_its_conditions(engine: EmbeddedEngine) -> None:
    for row in rows(engine.facts()):
        for purpose in row.purposes:
            for favourable in (True, False):
                the_case = _case(row.flow, row.step, favourable=favourable)
                if "share" in row.how:
                    d = engine.decide(
                        share(row.sender, the_case, row.information_type, purpose, [row.receiver])
                    )
                    expected = favourable or not row.conditions
                    assert d.recipients[row.receiver].allowed is expected, (
                        row,
                        purpose,
                        favourable,
                        d.reasons,
                    )
                    if expected:
                        assert d.recipients[row.receiver].legal_basis == row.legal_basis
                if "request" in row.how:
                    d = engine.decide(
                        request(row.receiver, the_case, row.information_type, purpose, row.sender)
                    )
                    expected = favourable or not row.conditions
                    assert d.allowed is expected, (row, purpose, favourable, d.reasons)


def test_nothing_outside_the_table_is_allowed(engine: EmbeddedEngine) -> None:
    """Every input of the sweep on OPA's Go engine, and a fixed quarter of them on regopy (all of them
    under ``make test-golden``, or when the Go engine is not installed)."""
    facts = engine.facts()
    allowed_share = {
        (r.flow, r.step, r.information_type, r.sender, r.receiver, p)
        for r in rows(facts)
        if "share" in r.how
        for p in r.purposes
    }
    allowed_request = {
        (r.flow, r.step, r.information_type, r.sender, r.receiver, p)
        for r in rows(facts)
        if "request" in r.how
        for p in r.purposes
    }
    purposes = list(facts["purposes"])
    shares: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    requests: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    for flow, spec in facts["flows"].items():
        for step in spec["order"]:
            the_case = _case(flow, step, favourable=True)
            for information_type in facts["informationTypes"]:
                for sender in AGENCIES:
                    for purpose in purposes:
                        key = (flow, step, information_type, sender, purpose)
                        shares.append((key, share(sender, the_case, information_type, purpose, AGENCIES)))
                for requester in AGENCIES:
                    for holder in AGENCIES:
                        # One purpose per pair keeps this quick: an allowed one if the table has one.
                        wanted = [
                            p
                            for p in purposes
                            if (flow, step, information_type, holder, requester, p) in allowed_request
                        ]
                        purpose = wanted[0] if wanted else purposes[(len(step) + len(holder)) % len(purposes)]
                        key = (flow, step, information_type, holder, requester, purpose)
                        requests.append(
                            (key, request(requester, the_case, information_type, purpose, holder))
                        )
    deciders: list[tuple[Callable[[dict[str, Any]], Decision], int]] = [(engine.decide, regopy_step(4))]
    if OPA_GO_AVAILABLE:
        deciders.append((GoEngine().decide, 1))
    for decide, step in deciders:
        checked = 0
        for (flow, step_, information_type, sender, purpose), x in shares[::step]:
            for receiver, part in decide(x).recipients.items():
                key = (flow, step_, information_type, sender, receiver, purpose)
                assert part.allowed is (key in allowed_share), (key, part.reasons)
                checked += 1
        for key, x in requests[::step]:
            d = decide(x)
            assert d.allowed is (key in allowed_request), (key, d.reasons)
            checked += 1
        assert checked > 10_000 // step


def test_table_rows_cover_the_brief(engine: EmbeddedEngine) -> None:
    keys = {(r.flow, r.step, r.information_type, r.sender, r.receiver) for r in rows(engine.facts())}
    assert ("acuut", "onderzoek", "kinderbeschermingsinformatie", "veilig_thuis", "rvdk") in keys
    assert ("acuut", "veiligheidsmaatregelen", "maatregel", "veilig_thuis", "om") in keys
    assert ("acuut", "veiligheidsmaatregelen", "maatregel", "politie", "reclassering") in keys
    assert ("acuut", "overdracht", "overdrachtsdossier", "politie", "veilig_thuis") in keys
    for holder, information_type in [
        ("politie", "strafrechtelijke_informatie"),
        ("om", "justitiele_informatie"),
        ("reclassering", "reclasseringsinformatie"),
        ("rvdk", "kinderbeschermingsinformatie"),
    ]:
        assert ("structureel", "informatie_combineren", information_type, holder, "veilig_thuis") in keys
    assert not any(k[1] == "veiligheidsbeoordeling" and k[0] == "structureel" for k in keys)  # VT alone


def test_docs_explain_every_reason_code(engine: EmbeddedEngine) -> None:
    docs = (REPO / "docs" / "policies.md").read_text(encoding="utf-8")
    for code in [
        *engine.facts()["reasonCodes"],
        "engine_error",
        "engine_timeout",
        "undefined_decision",
        "malformed_decision",
    ]:
        assert f"| `{code}` |" in docs, code

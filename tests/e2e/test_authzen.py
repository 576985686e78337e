"""OpenID AuthZEN Authorization API 1.0 over real HTTP: the same decisions as POST /v1/decisions.

The spec's examples (Access Evaluation, Access Evaluations with defaults and each
``evaluations_semantic``, the PDP metadata) adapted to this domain: subject an agency, action a gateway
action, resource an information type of a case, context the purpose and recipient.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Gateway

MELDING = "melding"


def evaluation(agency: str, action: str, case_id: str, rtype: str, **context: Any) -> dict[str, Any]:
    return {
        "subject": {"type": "agency", "id": agency},
        "action": {"name": action},
        "resource": {"type": rtype, "id": case_id},
        "context": context,
    }


@pytest.fixture(scope="module")
def case_id(gateway: Gateway) -> str:
    return gateway.open_case()


def test_the_metadata_names_both_endpoints(gateway: Gateway) -> None:
    r = httpx.get(f"{gateway.base}/.well-known/authzen-configuration")
    assert r.status_code == 200
    doc = r.json()
    base = doc["policy_decision_point"]
    assert doc["access_evaluation_endpoint"] == f"{base}/access/v1/evaluation"
    assert doc["access_evaluations_endpoint"] == f"{base}/access/v1/evaluations"
    assert "search_subject_endpoint" not in doc


def test_evaluation_answers_what_v1_decisions_answers(gateway: Gateway, case_id: str) -> None:
    asked = [
        ("politie", "share", MELDING, {"purpose": "veiligheid_herstellen", "recipient": "veilig_thuis"}),
        ("politie", "share", MELDING, {"purpose": "veiligheid_herstellen", "recipient": "om"}),
        (
            "politie",
            "share",
            "veiligheidsbeoordeling",
            {"purpose": "zorg_en_straf_afstemmen", "recipient": "om"},
        ),
        ("veilig_thuis", "case.transition", "case", {"step": "melding"}),
        ("veilig_thuis", "case.read", "case", {}),
        ("rvdk", "request", MELDING, {"purpose": "veiligheid_beoordelen", "holder": "politie"}),
    ]
    outcomes = set()
    statuses = set()
    for agency, action, rtype, context in asked:
        with gateway.agency(agency) as c:
            az = c.post("/access/v1/evaluation", json=evaluation(agency, action, case_id, rtype, **context))
            legacy_body: dict[str, Any] = {"action": action, "caseId": case_id, **context}
            if rtype != "case":
                legacy_body["informationType"] = rtype
            legacy = c.post("/v1/decisions", json=legacy_body)
        # Both answer alike, a case the caller may not see included (404 from both).
        assert az.status_code == legacy.status_code, (action, az.text, legacy.text)
        statuses.add(az.status_code)
        if az.status_code != 200:
            continue
        got, want = az.json(), legacy.json()
        assert got["decision"] is want["allowed"], (action, context)
        assert [r["code"] for r in got["context"]["reasons"]] == [r["code"] for r in want["reasons"]]
        assert got["context"]["legalBasis"] == want["legalBasis"]
        assert got["context"]["policyRevision"] == want["policyRevision"]
        outcomes.add(got["decision"])
    assert outcomes == {True, False}  # the spread holds a permit and a deny
    assert 200 in statuses


def test_a_deny_is_a_200_with_reasons(gateway: Gateway, case_id: str) -> None:
    body = evaluation(
        "politie",
        "share",
        case_id,
        "veiligheidsbeoordeling",
        purpose="zorg_en_straf_afstemmen",
        recipient="om",
    )
    with gateway.agency("politie") as c:
        r = c.post("/access/v1/evaluation", json=body, headers={"X-Request-ID": "req-42"})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "req-42"
    assert r.json()["decision"] is False
    assert r.json()["context"]["reasons"], "a deny says why"
    assert r.json()["context"]["legalBasis"] is None


def _boxcar(case_id: str, semantic: str) -> dict[str, Any]:
    """Defaults at the top, one field per item (the spec's example shape): deny, permit, deny."""
    return {
        "subject": {"type": "agency", "id": "politie"},
        "action": {"name": "share"},
        "resource": {"type": MELDING, "id": case_id},
        "context": {"purpose": "veiligheid_herstellen"},
        "evaluations": [
            {"context": {"recipient": "om"}},
            {"context": {"recipient": "veilig_thuis"}},
            {"context": {"recipient": "reclassering"}},
        ],
        "options": {"evaluations_semantic": semantic},
    }


@pytest.mark.parametrize(
    ("semantic", "expected"),
    [
        ("execute_all", None),
        ("deny_on_first_deny", "stop at the first false"),
        ("permit_on_first_permit", "stop at the first true"),
    ],
)
def test_evaluations_follow_their_semantic(
    gateway: Gateway, case_id: str, semantic: str, expected: str | None
) -> None:
    with gateway.agency("politie") as c:
        each = []
        for recipient in ("om", "veilig_thuis", "reclassering"):
            one = evaluation(
                "politie", "share", case_id, MELDING, purpose="veiligheid_herstellen", recipient=recipient
            )
            each.append(c.post("/access/v1/evaluation", json=one).json()["decision"])
        r = c.post("/access/v1/evaluations", json=_boxcar(case_id, semantic))
    assert r.status_code == 200, r.text
    got = [e["decision"] for e in r.json()["evaluations"]]
    if semantic == "execute_all":
        assert got == each
    else:
        stop = semantic == "permit_on_first_permit"
        cut = each.index(stop) + 1 if stop in each else len(each)
        assert got == each[:cut]
    assert True in each and False in each  # the items really differ


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: b["action"].update(name="delete"), "action.name"),
        (lambda b: b["action"].update(name="case.open"), "action.name"),
        (lambda b: b["subject"].update(type="user"), "subject.type"),
        (lambda b: b["context"].pop("recipient"), "context.recipient"),
        (lambda b: b["context"].update(purpose="nieuwsgierigheid"), "context.purpose"),
        (lambda b: b["context"].update(colour="blue"), "context.colour"),
        (lambda b: b["resource"].update(type="case"), "resource.type"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(gateway: Gateway, case_id: str, change: Any, field: str) -> None:
    body = evaluation("politie", "share", case_id, MELDING, purpose="veiligheid_herstellen", recipient="om")
    change(body)
    with gateway.agency("politie") as c:
        r = c.post("/access/v1/evaluation", json=body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in {e["field"] for e in r.json()["errors"]}


def test_a_bad_item_of_a_boxcar_is_named_by_its_position(gateway: Gateway, case_id: str) -> None:
    body = _boxcar(case_id, "execute_all")
    body["evaluations"][2]["action"] = {"name": "delete"}
    with gateway.agency("politie") as c:
        r = c.post("/access/v1/evaluations", json=body)
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "evaluations[2].action.name"


def test_only_ones_own_agency_and_only_with_a_token(gateway: Gateway, case_id: str) -> None:
    body = evaluation("om", "share", case_id, MELDING, purpose="veiligheid_herstellen", recipient="om")
    with gateway.agency("politie") as c:
        r = c.post("/access/v1/evaluation", json=body)
    assert r.status_code == 403
    assert r.json()["errors"][0]["field"] == "subject.id"
    assert httpx.post(f"{gateway.base}/access/v1/evaluation", json=body).status_code == 401
    with gateway.as_("veilig_thuis-fg") as officer:  # a privacy officer's token has no `exchange` scope
        assert officer.post("/access/v1/evaluation", json=body).status_code == 403

"""A caller that may not read a case learns nothing about it, from any route (issue 7, finding 10a).

The RvdK reads only cases with a minor (rule 6) and only where it takes part. It used to get a 404 on
``GET /v1/cases/{id}`` but could still post a share, a request, a what-if, a transition or a track
change on the same case and read its step from the reasons. Now every route answers the same 404
problem as for an id that does not exist: same status, same body.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Gateway

# (method, path template, JSON body): every route that takes a case id.
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/cases/{id}", None),
    (
        "POST",
        "/v1/cases/{id}/shares",
        {
            "informationType": "kinderbeschermingsinformatie",
            "purpose": "veiligheid_herstellen",
            "recipients": ["politie"],
            "payload": {"onderzoeksdatum": "2026-11-28"},
        },
    ),
    (
        "POST",
        "/v1/cases/{id}/requests",
        {"informationType": "melding", "purpose": "onderzoek_kinderbescherming", "holder": "veilig_thuis"},
    ),
    (
        "POST",
        "/v1/decisions",
        {
            "caseId": "{id}",
            "action": "share",
            "informationType": "kinderbeschermingsinformatie",
            "purpose": "veiligheid_herstellen",
            "recipient": "politie",
            "payloadFields": ["onderzoeksdatum"],
        },
    ),
    ("POST", "/v1/decisions", {"caseId": "{id}", "action": "case.transition", "step": "motorkapoverleg"}),
    ("POST", "/v1/cases/{id}/transitions", {"step": "motorkapoverleg"}),
    ("PUT", "/v1/cases/{id}/tracks/zorg", {"open": True}),
    ("PUT", "/v1/cases/{id}/tracks/straf", {"open": True}),
]
IDS = [f"{method} {path} {(body or {}).get('action', '')}".strip() for method, path, body in ROUTES]


def _call(client: httpx.Client, method: str, path: str, body: dict[str, Any] | None, case_id: str) -> Any:
    filled = None
    if body is not None:
        filled = {k: (case_id if v == "{id}" else v) for k, v in body.items()}
    return client.request(method, path.format(id=case_id), json=filled)


@pytest.fixture(scope="module")
def hidden_case(gateway: Gateway) -> str:
    """A case without a child in a step the RvdK takes part in: rule 6 hides it from the RvdK."""
    case_id = gateway.open_case(with_kind=False)
    gateway.move(case_id, "onderzoek", by="politie")
    with gateway.agency("rvdk") as rvdk:
        assert rvdk.get(f"/v1/cases/{case_id}").status_code == 404
    return case_id


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=IDS)
def test_a_case_the_caller_may_not_read_is_a_404_like_one_that_does_not_exist(
    gateway: Gateway, hidden_case: str, method: str, path: str, body: dict[str, Any] | None
) -> None:
    with gateway.agency("rvdk") as rvdk:
        hidden = _call(rvdk, method, path, body, hidden_case)
        missing = _call(rvdk, method, path, body, str(uuid.uuid4()))
    assert missing.status_code == 404, missing.text
    assert hidden.status_code == 404, hidden.text
    assert hidden.headers["content-type"] == missing.headers["content-type"]
    assert hidden.content == missing.content  # byte for byte: not even the detail differs
    assert hidden.json()["type"] == "https://veilig-delen.example/problems/not-found"
    assert "onderzoek" not in hidden.text and "acuut" not in hidden.text


def test_nothing_changed_and_the_refusals_are_in_the_log(gateway: Gateway, hidden_case: str) -> None:
    with gateway.agency("rvdk") as rvdk:
        for method, path, body in ROUTES:
            _call(rvdk, method, path, body, hidden_case)
    with gateway.agency("politie") as politie:
        case = politie.get(f"/v1/cases/{hidden_case}").json()
    assert (case["flow"], case["step"]) == ("acuut", "onderzoek")
    assert case["tracks"] == {"zorg": False, "straf": False}
    with gateway.as_("auditor") as auditor:
        r = auditor.get("/v1/audit/entries", params={"caseId": hidden_case, "limit": 1000})
    assert r.status_code == 200, r.text
    entries = [e["entry"] for e in r.json()["entries"]]
    by_rvdk = [e for e in entries if e["actor"]["agency"] == "rvdk"]
    # Every attempt is a refused read of the case; nothing else was decided for the RvdK.
    assert by_rvdk
    assert {(e["action"], e["outcome"]) for e in by_rvdk} == {("case.read", "refused")}
    assert not any(e["type"] == "exchange" for e in by_rvdk)


def test_an_agency_that_may_read_the_case_still_gets_its_answer(gateway: Gateway, hidden_case: str) -> None:
    # The same routes for the politie, which takes part: decisions with reasons, not 404s.
    with gateway.agency("politie") as politie:
        r = politie.post(
            "/v1/decisions",
            json={"caseId": hidden_case, "action": "case.track", "track": "straf", "open": True},
        )
        assert r.status_code == 200, r.text
        assert r.json()["allowed"] is True
        share = politie.post(
            f"/v1/cases/{hidden_case}/shares",
            json={
                "informationType": "melding",
                "purpose": "onderzoek_kinderbescherming",
                "recipients": ["rvdk"],
                "payload": {"aard": "fysiek geweld"},
            },
        )
        assert share.status_code == 200, share.text
        [result] = share.json()["results"]
        assert result["allowed"] is False  # rule 6: the RvdK receives only for cases with a minor
        assert "no_minor_in_case" in {reason["code"] for reason in result["reasons"]}

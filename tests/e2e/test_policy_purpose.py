"""Purpose binding that travels, over HTTP: data shared on (``basedOn``) keeps the purposes it was
received for, a refusal says so, and the trail names the messages it came from."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.conftest import Gateway
from tests.e2e.test_exchanges import result_for, share

MELDING = {"aard": "fysiek geweld", "locatie": "fictief adres", "interneOpmerking": "intern"}
INCIDENTEN = {"incidenten": ["2026-11-28 mishandeling"], "wapenbezit": "nee", "interneNotities": "intern"}
BEVINDINGEN = {"bevindingen": "kind getuige van geweld", "risicofactoren": "eerdere incidenten"}


def _delivered(response: httpx.Response, recipient: str) -> str:
    assert response.status_code == 200, response.text
    result = result_for(response, recipient)
    assert result["allowed"] is True, result["reasons"]
    return str(result["messageId"])


def _entries(gw: Gateway, case_id: str) -> list[dict[str, Any]]:
    with gw.as_("auditor") as a:
        r = a.get("/v1/audit/entries", params={"caseId": case_id, "type": "exchange", "limit": 1000})
    assert r.status_code == 200, r.text
    return [item["entry"] for item in r.json()["entries"]]


def test_data_shared_on_keeps_the_purposes_it_was_received_for(gateway: Gateway) -> None:
    case_id = gateway.open_case()  # acuut/fysieke_veiligheid, with a child

    # 1. politie reports to Veilig Thuis for handling the report (melding_behandelen).
    m1 = _delivered(
        share(
            gateway,
            "politie",
            case_id,
            informationType="melding",
            purpose="melding_behandelen",
            recipients=["veilig_thuis"],
            payload=MELDING,
        ),
        "veilig_thuis",
    )
    # ... and gives its incident data to restore safety (veiligheid_herstellen).
    m2 = _delivered(
        share(
            gateway,
            "politie",
            case_id,
            informationType="strafrechtelijke_informatie",
            purpose="veiligheid_herstellen",
            recipients=["veilig_thuis"],
            payload=INCIDENTEN,
        ),
        "veilig_thuis",
    )
    gateway.move(case_id, "motorkapoverleg", by="politie")
    gateway.move(case_id, "onderzoek", by="politie")

    # 2. Veilig Thuis passes the report on to the RvdK for a child-protection investigation: the
    #    purpose it was received for (melding_behandelen) lists onderzoek_kinderbescherming.
    allowed = share(
        gateway,
        "veilig_thuis",
        case_id,
        informationType="melding",
        purpose="onderzoek_kinderbescherming",
        recipients=["rvdk"],
        payload=MELDING,
        basedOn=[m1],
    )
    m3 = _delivered(allowed, "rvdk")

    # 3. The incident data was received to restore safety; a child-protection investigation is not
    #    compatible with that: refused for every recipient, and the reason names both purposes.
    refused = share(
        gateway,
        "veilig_thuis",
        case_id,
        informationType="onderzoeksbevindingen",
        purpose="onderzoek_kinderbescherming",
        recipients=["rvdk"],
        payload=BEVINDINGEN,
        basedOn=[m2],
    )
    assert refused.status_code == 200, refused.text
    rvdk = result_for(refused, "rvdk")
    assert rvdk["allowed"] is False
    assert "messageId" not in rvdk or rvdk["messageId"] is None
    assert [r["code"] for r in rvdk["reasons"]] == ["purpose_incompatible_with_origin"]
    assert rvdk["reasons"][0]["message"] == (
        "The purpose onderzoek_kinderbescherming is not compatible with the purpose veiligheid_herstellen "
        "for which veilig_thuis received strafrechtelijke_informatie from politie; "
        "compatible: maatregelen_afstemmen, veiligheid_beoordelen, veiligheid_herstellen"
    )
    assert "verenigbaar" in rvdk["reasons"][0]["messageNl"]
    # Without basedOn the same share is a new decision on its own merits, and allowed.
    fresh = share(
        gateway,
        "veilig_thuis",
        case_id,
        informationType="onderzoeksbevindingen",
        purpose="onderzoek_kinderbescherming",
        recipients=["rvdk"],
        payload=BEVINDINGEN,
    )
    _delivered(fresh, "rvdk")

    # 4. The RvdK's inbox shows where its message came from.
    with gateway.agency("rvdk") as rv:
        inbox = rv.get("/v1/inbox").json()["messages"]
    message = next(m for m in inbox if m["messageId"] == m3)
    assert message["basedOn"] == [m1]
    assert message["origin"] == [
        {"messageId": m1, "purpose": "melding_behandelen", "informationType": "melding", "sender": "politie"}
    ]
    assert message["purpose"] == "onderzoek_kinderbescherming"
    assert "onderzoek_kinderbescherming" in message["usageRestriction"]

    # 5. The lineage travels: maatregelen_afstemmen is compatible with the RvdK's own purpose, but not
    #    with melding_behandelen, for which the data first entered the case.
    gateway.move(case_id, "veiligheidsmaatregelen", by="politie")
    lineage = share(
        gateway,
        "rvdk",
        case_id,
        informationType="onderzoeksbevindingen",
        purpose="maatregelen_afstemmen",
        recipients=["veilig_thuis"],
        payload=BEVINDINGEN,
        basedOn=[m3],
    )
    vt = result_for(lineage, "veilig_thuis")
    assert vt["allowed"] is False
    assert [r["code"] for r in vt["reasons"]] == ["purpose_incompatible_with_origin"]
    assert (
        "with the purpose melding_behandelen for which rvdk received melding from politie"
        in (vt["reasons"][0]["message"])
    )

    # 6. The trail names the origin of every decision on shared-on data, allowed or refused.
    entries = _entries(gateway, case_id)
    onward = {e["refs"]["shareId"]: e for e in entries if "basedOn" in e.get("refs", {})}
    by_share = {r.json()["shareId"]: r for r in (allowed, refused, lineage)}
    assert set(onward) == set(by_share)
    assert onward[allowed.json()["shareId"]]["refs"]["basedOn"] == m1
    assert onward[allowed.json()["shareId"]]["decision"]["allowed"] is True
    assert onward[allowed.json()["shareId"]]["refs"]["messageId"] == m3
    assert onward[refused.json()["shareId"]]["refs"]["basedOn"] == m2
    assert onward[refused.json()["shareId"]]["outcome"] == "refused"
    assert [r["code"] for r in onward[refused.json()["shareId"]]["decision"]["reasons"]] == [
        "purpose_incompatible_with_origin"
    ]
    assert onward[lineage.json()["shareId"]]["refs"]["basedOn"] == m3
    assert all(
        "basedOn" not in e.get("refs", {}) for e in entries if e["refs"]["shareId"] == fresh.json()["shareId"]
    )


def test_based_on_must_name_messages_the_caller_received_in_this_case(gateway: Gateway) -> None:
    case_id = gateway.open_case()
    other_case = gateway.open_case()
    m1 = _delivered(
        share(
            gateway,
            "politie",
            case_id,
            informationType="melding",
            purpose="veiligheid_herstellen",
            recipients=["veilig_thuis"],
            payload=MELDING,
        ),
        "veilig_thuis",
    )
    body = {
        "informationType": "melding",
        "purpose": "veiligheid_herstellen",
        "recipients": ["politie"],
        "payload": MELDING,
    }
    # Not delivered to the caller (politie sent it), unknown, or from another case: all the same 404.
    for sender, case, based_on in [
        ("politie", case_id, [m1]),
        ("veilig_thuis", case_id, ["no-such-message"]),
        ("veilig_thuis", other_case, [m1]),
    ]:
        r = share(gateway, sender, case, **body, basedOn=based_on)
        assert r.status_code == 404, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["errors"] == [
            {"field": "basedOn[0]", "message": "not a message delivered to your agency in this case"}
        ]
    twice = share(gateway, "veilig_thuis", case_id, **body, basedOn=[m1, m1])
    assert twice.status_code == 400
    assert twice.json()["errors"][0]["field"].startswith("basedOn")
    # Sharing it back for the purpose it came with is fine.
    _delivered(share(gateway, "veilig_thuis", case_id, **body, basedOn=[m1]), "politie")


def test_what_if_checks_shared_on_data_too(gateway: Gateway) -> None:
    case_id = gateway.open_case()
    m1 = _delivered(
        share(
            gateway,
            "politie",
            case_id,
            informationType="strafrechtelijke_informatie",
            purpose="veiligheid_herstellen",
            recipients=["veilig_thuis"],
            payload=INCIDENTEN,
        ),
        "veilig_thuis",
    )
    ask = {
        "action": "share",
        "caseId": case_id,
        "informationType": "melding",
        "recipient": "politie",
        "basedOn": [m1],
    }
    with gateway.agency("veilig_thuis") as vt:
        ok = vt.post("/v1/decisions", json=ask | {"purpose": "veiligheid_herstellen"})
        no = vt.post("/v1/decisions", json=ask | {"purpose": "melding_behandelen"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["allowed"] is True
    assert no.json()["allowed"] is False
    assert [r["code"] for r in no.json()["reasons"]] == ["purpose_incompatible_with_origin"]

"""Shares, inbox, requests and what-if over HTTP, with a refusal for each baseline rule."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Gateway

MELDING = {
    "datumTijd": "2026-11-28T02:14:00Z",
    "locatie": "fictief adres",
    "aard": "fysiek geweld",
    "meldingstekst": "Buren melden geschreeuw.",
    "nietBestaandVeld": "mag niemand bereiken",
}
BEOORDELING = {
    "conclusie": "structureel onveilig",
    "risicofactoren": "eerdere incidenten",
    "veiligheidsvoorwaarden": "geen contact",
    "medischeGegevensSlachtoffer": "kneuzingen",
}


def share(gw: Gateway, sender: str, case_id: str, **body: Any) -> Any:
    with gw.agency(sender) as c:
        return c.post(f"/v1/cases/{case_id}/shares", json=body)


def result_for(response: Any, recipient: str) -> dict[str, Any]:
    return next(r for r in response.json()["results"] if r["recipient"] == recipient)


def codes(result: dict[str, Any]) -> set[str]:
    return {r["code"] for r in result["reasons"]}


def structural_plan_case(gw: Gateway, *, kind: bool = True) -> str:
    case_id = gw.open_case(flow="structureel", with_kind=kind)
    for step in ["informatie_combineren", "veiligheidsbeoordeling", "veiligheidsplan"]:
        gw.move(case_id, step)
    gw.track(case_id, "zorg")
    return case_id


def test_share_is_minimised_delivered_and_audited(gateway: Gateway) -> None:
    case_id = gateway.open_case()
    r = share(
        gateway,
        "politie",
        case_id,
        informationType="melding",
        purpose="veiligheid_herstellen",
        recipients=["veilig_thuis"],
        payload=MELDING,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["policyRevision"] == gateway.runtime.policy.current.revision
    vt = result_for(r, "veilig_thuis")
    assert vt["allowed"] is True
    assert vt["legalBasis"]
    assert "nietBestaandVeld" not in vt["fields"]
    assert set(vt["fields"]) <= set(MELDING)
    received = [
        d for d in gateway.runtime.connectors["veilig_thuis"].received if d.message_id == vt["messageId"]
    ]
    assert len(received) == 1
    assert set(received[0].payload) == set(vt["fields"])
    assert received[0].purpose == "veiligheid_herstellen"
    with gateway.as_("auditor") as a:
        entries = a.get("/v1/audit/entries", params={"caseId": case_id, "type": "exchange"}).json()["entries"]
    entry = entries[-1]["entry"]
    assert entry["counterpart"] == "veilig_thuis"
    assert entry["decision"]["allowed"] is True
    assert entry["payloadDigest"].startswith("sha256:")
    assert "meldingstekst" not in str(entries)  # field names may not, content must not, reach the log
    assert "Buren melden" not in str(entries)


def test_inbox_and_ack(gateway: Gateway) -> None:
    case_id = gateway.open_case()
    r = share(
        gateway,
        "politie",
        case_id,
        informationType="melding",
        purpose="veiligheid_herstellen",
        recipients=["veilig_thuis"],
        payload=MELDING,
    )
    message_id = result_for(r, "veilig_thuis")["messageId"]
    with gateway.agency("veilig_thuis") as vt:
        inbox = vt.get("/v1/inbox").json()["messages"]
        message = next(m for m in inbox if m["messageId"] == message_id)
        assert message["caseId"] == case_id
        assert message["sender"] == "politie"
        assert message["purpose"] == "veiligheid_herstellen"
        assert "nietBestaandVeld" not in message["payload"]
        assert message["payload"]["aard"] == "fysiek geweld"
        with gateway.agency("om") as om:  # someone else's message
            assert om.post(f"/v1/inbox/{message_id}/ack").status_code == 404
            assert all(m["messageId"] != message_id for m in om.get("/v1/inbox").json()["messages"])
        ack = vt.post(f"/v1/inbox/{message_id}/ack")
        assert ack.status_code == 204
        assert all(m["messageId"] != message_id for m in vt.get("/v1/inbox").json()["messages"])
        assert vt.post("/v1/inbox/unknown/ack").status_code == 404


def test_samenloop_rule(gateway: Gateway) -> None:
    case_id = structural_plan_case(gateway)
    kwargs = dict(
        informationType="veiligheidsbeoordeling",
        purpose="zorg_en_straf_afstemmen",
        recipients=["om", "reclassering", "rvdk"],
        payload=BEOORDELING,
    )
    refused = share(gateway, "veilig_thuis", case_id, **kwargs)
    assert refused.status_code == 200
    for recipient in ["om", "reclassering", "rvdk"]:
        result = result_for(refused, recipient)
        assert result["allowed"] is False
        assert "samenloop_required" in codes(result)
        assert "messageId" not in result or result["messageId"] is None
    gateway.track(case_id, "straf")
    allowed = share(gateway, "veilig_thuis", case_id, **kwargs)
    for recipient in ["om", "reclassering", "rvdk"]:
        assert result_for(allowed, recipient)["allowed"] is True, allowed.text
    # Minimisation per recipient: reclassering does not get the victim's medical details.
    assert "medischeGegevensSlachtoffer" not in result_for(allowed, "reclassering")["fields"]


def test_rvdk_only_with_a_minor(gateway: Gateway) -> None:
    case_id = structural_plan_case(gateway, kind=False)
    gateway.track(case_id, "straf")
    r = share(
        gateway,
        "veilig_thuis",
        case_id,
        informationType="veiligheidsbeoordeling",
        purpose="zorg_en_straf_afstemmen",
        recipients=["rvdk", "om"],
        payload=BEOORDELING,
    )
    assert "no_minor_in_case" in codes(result_for(r, "rvdk"))
    assert result_for(r, "om")["allowed"] is True
    assert all(d.case_id != case_id for d in gateway.runtime.connectors["rvdk"].received)


def test_purpose_binding(gateway: Gateway) -> None:
    case_id = gateway.open_case()
    r = share(
        gateway,
        "politie",
        case_id,
        informationType="melding",
        purpose="overdracht",
        recipients=["veilig_thuis"],
        payload=MELDING,
    )
    result = result_for(r, "veilig_thuis")
    assert result["allowed"] is False
    assert "purpose_not_allowed" in codes(result)


def test_recipient_must_take_part_in_the_step(gateway: Gateway) -> None:
    case_id = gateway.open_case()  # fysieke_veiligheid: politie and veilig_thuis only
    r = share(
        gateway,
        "politie",
        case_id,
        informationType="melding",
        purpose="veiligheid_herstellen",
        recipients=["reclassering", "veilig_thuis"],
        payload=MELDING,
    )
    assert "recipient_not_a_participant" in codes(result_for(r, "reclassering"))
    assert result_for(r, "veilig_thuis")["allowed"] is True


def test_sender_must_take_part_in_the_step(gateway: Gateway) -> None:
    # The politie opened this structural case, so it reads it; the assessment is Veilig Thuis's alone.
    with gateway.agency("politie") as c:
        opened = c.post(
            "/v1/cases",
            json={"flow": "structureel", "subjects": [{"role": "slachtoffer", "bsn": "999990019"}]},
        )
    assert opened.status_code == 201, opened.text
    case_id = opened.json()["caseId"]
    gateway.move(case_id, "informatie_combineren")
    gateway.move(case_id, "veiligheidsbeoordeling")
    r = share(
        gateway,
        "politie",
        case_id,
        informationType="strafrechtelijke_informatie",
        purpose="veiligheid_beoordelen",
        recipients=["veilig_thuis"],
        payload={"incidenten": "fictief"},
    )
    assert r.status_code == 200, r.text
    assert "not_a_participant" in codes(result_for(r, "veilig_thuis"))


def test_a_sender_that_may_not_read_the_case_gets_a_404(gateway: Gateway) -> None:
    case_id = gateway.open_case()  # the OM takes no part in fysieke_veiligheid, nor in the case
    r = share(
        gateway,
        "om",
        case_id,
        informationType="justitiele_informatie",
        purpose="maatregelen_afstemmen",
        recipients=["politie"],
        payload={"zaaknummer": "fictief"},
    )
    assert r.status_code == 404
    assert "fysieke_veiligheid" not in r.text


def test_consulted_party_does_not_share_on_its_own(gateway: Gateway) -> None:
    case_id = gateway.open_case()
    gateway.move(case_id, "motorkapoverleg", by="politie")
    r = share(
        gateway,
        "reclassering",
        case_id,
        informationType="reclasseringsinformatie",
        purpose="veiligheid_beoordelen",
        recipients=["veilig_thuis"],
        payload={"toezicht": "lopend"},
    )
    assert result_for(r, "veilig_thuis")["allowed"] is False
    assert codes(result_for(r, "veilig_thuis")) & {"consulted_party_cannot_share", "not_a_participant"}


@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("informationType", {"informationType": "geheim", "purpose": "veiligheid_herstellen"}),
        ("purpose", {"informationType": "melding", "purpose": "nieuwsgierigheid"}),
    ],
)
def test_unknown_identifiers_are_400(gateway: Gateway, field: str, body: dict[str, str]) -> None:
    case_id = gateway.open_case()
    r = share(gateway, "politie", case_id, recipients=["veilig_thuis"], payload={}, **body)
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == field


def test_malformed_share_is_400_naming_fields(gateway: Gateway) -> None:
    case_id = gateway.open_case()
    r = share(
        gateway,
        "politie",
        case_id,
        informationType="melding",
        purpose="veiligheid_herstellen",
        recipients=["interpol"],
        payload="tekst",
    )
    assert r.status_code == 400
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"recipients[0]", "payload"} <= fields
    with gateway.agency("politie") as c:
        assert (
            c.post(
                "/v1/cases/nope/shares",
                json={
                    "informationType": "melding",
                    "purpose": "veiligheid_herstellen",
                    "recipients": ["veilig_thuis"],
                    "payload": {},
                },
            ).status_code
            == 404
        )


def test_request_is_answered_minimised_from_the_holder(gateway: Gateway) -> None:
    case_id = gateway.open_case(flow="structureel")
    gateway.move(case_id, "informatie_combineren")
    with gateway.agency("veilig_thuis") as vt:
        r = vt.post(
            f"/v1/cases/{case_id}/requests",
            json={
                "informationType": "strafrechtelijke_informatie",
                "purpose": "veiligheid_beoordelen",
                "holder": "politie",
            },
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["allowed"] is True
    assert body["legalBasis"]
    assert body["data"], "the simulated politie system holds records"
    assert set(body["data"]) == set(body["fields"])
    assert "interneNotities" not in body["data"]  # held by politie's system, but for nobody else


def test_request_refused_with_reasons(gateway: Gateway) -> None:
    case_id = gateway.open_case()
    gateway.move(case_id, "motorkapoverleg", by="politie")  # rvdk is consulted: it reads, it does not ask
    with gateway.agency("rvdk") as c:
        r = c.post(
            f"/v1/cases/{case_id}/requests",
            json={
                "informationType": "strafrechtelijke_informatie",
                "purpose": "onderzoek_kinderbescherming",
                "holder": "politie",
            },
        )
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "consulted_party_cannot_share" in {x["code"] for x in r.json()["reasons"]}


def test_what_if_changes_nothing(gateway: Gateway) -> None:
    case_id = structural_plan_case(gateway)
    before = len(gateway.runtime.connectors["om"].received)
    with gateway.agency("veilig_thuis") as vt:
        r = vt.post(
            "/v1/decisions",
            json={
                "action": "share",
                "caseId": case_id,
                "informationType": "veiligheidsbeoordeling",
                "purpose": "zorg_en_straf_afstemmen",
                "recipient": "om",
            },
        )
        assert r.status_code == 200
        body = r.json()
        assert body["allowed"] is False
        assert "samenloop_required" in {x["code"] for x in body["reasons"]}
        assert body["policyRevision"].startswith("sha256:")
        assert vt.get(f"/v1/cases/{case_id}").json()["tracks"]["straf"] is False
        move = vt.post(
            "/v1/decisions", json={"action": "case.transition", "caseId": case_id, "step": "melding"}
        )
        assert move.json()["allowed"] is False
        assert "illegal_transition" in {x["code"] for x in move.json()["reasons"]}
    assert len(gateway.runtime.connectors["om"].received) == before


def test_no_audit_no_exchange(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    case_id = gateway.open_case()
    before = len(gateway.runtime.connectors["veilig_thuis"].received)

    def broken(_entries: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(gateway.runtime.audit, "append", broken)
    r = share(
        gateway,
        "politie",
        case_id,
        informationType="melding",
        purpose="veiligheid_herstellen",
        recipients=["veilig_thuis"],
        payload=MELDING,
    )
    monkeypatch.undo()
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("application/problem+json")
    assert len(gateway.runtime.connectors["veilig_thuis"].received) == before
    with gateway.agency("veilig_thuis") as vt:
        assert all(m["caseId"] != case_id for m in vt.get("/v1/inbox").json()["messages"])

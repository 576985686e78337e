"""Cases over HTTP: open, read, move, tracks; each change a policy decision (baseline rule 7)."""

from __future__ import annotations

from tests.e2e.conftest import BSN_KIND, BSN_PLEGER, Gateway


def codes(body: dict) -> set[str]:  # type: ignore[type-arg]
    return {r["code"] for r in body.get("reasons", [])}


def test_open_case_returns_the_contract_shape(gateway: Gateway) -> None:
    with gateway.agency("politie") as c:
        r = c.post(
            "/v1/cases",
            json={"flow": "acuut", "subjects": [{"role": "slachtoffer", "bsn": "999990019"}]},
        )
    assert r.status_code == 201
    body = r.json()
    assert body["flow"] == "acuut"
    assert body["step"] == "fysieke_veiligheid"
    assert body["tracks"] == {"zorg": False, "straf": False}
    assert body["openedBy"] == "politie"
    assert "999990019" not in r.text  # only the pseudonym comes back
    assert len(body["subjects"][0]["pseudonym"]) == 64


def test_invalid_bsn_is_a_400_naming_the_field(gateway: Gateway) -> None:
    with gateway.agency("politie") as c:
        r = c.post(
            "/v1/cases",
            json={
                "flow": "acuut",
                "subjects": [
                    {"role": "slachtoffer", "bsn": "999990019"},
                    {"role": "kind", "bsn": "123456789"},
                ],
            },
        )
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"] == [
        {"field": "subjects[1].bsn", "message": "not a valid BSN (nine digits, elfproef)"}
    ]
    assert "123456789" not in r.text


def test_unknown_flow_and_step_are_400(gateway: Gateway) -> None:
    with gateway.agency("politie") as c:
        r = c.post("/v1/cases", json={"flow": "later", "subjects": [{"role": "kind", "bsn": BSN_KIND}]})
        assert r.status_code == 400
        assert r.json()["errors"][0]["field"] == "flow"
        r = c.post(
            "/v1/cases",
            json={"flow": "acuut", "step": "melding", "subjects": [{"role": "kind", "bsn": BSN_KIND}]},
        )
        assert r.status_code == 400
        assert r.json()["errors"][0]["field"] == "step"


def test_only_politie_and_veilig_thuis_open_cases(gateway: Gateway) -> None:
    with gateway.agency("om") as c:
        r = c.post("/v1/cases", json={"flow": "acuut", "subjects": [{"role": "pleger", "bsn": BSN_PLEGER}]})
    assert r.status_code == 403
    assert "not_authorised_for_action" in codes(r.json())


def test_read_case_only_by_agencies_taking_part(gateway: Gateway) -> None:
    case_id = gateway.open_case()
    with gateway.agency("veilig_thuis") as vt:
        assert vt.get(f"/v1/cases/{case_id}").status_code == 200
    with gateway.agency("reclassering") as rn:  # not in fysieke_veiligheid, never involved
        assert rn.get(f"/v1/cases/{case_id}").status_code == 404
    with gateway.agency("politie") as c:
        assert c.get("/v1/cases/does-not-exist").status_code == 404


def test_step_moves_forward_and_illegal_moves_are_409(gateway: Gateway) -> None:
    case_id = gateway.open_case()
    with gateway.agency("politie") as c:
        r = c.post(f"/v1/cases/{case_id}/transitions", json={"step": "motorkapoverleg"})
        assert r.status_code == 200
        assert r.json()["step"] == "motorkapoverleg"
        back = c.post(f"/v1/cases/{case_id}/transitions", json={"step": "fysieke_veiligheid"})
        assert back.status_code == 409
        assert "illegal_transition" in codes(back.json())
        unknown = c.post(f"/v1/cases/{case_id}/transitions", json={"step": "nergens"})
        assert unknown.status_code == 400
        assert unknown.json()["errors"][0]["field"] == "step"
        # A real step, of the other flow: the case's state decides, so a conflict, not bad input.
        other_flow = c.post(f"/v1/cases/{case_id}/transitions", json={"step": "veiligheidsplan"})
        assert other_flow.status_code == 409, other_flow.text
        assert other_flow.headers["content-type"].startswith("application/problem+json")
        named = c.post(f"/v1/cases/{case_id}/transitions", json={"flow": "acuut", "step": "veiligheidsplan"})
        assert named.status_code == 400
        assert named.json()["errors"][0]["field"] == "step"


def test_only_the_right_agencies_move_steps(gateway: Gateway) -> None:
    case_id = gateway.open_case()
    gateway.move(case_id, "motorkapoverleg", by="politie")  # the OM is consulted here: it reads the case
    with gateway.agency("om") as c:
        r = c.post(f"/v1/cases/{case_id}/transitions", json={"step": "onderzoek"})
    assert r.status_code == 403
    assert "not_authorised_for_action" in codes(r.json())
    structural = gateway.open_case(flow="structureel")
    with gateway.agency("politie") as c:  # in structureel only veilig_thuis moves the step
        r = c.post(f"/v1/cases/{structural}/transitions", json={"step": "informatie_combineren"})
    assert r.status_code == 403


def test_hand_over_and_escalation(gateway: Gateway) -> None:
    case_id = gateway.open_case()
    gateway.move(case_id, "overdracht", by="politie")
    gateway.move(case_id, "melding", flow="structureel")
    with gateway.agency("veilig_thuis") as vt:
        assert vt.get(f"/v1/cases/{case_id}").json()["flow"] == "structureel"
        up = vt.post(f"/v1/cases/{case_id}/transitions", json={"flow": "acuut", "step": "fysieke_veiligheid"})
        assert up.status_code == 200
        assert (up.json()["flow"], up.json()["step"]) == ("acuut", "fysieke_veiligheid")


def test_tracks_are_opened_by_their_owners(gateway: Gateway) -> None:
    case_id = gateway.open_case()
    with gateway.agency("politie") as politie:
        refused = politie.put(f"/v1/cases/{case_id}/tracks/zorg", json={"open": True})
        assert refused.status_code == 403
        assert "not_authorised_for_action" in codes(refused.json())
        straf = politie.put(f"/v1/cases/{case_id}/tracks/straf", json={"open": True})
        assert straf.status_code == 200
        assert straf.json()["tracks"] == {"zorg": False, "straf": True}
    with gateway.agency("veilig_thuis") as vt:
        zorg = vt.put(f"/v1/cases/{case_id}/tracks/zorg", json={"open": True})
        assert zorg.json()["tracks"] == {"zorg": True, "straf": True}
        unknown = vt.put(f"/v1/cases/{case_id}/tracks/onbekend", json={"open": True})
        assert unknown.status_code == 400
        assert unknown.json()["errors"][0]["field"] == "track"
        bad = vt.put(f"/v1/cases/{case_id}/tracks/zorg", json={"open": "misschien"})
        assert bad.status_code == 400
        assert bad.json()["errors"][0]["field"] == "open"
    gateway.move(case_id, "motorkapoverleg", by="politie")  # the OM takes part (consulted) from here
    with gateway.agency("om") as om:
        closed = om.put(f"/v1/cases/{case_id}/tracks/straf", json={"open": False})
        assert closed.status_code == 200
        assert closed.json()["tracks"]["straf"] is False

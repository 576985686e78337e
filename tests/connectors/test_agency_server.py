"""The stand-in agency app, spoken to directly over real HTTP (not through HttpConnector)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from connectors import SimulatedAgencySystem
from gateway.cli import run
from standins.agency import make_agency_app
from tests.connectors.samples import TRACEPARENT
from tests.live import serve

DELIVERY = {
    "messageId": "msg-1",
    "caseId": "case-1",
    "sender": "politie",
    "recipient": "veilig_thuis",
    "informationType": "melding",
    "purpose": "melding_behandelen",
    "legalBasis": "Wpg art. 19",
    "payload": {"aanleiding": "GEHEIME-INHOUD"},
    "usageRestriction": "alleen voor melding_behandelen",
}
KEY = {"Idempotency-Key": "msg-1"}


@pytest.fixture
def vt() -> SimulatedAgencySystem:
    return SimulatedAgencySystem("veilig_thuis")


def test_health_follows_the_system(vt: SimulatedAgencySystem) -> None:
    with serve(make_agency_app(vt)) as url:
        assert httpx.get(url + "/veilig-delen/health").json() == {"agency": "veilig_thuis", "status": "up"}
        vt.set_down(True)
        down = httpx.get(url + "/veilig-delen/health")
        assert (down.status_code, down.json()["status"]) == (503, "down")


def test_delivery_is_deduplicated_by_message_id(vt: SimulatedAgencySystem) -> None:
    with serve(make_agency_app(vt)) as url:
        first = httpx.post(
            url + "/veilig-delen/deliveries", json=DELIVERY, headers={"traceparent": TRACEPARENT, **KEY}
        )
        second = httpx.post(url + "/veilig-delen/deliveries", json=DELIVERY, headers=KEY)
    assert first.json() == {"messageId": "msg-1", "accepted": True, "detail": "received"}
    assert second.status_code == 200
    assert second.json()["detail"].startswith("duplicate")
    assert [d.message_id for d in vt.received] == ["msg-1"]
    assert vt.received[0].trace_parent == TRACEPARENT
    assert vt.received[0].payload == {"aanleiding": "GEHEIME-INHOUD"}


@pytest.mark.parametrize(
    "header",
    [
        "nonsense",
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
        TRACEPARENT.replace("00f067aa0ba902b7", "0" * 16),
    ],
)
def test_malformed_traceparent_is_ignored(vt: SimulatedAgencySystem, header: str) -> None:
    with serve(make_agency_app(vt)) as url:
        httpx.post(url + "/veilig-delen/deliveries", json=DELIVERY, headers={"traceparent": header, **KEY})
    assert vt.received[0].trace_parent == ""


def test_invalid_body_is_a_problem_that_names_fields_but_not_values(vt: SimulatedAgencySystem) -> None:
    body = {**DELIVERY, "caseId": "", "payload": "GEHEIME-INHOUD"}
    with serve(make_agency_app(vt)) as url:
        r = httpx.post(url + "/veilig-delen/deliveries", json=body, headers=KEY)
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert sorted(e["field"] for e in r.json()["errors"]) == ["caseId", "payload"]
    assert "GEHEIME-INHOUD" not in r.text
    assert vt.received == []


def test_fetch_answers_camel_case_and_down_is_503(vt: SimulatedAgencySystem) -> None:
    request = {
        "requestId": "req-1",
        "caseId": "case-1",
        "requester": "politie",
        "holder": "veilig_thuis",
        "informationType": "veiligheidsplan",
        "purpose": "maatregelen_afstemmen",
        "subjectRoles": ["slachtoffer"],
        "subjectPseudonyms": ["p-1"],
    }
    with serve(make_agency_app(vt)) as url:
        found = httpx.post(url + "/veilig-delen/fetch", json=request)
        vt.set_down(True)
        down = httpx.post(url + "/veilig-delen/fetch", json=request)
    assert found.json()["found"] is True
    assert "maatregelen" in found.json()["data"]
    assert (down.status_code, down.json()["title"]) == (503, "Unavailable")


def test_command_line_refuses_an_unknown_agency(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["sim-agency", "--agency", "gemeente", "--port", "9001"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'gemeente' is not one of" in err


def test_the_sim_controls_answer_loopback_only_and_name_a_bad_body(vt: SimulatedAgencySystem) -> None:
    async def call(client: tuple[str, int], method: str, path: str, content: bytes = b"") -> httpx.Response:
        transport = httpx.ASGITransport(app=make_agency_app(vt), client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://agency") as http:
            return await http.request(method, path, content=content)

    outside = ("192.0.2.9", 40000)
    for method, path in (("POST", "/sim/behaviour"), ("GET", "/sim/received")):
        r = asyncio.run(call(outside, method, path, b'{"down": true}' if method == "POST" else b""))
        assert (r.status_code, r.headers["content-type"]) == (403, "application/problem+json")
    assert vt.health()
    r = asyncio.run(call(("127.0.0.1", 40000), "POST", "/sim/behaviour", b"not json"))
    assert (r.status_code, r.json()["detail"]) == (400, "the body is not JSON")

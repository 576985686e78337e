"""The gateway with HTTP connectors: agency systems are stand-in servers reached over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from connectors import SimulatedAgencySystem, build_connectors
from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings
from standins.agency import make_agency_app
from tests.e2e.conftest import AGENCIES, Gateway
from tests.live import reserve_socket, serve

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture()
def http_gateway(tmp_path: Path) -> Iterator[tuple[Gateway, dict[str, SimulatedAgencySystem]]]:
    systems = {a: SimulatedAgencySystem(a) for a in AGENCIES}
    with ExitStack() as stack:
        urls = {a: stack.enter_context(serve(make_agency_app(s))) for a, s in systems.items()}
        sock = reserve_socket()
        settings = Settings(
            data_dir=tmp_path, port=sock.getsockname()[1], connectors="http", agency_urls=urls
        )
        runtime = Runtime(settings, connectors=build_connectors("http", urls))
        base = stack.enter_context(serve(create_app(runtime=runtime), sock=sock))
        gw = Gateway(base=base, runtime=runtime)
        for agency in AGENCIES:
            gw.register(f"{agency}-system", agency, "agency_system")
        gw.register("auditor", "veilig_thuis", "auditor")
        yield gw, systems
        runtime.close()


def test_share_reaches_the_agency_system_over_http_with_the_trace(
    http_gateway: tuple[Gateway, dict[str, SimulatedAgencySystem]],
) -> None:
    gw, systems = http_gateway
    case_id = gw.open_case()
    with gw.agency("politie") as c:
        r = c.post(
            f"/v1/cases/{case_id}/shares",
            json={
                "informationType": "melding",
                "purpose": "veiligheid_herstellen",
                "recipients": ["veilig_thuis"],
                "payload": {"aard": "fysiek geweld", "geheimVeld": "x"},
            },
            headers={"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"},
        )
    result = r.json()["results"][0]
    assert result["delivered"] is True
    (received,) = [d for d in systems["veilig_thuis"].received if d.case_id == case_id]
    assert received.payload == {"aard": "fysiek geweld"}
    assert received.trace_parent.split("-")[1] == TRACE_ID  # same trace, the gateway's own span
    assert received.trace_parent.split("-")[2] != "b7ad6b7169203331"
    assert (
        "melding" not in received.usage_restriction and "veiligheid_herstellen" in received.usage_restriction
    )


def test_request_is_fetched_over_http(http_gateway: tuple[Gateway, dict[str, SimulatedAgencySystem]]) -> None:
    gw, _ = http_gateway
    case_id = gw.open_case(flow="structureel")
    gw.move(case_id, "informatie_combineren")
    with gw.agency("veilig_thuis") as vt:
        r = vt.post(
            f"/v1/cases/{case_id}/requests",
            json={
                "informationType": "strafrechtelijke_informatie",
                "purpose": "veiligheid_beoordelen",
                "holder": "politie",
            },
        )
    assert r.status_code == 200, r.text
    assert r.json()["data"]
    assert "interneNotities" not in r.json()["data"]


def test_agency_system_down(http_gateway: tuple[Gateway, dict[str, SimulatedAgencySystem]]) -> None:
    gw, systems = http_gateway
    case_id = gw.open_case(flow="structureel")
    gw.move(case_id, "informatie_combineren")
    systems["politie"].set_down(True)
    systems["veilig_thuis"].set_down(True)
    with gw.agency("veilig_thuis") as vt:
        r = vt.post(
            f"/v1/cases/{case_id}/requests",
            json={
                "informationType": "strafrechtelijke_informatie",
                "purpose": "veiligheid_beoordelen",
                "holder": "politie",
            },
        )
        assert r.status_code == 502
        assert r.headers["content-type"].startswith("application/problem+json")
    acute = gw.open_case()
    with gw.agency("politie") as politie:
        r = politie.post(
            f"/v1/cases/{acute}/shares",
            json={
                "informationType": "melding",
                "purpose": "melding_behandelen",
                "recipients": ["veilig_thuis"],
                "payload": {"aard": "zorgen"},
            },
        )
    result = r.json()["results"][0]
    assert result["allowed"] is True
    assert result["delivered"] is False  # the push failed ...
    with gw.agency("veilig_thuis") as vt:  # ... but the message waits in the inbox
        assert any(m["messageId"] == result["messageId"] for m in vt.get("/v1/inbox").json()["messages"])
    with gw.as_("auditor") as a:
        entries = a.get("/v1/audit/entries", params={"caseId": acute, "type": "delivery"}).json()["entries"]
    assert entries[-1]["entry"]["outcome"] == "push_failed"

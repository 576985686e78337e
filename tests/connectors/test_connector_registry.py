"""build_connectors: one connector per agency, from the gateway's settings."""

from __future__ import annotations

import pytest

from connectors import AGENCIES, HttpConnector, SimulatedAgencySystem, build_connectors

URLS = {agency: f"http://127.0.0.1:{9001 + i}" for i, agency in enumerate(AGENCIES)}


def test_simulated_gives_a_system_per_agency() -> None:
    connectors = build_connectors("simulated", {})
    assert sorted(connectors) == sorted(AGENCIES)
    assert all(isinstance(c, SimulatedAgencySystem) and c.agency == a for a, c in connectors.items())


def test_http_gives_a_connector_per_agency_at_its_url() -> None:
    connectors = build_connectors("http", URLS)
    assert sorted(connectors) == sorted(AGENCIES)
    for agency, connector in connectors.items():
        assert isinstance(connector, HttpConnector)
        assert (connector.agency, connector.base_url) == (agency, URLS[agency])
        connector.close()


def test_http_refuses_incomplete_or_unknown_urls() -> None:
    with pytest.raises(ValueError, match=r"must give a URL for every agency; missing rvdk$"):
        build_connectors("http", {a: u for a, u in URLS.items() if a != "rvdk"})
    with pytest.raises(ValueError, match=r"GATEWAY_AGENCY_URLS: unknown agencies gemeente; expected politie"):
        build_connectors("http", {**URLS, "gemeente": "http://127.0.0.1:9100"})


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown connector kind"):
        build_connectors("grpc", {})  # type: ignore[arg-type]

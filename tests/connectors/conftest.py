"""Fixtures for the connector tests: simulated systems and a real HTTP stand-in under uvicorn."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors import SimulatedAgencySystem
from standins.agency import make_agency_app
from tests.connectors.samples import RecordingClient
from tests.live import serve


@pytest.fixture
def politie() -> SimulatedAgencySystem:
    """A fresh simulated politie back office."""
    return SimulatedAgencySystem("politie")


@pytest.fixture
def politie_url(politie: SimulatedAgencySystem) -> Iterator[str]:
    """The base URL of a real uvicorn server standing in for ``politie``."""
    with serve(make_agency_app(politie)) as url:
        yield url


@pytest.fixture
def client() -> Iterator[RecordingClient]:
    """A recording client, closed after the test."""
    with RecordingClient() as c:
        yield c

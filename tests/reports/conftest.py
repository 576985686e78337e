"""A running gateway (the end-to-end tests' own) with a case whose trail has a delivery and a refusal."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Gateway, gateway, shared_case

__all__ = ["gateway"]


@pytest.fixture(scope="module")
def case_id(gateway: Gateway) -> str:
    """A case politie opened and shared a melding in: allowed to veilig_thuis, refused to rvdk; then moved."""
    case = shared_case(gateway)
    gateway.move(case, "motorkapoverleg", by="politie")
    with gateway.agency("veilig_thuis") as c:
        r = c.post(
            f"/v1/cases/{case}/requests",
            json={"informationType": "melding", "purpose": "veiligheid_herstellen", "holder": "politie"},
        )
    assert r.status_code in (200, 403), r.text
    return case

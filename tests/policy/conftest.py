"""Fixtures for the policy tests: the real policies/ directory, a real engine, scratch copies."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.policy import EmbeddedEngine

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"


@pytest.fixture(scope="session")
def engine() -> Iterator[EmbeddedEngine]:
    """The embedded engine on the repository's policies (one interpreter)."""
    with EmbeddedEngine(POLICIES, pool_size=1) as engine:
        yield engine


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    """A scratch copy of policies/ that a test may change."""
    target = tmp_path / "policies"
    shutil.copytree(POLICIES, target)
    return target


def actor(agency: str) -> dict[str, str]:
    return {"agency": agency, "clientId": f"{agency}-system", "role": "agency_system"}


def case(
    flow: str = "acuut",
    step: str = "fysieke_veiligheid",
    *,
    zorg: bool = False,
    straf: bool = False,
    roles: tuple[str, ...] = ("slachtoffer", "pleger", "kind"),
    involved: tuple[str, ...] = (),
) -> dict[str, Any]:
    return {
        "flow": flow,
        "step": step,
        "tracks": {"zorg": zorg, "straf": straf},
        "subjectRoles": list(roles),
        "involved": list(involved),
    }


def share(
    sender: str,
    the_case: dict[str, Any],
    information_type: str,
    purpose: str,
    recipients: list[str],
    fields: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "action": "share",
        "actor": actor(sender),
        "case": the_case,
        "informationType": information_type,
        "purpose": purpose,
        "recipients": recipients,
        "payloadFields": fields if fields is not None else ["aard"],
    }


def request(
    requester: str, the_case: dict[str, Any], information_type: str, purpose: str, holder: str
) -> dict[str, Any]:
    return {
        "action": "request",
        "actor": actor(requester),
        "case": the_case,
        "informationType": information_type,
        "purpose": purpose,
        "holder": holder,
    }


Decide = Callable[[dict[str, Any]], Any]

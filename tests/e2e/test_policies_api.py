"""Policy authors' routes: what is loaded, and a reload that keeps the old revision on failure."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.settings import REPO_ROOT
from tests.e2e.conftest import AGENCIES, Gateway, start_gateway
from tests.live import serve


@pytest.fixture()
def own_policies(tmp_path: Path) -> Iterator[tuple[Gateway, Path]]:
    """A gateway loading its own copy of policies/, so a test may break it."""
    policy_dir = tmp_path / "policies"
    shutil.copytree(REPO_ROOT / "policies", policy_dir)
    runtime, sock = start_gateway(tmp_path / "data", policy_dir=policy_dir)
    with serve(create_app(runtime=runtime), sock=sock) as base:
        gw = Gateway(base=base, runtime=runtime)
        gw.register("author", "veilig_thuis", "policy_author")
        for agency in AGENCIES:
            gw.register(f"{agency}-system", agency, "agency_system")
        gw.register("auditor", "veilig_thuis", "auditor")
        yield gw, policy_dir
    runtime.close()


def test_policy_info(gateway: Gateway) -> None:
    with gateway.as_("author") as author:
        r = author.get("/v1/policies")
    assert r.status_code == 200
    body = r.json()
    assert body["engine"] == "embedded"
    assert body["revision"] == gateway.runtime.policy.current.revision
    assert body["revision"].startswith("sha256:")
    assert any(m.endswith("decision.rego") for m in body["modules"])
    assert body["loadedAt"].endswith("Z")


def test_reload_switches_revision_and_is_audited(own_policies: tuple[Gateway, Path]) -> None:
    gw, policy_dir = own_policies
    old = gw.runtime.policy.current.revision
    rego = policy_dir / "veiligdelen" / "decision" / "decision.rego"
    rego.write_text(rego.read_text() + "\n# Reviewed by the policy board.\n")
    with gw.as_("author") as author:
        r = author.post("/v1/policies/reload")
    assert r.status_code == 200, r.text
    assert r.json()["previousRevision"] == old
    assert r.json()["revision"] != old
    assert gw.runtime.policy.current.revision == r.json()["revision"]
    with gw.as_("auditor") as a:
        entries = a.get("/v1/audit/entries", params={"type": "policy"}).json()["entries"]
    assert entries[-1]["entry"]["refs"] == {"oldRevision": old, "newRevision": r.json()["revision"]}
    assert entries[-1]["entry"]["outcome"] == "loaded"


def test_reload_with_a_syntax_error_is_422_and_keeps_serving(own_policies: tuple[Gateway, Path]) -> None:
    gw, policy_dir = own_policies
    old = gw.runtime.policy.current.revision
    rego = policy_dir / "veiligdelen" / "decision" / "decision.rego"
    rego.write_text(rego.read_text() + "\nbroken if {\n")
    with gw.as_("author") as author:
        r = author.post("/v1/policies/reload")
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["revision"] == old
    assert gw.runtime.policy.current.revision == old
    assert gw.open_case()  # decisions still work on the old revision


def test_reload_with_failing_tests_is_422(own_policies: tuple[Gateway, Path]) -> None:
    gw, policy_dir = own_policies
    old = gw.runtime.policy.current.revision
    data = policy_dir / "veiligdelen" / "facts" / "data.json"
    # Let om open cases: the Rego tests of baseline rule 7 must catch it.
    data.write_text(
        data.read_text().replace(
            '"caseOpeners": ["politie", "veilig_thuis"]', '"caseOpeners": ["politie", "veilig_thuis", "om"]'
        )
    )
    with gw.as_("author") as author:
        r = author.post("/v1/policies/reload")
    assert r.status_code == 422, r.text
    assert "failed" in r.json()["detail"]
    assert r.json()["errors"]
    assert gw.runtime.policy.current.revision == old

"""The whole gateway over HTTP with GATEWAY_POLICY_ENGINE=opa, against the STAND-IN for OPA in its own
process: shares decided by OPA, refused (not a 500) when OPA is down or slow, and reloads."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.policy import OpaEngine, policy_revision
from tests.e2e.conftest import AGENCIES, Gateway, start_gateway
from tests.live import serve
from tests.policy.conftest import POLICIES
from tests.policy.standin import StandIn, run_standin

MELDING = {"datumTijd": "2026-11-28T02:14:00Z", "locatie": "fictief adres", "aard": "fysiek geweld"}
SHARE = {
    "informationType": "melding",
    "purpose": "veiligheid_herstellen",
    "recipients": ["veilig_thuis"],
    "payload": MELDING,
}


@contextmanager
def opa_gateway(tmp_path: Path, standin: StandIn, **settings: Any) -> Iterator[Gateway]:
    runtime, sock = start_gateway(tmp_path / "data", policy_engine="opa", opa_url=standin.url, **settings)
    with serve(create_app(runtime=runtime), sock=sock) as base:
        gw = Gateway(base=base, runtime=runtime)
        for agency in AGENCIES:
            gw.register(f"{agency}-system", agency, "agency_system")
        gw.register("auditor", "veilig_thuis", "auditor")
        gw.register("author", "veilig_thuis", "policy_author")
        yield gw
        gw.http.close()
    runtime.close()


def _share(gw: Gateway, case_id: str) -> httpx.Response:
    with gw.agency("politie") as c:
        return c.post(f"/v1/cases/{case_id}/shares", json=SHARE)


def _exchange_entries(gw: Gateway, case_id: str) -> list[dict[str, Any]]:
    with gw.as_("auditor") as a:
        r = a.get("/v1/audit/entries", params={"caseId": case_id, "type": "exchange"})
    assert r.status_code == 200, r.text
    return [e["entry"] for e in r.json()["entries"]]


def _delivered(gw: Gateway) -> int:
    return len(gw.runtime.connectors["veilig_thuis"].received)  # type: ignore[attr-defined]


def test_the_gateway_decides_with_opa(tmp_path: Path) -> None:
    with run_standin() as standin, opa_gateway(tmp_path, standin) as gw:
        assert isinstance(gw.runtime.policy.current, OpaEngine)
        with gw.as_("author") as author:
            info = author.get("/v1/policies").json()
        assert info["engine"] == "opa"
        assert info["revision"] == policy_revision(POLICIES)
        case_id = gw.open_case()
        r = _share(gw, case_id)
        assert r.status_code == 200, r.text
        result = r.json()["results"][0]
        assert result["allowed"] is True
        assert result["messageId"]
        assert r.json()["policyRevision"] == policy_revision(POLICIES)
        assert _delivered(gw) == 1


@pytest.mark.parametrize(("fault", "code"), [("down", "engine_unavailable"), ("slow", "engine_timeout")])
def test_with_opa_down_or_slow_a_share_is_refused_and_audited(tmp_path: Path, fault: str, code: str) -> None:
    # A decision timeout generous enough for a busy machine, and a delay far past it (5x).
    with run_standin() as standin, opa_gateway(tmp_path, standin, opa_timeout=2.0) as gw:
        case_id = gw.open_case()
        delivered = _delivered(gw)
        if fault == "down":
            standin.process.terminate()
            standin.process.wait(timeout=10)
        else:
            standin.faults("delay", delay=10.0)
        r = _share(gw, case_id)
        assert r.status_code == 200, r.text  # a decision, not a 500
        [result] = r.json()["results"]
        assert result["recipient"] == "veilig_thuis"
        assert result["allowed"] is False
        assert [reason["code"] for reason in result["reasons"]] == [code]
        assert "messageId" not in result or result["messageId"] is None
        assert _delivered(gw) == delivered  # nothing reached the recipient
        entry = _exchange_entries(gw, case_id)[-1]
        assert entry["counterpart"] == "veilig_thuis"
        assert entry["decision"]["allowed"] is False
        assert [reason["code"] for reason in entry["decision"]["reasons"]] == [code]


def _annotate(policy_dir: Path, note: str) -> Path:
    """A new revision that decides alike: a comment in the decision module."""
    rego = policy_dir / "veiligdelen" / "decision" / "decision.rego"
    rego.write_text(rego.read_text(encoding="utf-8") + f"\n# {note}\n", encoding="utf-8")
    return rego


def _served_module(standin: StandIn) -> str:
    [module] = [p["raw"] for p in standin.policies() if p["id"].endswith("decision.rego")]
    return str(module)


def test_reload_through_opa_switches_or_keeps_the_old_revision(tmp_path: Path) -> None:
    policy_dir = tmp_path / "policies"
    shutil.copytree(POLICIES, policy_dir)
    with run_standin() as standin, opa_gateway(tmp_path, standin, policy_dir=policy_dir) as gw:
        old = gw.runtime.policy.current.revision
        _annotate(policy_dir, "Reviewed by the policy board.")
        with gw.as_("author") as author:
            r = author.post("/v1/policies/reload")
        assert r.status_code == 200, r.text
        new = r.json()["revision"]
        assert new == policy_revision(policy_dir) != old
        assert gw.runtime.policy.current.revision == new
        assert isinstance(gw.runtime.policy.current, OpaEngine)
        assert "Reviewed by the policy board." in _served_module(standin)
        case_id = gw.open_case()
        assert _share(gw, case_id).json()["policyRevision"] == new

        # OPA cannot decide with the next revision: 422, and OPA gets the serving revision back.
        _annotate(policy_dir, "Second review.")
        standin.faults("undefined")
        with gw.as_("author") as author:
            r = author.post("/v1/policies/reload")
        standin.faults("none")
        assert r.status_code == 422, r.text
        assert r.json()["revision"] == new
        assert gw.runtime.policy.current.revision == new
        assert "Second review." not in _served_module(standin)
        assert "Reviewed by the policy board." in _served_module(standin)
        shared = _share(gw, case_id).json()
        assert shared["policyRevision"] == new
        assert shared["results"][0]["allowed"] is True

        # A revision that does not compile never reaches OPA.
        before = {p["id"]: p["raw"] for p in standin.policies()}
        rego = _annotate(policy_dir, "Third review.")
        rego.write_text(rego.read_text(encoding="utf-8") + "\nbroken if {\n", encoding="utf-8")
        with gw.as_("author") as author:
            r = author.post("/v1/policies/reload")
        assert r.status_code == 422
        assert {p["id"]: p["raw"] for p in standin.policies()} == before
        with gw.as_("auditor") as a:
            entries = a.get("/v1/audit/entries", params={"type": "policy"}).json()["entries"]
        assert [e["entry"]["outcome"] for e in entries[-3:]] == ["loaded", "engine_failed", "check_failed"]

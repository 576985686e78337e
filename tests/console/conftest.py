"""A gateway app in-process (SQLite in a temp dir, embedded Rego) with one real case to look at."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from connectors import simulated_connectors
from gateway.app import create_app
from gateway.auth import ClientRegistry, generate_keypair, make_client_assertion
from gateway.console import mint_login_token
from gateway.runtime import Runtime
from gateway.settings import Settings

BASE = "http://127.0.0.1:8000"
BSN_SLACHTOFFER, BSN_PLEGER = "999990019", "999990020"


@dataclass
class Console:
    runtime: Runtime
    client: TestClient
    case_id: str

    def login(self, agency: str = "veilig_thuis", role: str = "auditor") -> TestClient:
        """A fresh browser logged in as ``role`` of ``agency``."""
        browser = TestClient(self.client.app, base_url=BASE)
        token = mint_login_token(self.runtime.db, agency, role)
        r = browser.get(f"/console/login?token={token}", follow_redirects=False)
        assert r.status_code == 303, r.text
        return browser


def csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def make_runtime(data_dir: Path) -> Runtime:
    return Runtime(Settings(data_dir=data_dir), connectors=simulated_connectors())


def share_case(rt: Runtime, client: TestClient) -> str:
    """politie opens a case and shares a melding with veilig_thuis (allowed) and rvdk (refused)."""
    private, public = generate_keypair("Ed25519")
    ClientRegistry(rt.sessions).register("politie-system", "politie", "agency_system", public)
    assertion = make_client_assertion("politie-system", private, f"{BASE}/oauth2/token")
    r = client.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )
    assert r.status_code == 200, r.text
    auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
    subjects = [{"role": "slachtoffer", "bsn": BSN_SLACHTOFFER}, {"role": "pleger", "bsn": BSN_PLEGER}]
    r = client.post("/v1/cases", json={"flow": "acuut", "subjects": subjects}, headers=auth)
    assert r.status_code == 201, r.text
    case_id = str(r.json()["caseId"])
    r = client.post(
        f"/v1/cases/{case_id}/shares",
        json={
            "informationType": "melding",
            "purpose": "veiligheid_herstellen",
            "recipients": ["veilig_thuis", "rvdk"],
            "payload": {"aard": "fysiek geweld"},
        },
        headers=auth,
    )
    assert r.status_code == 200, r.text
    return case_id


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    rt = make_runtime(tmp_path_factory.mktemp("console"))
    client = TestClient(create_app(runtime=rt), base_url=BASE)
    case_id = share_case(rt, client)
    yield Console(rt, client, case_id)
    rt.close()

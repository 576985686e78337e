"""A whole gateway over real HTTP: SQLite in a temp dir, embedded Rego, simulated agency systems."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors import simulated_connectors
from gateway.app import create_app
from gateway.auth import ClientRegistry, generate_keypair, make_client_assertion
from gateway.runtime import Runtime
from gateway.settings import Settings
from tests.databases import PG_ADMIN_URL as PG_ADMIN_URL
from tests.databases import fresh_pg_database as fresh_pg_database
from tests.live import reserve_socket, serve

AGENCIES = ["politie", "veilig_thuis", "om", "reclassering", "rvdk"]
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# RvIG test BSNs (999990xxx): fictional, valid under the elfproef.
BSN_SLACHTOFFER, BSN_PLEGER, BSN_KIND = "999990019", "999990020", "999990032"


@dataclass
class Gateway:
    """A running gateway and the keys of its registered clients."""

    base: str
    runtime: Runtime
    keys: dict[str, bytes] = field(default_factory=dict)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    @property
    def token_url(self) -> str:
        return f"{self.base}/oauth2/token"

    def register(self, client_id: str, agency: str, role: str, kind: str = "Ed25519") -> None:
        private_pem, public_pem = generate_keypair(kind)  # type: ignore[arg-type]
        ClientRegistry(self.runtime.sessions).register(client_id, agency, role, public_pem)
        self.keys[client_id] = private_pem

    def token_response(self, client_id: str, **assertion_kw: Any) -> httpx.Response:
        assertion = make_client_assertion(client_id, self.keys[client_id], self.token_url, **assertion_kw)
        return self.http.post(
            self.token_url,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            },
        )

    def token(self, client_id: str) -> str:
        r = self.token_response(client_id)
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def as_(self, client_id: str) -> httpx.Client:
        """An HTTP client that calls as ``client_id``."""
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.token(client_id)}"}, timeout=30
        )

    def agency(self, agency: str) -> httpx.Client:
        return self.as_(f"{agency}-system")

    def open_case(self, flow: str = "acuut", with_kind: bool = True, step: str | None = None) -> str:
        subjects = [{"role": "slachtoffer", "bsn": BSN_SLACHTOFFER}, {"role": "pleger", "bsn": BSN_PLEGER}]
        if with_kind:
            subjects.append({"role": "kind", "bsn": BSN_KIND})
        body: dict[str, Any] = {"flow": flow, "subjects": subjects}
        if step:
            body["step"] = step
        with self.agency("politie" if flow == "acuut" else "veilig_thuis") as c:
            r = c.post("/v1/cases", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["caseId"])

    def move(self, case_id: str, step: str, flow: str | None = None, by: str = "veilig_thuis") -> None:
        body = {"step": step} | ({"flow": flow} if flow else {})
        with self.agency(by) as c:
            r = c.post(f"/v1/cases/{case_id}/transitions", json=body)
        assert r.status_code == 200, r.text

    def track(self, case_id: str, track: str, is_open: bool = True) -> None:
        by = "veilig_thuis" if track == "zorg" else "politie"
        with self.agency(by) as c:
            r = c.put(f"/v1/cases/{case_id}/tracks/{track}", json={"open": is_open})
        assert r.status_code == 200, r.text


def shared_case(gw: Gateway) -> str:
    """A case politie opened and shared a melding in, with veilig_thuis and rvdk: a trail to look at."""
    case_id = gw.open_case()
    with gw.agency("politie") as c:
        r = c.post(
            f"/v1/cases/{case_id}/shares",
            json={
                "informationType": "melding",
                "purpose": "veiligheid_herstellen",
                "recipients": ["veilig_thuis", "rvdk"],
                "payload": {"aard": "fysiek geweld"},
            },
        )
    assert r.status_code == 200, r.text
    return case_id


# The PostgreSQL helpers live with the db_url fixture (tests/databases.py); kept importable from here.


def fuzz_settings() -> dict[str, Any]:
    """Settings for a gateway under a fuzzer: tokens that outlive the run, limits it does not reach."""
    return {
        "access_token_ttl": 3600,
        "rate_limit": "100000/second",
        "auth_failures_per_client": "100000/minute",
        "auth_failures_per_address": "100000/minute",
    }


def start_gateway(data_dir: Path, **settings_kw: Any) -> tuple[Runtime, socket.socket]:
    """A runtime whose settings name the port of an already bound socket (no race for the port)."""
    sock = reserve_socket()
    settings = Settings(data_dir=data_dir, port=sock.getsockname()[1], **settings_kw)
    return Runtime(settings, connectors=simulated_connectors()), sock


@contextmanager
def running_gateway(data_dir: Path, **settings_kw: Any) -> Iterator[Gateway]:
    """A gateway served over HTTP with every agency's system and officer, an auditor and an author."""
    runtime, sock = start_gateway(data_dir, **settings_kw)
    app = create_app(runtime=runtime)
    with serve(app, sock=sock) as base:
        gw = Gateway(base=base, runtime=runtime)
        for agency in AGENCIES:
            gw.register(f"{agency}-system", agency, "agency_system")
            gw.register(f"{agency}-fg", agency, "privacy_officer")
        gw.register("auditor", "veilig_thuis", "auditor")
        gw.register("author", "veilig_thuis", "policy_author")
        yield gw
        gw.http.close()
    runtime.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("gateway")) as gw:
        yield gw


@pytest.fixture(scope="module")
def gateway_on_each_database(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """`gateway` on SQLite, then on PostgreSQL (``db_url``), for a storage test module: its own
    ``gateway`` fixture returns this one (tests/e2e/test_data_at_rest.py)."""
    with running_gateway(tmp_path_factory.mktemp("gateway"), database_url=db_url) as gw:
        yield gw

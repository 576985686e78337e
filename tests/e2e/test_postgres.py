"""The same path on PostgreSQL: migrations, cases, shares, inbox and a verifiable audit log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from audit import verify_log
from gateway.app import create_app
from tests.e2e.conftest import AGENCIES, Gateway, fresh_pg_database, start_gateway
from tests.live import serve


@pytest.fixture()
def pg_url() -> Iterator[str]:
    with fresh_pg_database() as (url, _admin, _name):
        yield url


def test_gateway_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    runtime, sock = start_gateway(tmp_path, database_url=pg_url)
    assert runtime.db.dialect.name == "postgresql"
    with serve(create_app(runtime=runtime), sock=sock) as base:
        gw = Gateway(base=base, runtime=runtime)
        for agency in AGENCIES:
            gw.register(f"{agency}-system", agency, "agency_system")
        case_id = gw.open_case()
        with gw.agency("politie") as c:
            r = c.post(
                f"/v1/cases/{case_id}/shares",
                json={
                    "informationType": "melding",
                    "purpose": "veiligheid_herstellen",
                    "recipients": ["veilig_thuis", "om"],
                    "payload": {"aard": "fysiek geweld"},
                },
            )
        results = {x["recipient"]: x for x in r.json()["results"]}
        assert results["veilig_thuis"]["allowed"] is True
        assert results["om"]["allowed"] is False
        with gw.agency("veilig_thuis") as vt:
            inbox = vt.get("/v1/inbox").json()["messages"]
            assert [m["payload"] for m in inbox] == [{"aard": "fysiek geweld"}]
            assert vt.post(f"/v1/inbox/{inbox[0]['messageId']}/ack").status_code == 204
        gw.http.close()
    result = verify_log(runtime.audit, runtime.signer.verifier_key())
    assert result.ok, result.reason
    assert result.size >= 4  # case.open, two share decisions, ack
    with runtime.db.connect() as conn:
        triggers = conn.execute(
            sa.text("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'audit%'")
        ).scalar()
    assert triggers and triggers >= 5
    runtime.close()

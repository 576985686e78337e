"""No audit, no exchange, with the database itself refusing the audit write (not a stubbed store).

A trigger on the gateway's own SQLite file makes every INSERT into audit_entries fail, as a full disk
or a lost database would: shares and requests fail with a problem document and nothing is delivered,
also when many arrive at once and are committed as one group. Once the database accepts writes again
the log goes on without a gap and verifies.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from audit import verify_log
from gateway.app import create_app
from tests.e2e.conftest import Gateway, start_gateway
from tests.live import serve

SHARE = {
    "informationType": "melding",
    "purpose": "veiligheid_herstellen",
    "recipients": ["veilig_thuis"],
    "payload": {"aard": "fysiek geweld"},
}


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gateway]:
    runtime, sock = start_gateway(tmp_path / "data")
    try:
        with serve(create_app(runtime=runtime), sock=sock) as base:
            g = Gateway(base=base, runtime=runtime)
            for agency in ("politie", "veilig_thuis"):
                g.register(f"{agency}-system", agency, "agency_system")
            yield g
            g.http.close()
    finally:
        runtime.close()


def refuse_audit_writes(gw: Gateway, refuse: bool) -> None:
    db = sqlite3.connect(gw.runtime.settings.data_dir / "gateway.db")
    if refuse:
        db.execute(
            "CREATE TRIGGER disk_full BEFORE INSERT ON audit_entries "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    else:
        db.execute("DROP TRIGGER disk_full")
    db.commit()
    db.close()


def test_a_refused_audit_write_stops_every_exchange(gw: Gateway) -> None:
    case_id = gw.open_case()
    size = gw.runtime.audit.size()
    received = len(gw.runtime.connectors["veilig_thuis"].received)
    refuse_audit_writes(gw, True)
    with gw.agency("politie") as politie:
        token = politie.headers["Authorization"]

        def share(_: int) -> httpx.Response:
            return httpx.post(
                f"{gw.base}/v1/cases/{case_id}/shares",
                json=SHARE,
                headers={"Authorization": token},
                timeout=30,
            )

        with ThreadPoolExecutor(8) as pool:  # concurrent calls share one group commit
            answers = list(pool.map(share, range(8)))
    for r in answers:
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "nothing was done" in r.json()["detail"]
    assert len(gw.runtime.connectors["veilig_thuis"].received) == received
    with gw.agency("veilig_thuis") as vt:
        assert vt.get("/v1/inbox").json()["messages"] == []
    assert gw.runtime.audit.size() == size

    refuse_audit_writes(gw, False)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(share, range(8)))
    assert [r.status_code for r in answers] == [200] * 8
    assert len(gw.runtime.connectors["veilig_thuis"].received) == received + 8
    # Each share: its decision, and (veilig_thuis takes pushes) the entry of its push; nothing else.
    messages = {r.json()["results"][0]["messageId"] for r in answers}
    new = [e.entry for e in gw.runtime.audit.entries(size, gw.runtime.audit.size())]
    decided = [e for e in new if (e["action"], e["outcome"]) == ("share", "authorised")]
    pushed = [e for e in new if (e["type"], e["action"], e["outcome"]) == ("delivery", "push", "delivered")]
    assert len(new) == len(decided) + len(pushed), [(e["action"], e["outcome"]) for e in new]
    assert sorted(e["refs"]["messageId"] for e in decided) == sorted(messages)
    assert sorted(e["refs"]["messageId"] for e in pushed) == sorted(messages)
    result = verify_log(gw.runtime.audit, gw.runtime.signer.verifier_key())
    assert result.ok, result.reason

"""Data at rest (issue 9): BSNs and waiting messages sealed, subjects per grant, erased by ack and sweep.

Real parts: the gateway over HTTP on SQLite, the embedded Rego engine, the ``gateway`` command in its own
process; the last test greps every byte of a demo's data directory for its BSNs and payload markers.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors import SubjectIdentity
from gateway.db import utcnow
from gateway.errors import StartupRefused
from gateway.models import CaseKey, Message, Subject
from gateway.runtime import Runtime
from gateway.sealing import SEALING_KEY_FILE, Sealer, Unsealable
from gateway.services.messages import stored_delivery
from gateway.services.retention import sweep
from gateway.settings import Settings
from tests.e2e.conftest import BSN_KIND, BSN_PLEGER, BSN_SLACHTOFFER, Gateway
from tests.e2e.test_exchanges import result_for, share

GATEWAY = [sys.executable, "-m", "gateway.cli"]
MARKER = "kenmerk-7f3a9c-geheim"
"""A payload value no file of the gateway may hold in clear."""


def test_sealed_values_open_only_in_their_place_and_under_their_key() -> None:
    sealer, other = Sealer(os.urandom(32)), Sealer(os.urandom(32))
    sealed = sealer.seal_message("m-1", "politie", {"payload": {"a": MARKER}, "subjects": []})
    assert MARKER.encode() not in sealed
    assert sealer.open_message("m-1", "politie", sealed) == {"payload": {"a": MARKER}, "subjects": []}
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    for attempt in (
        lambda: sealer.open_message("m-1", "om", sealed),  # another recipient
        lambda: sealer.open_message("m-2", "politie", sealed),  # another message's row
        lambda: other.open_message("m-1", "politie", sealed),  # another key
        lambda: sealer.open_message("m-1", "politie", bytes(tampered)),
        lambda: sealer.open_message("m-1", "politie", b"\x01short"),
    ):
        with pytest.raises(Unsealable):
            attempt()

    key, wrapped = sealer.new_case_key("case-a")
    assert sealer.unwrap_case_key("case-a", wrapped) == key
    with pytest.raises(Unsealable):
        sealer.unwrap_case_key("case-b", wrapped)  # a case key moved to another case
    with pytest.raises(Unsealable):
        other.unwrap_case_key("case-a", wrapped)
    identity = Sealer.seal_identity(key, "case-a", 0, "pleger", BSN_PLEGER)
    assert BSN_PLEGER.encode() not in identity
    assert Sealer.open_identity(key, "case-a", 0, "pleger", identity) == BSN_PLEGER
    for case_id, position, role in (("case-b", 0, "pleger"), ("case-a", 1, "pleger"), ("case-a", 0, "kind")):
        with pytest.raises(Unsealable):
            Sealer.open_identity(key, case_id, position, role, identity)


def _inbox(gw: Gateway, agency: str) -> dict[str, Any]:
    with gw.agency(agency) as c:
        r = c.get("/v1/inbox")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _message(gw: Gateway, message_id: str) -> Any:
    with gw.runtime.db.connect() as conn:
        return conn.execute(sa.select(Message.__table__).where(Message.message_id == message_id)).one()


@pytest.fixture(scope="module")
def gateway(gateway_on_each_database: Gateway) -> Gateway:
    """This module's gateway, once on SQLite and once on PostgreSQL: sealing, erasure and the sweep
    are storage (tests/databases.py)."""
    return gateway_on_each_database


@pytest.fixture(scope="module")
def findings(gateway: Gateway) -> dict[str, Any]:
    """A case in the acute investigation step where Veilig Thuis shared its findings with politie and
    the RvdK: ``{case, politie, rvdk}`` (message ids)."""
    case_id = gateway.open_case(step="onderzoek")
    out: dict[str, Any] = {"case": case_id}
    for recipient, purpose in (("rvdk", "onderzoek_kinderbescherming"), ("politie", "veiligheid_herstellen")):
        r = share(
            gateway,
            "veilig_thuis",
            case_id,
            informationType="onderzoeksbevindingen",
            purpose=purpose,
            recipients=[recipient],
            payload={"bevindingen": MARKER, "letsel": "geen", "bsn:pleger": "999990020"},
        )
        assert r.status_code == 200, r.text
        result = result_for(r, recipient)
        assert result["allowed"] is True, result["reasons"]
        out[recipient] = result["messageId"]
    return out


def test_a_recipient_identifies_only_the_roles_its_grant_names(
    gateway: Gateway, findings: dict[str, Any]
) -> None:
    expected = {
        "rvdk": [{"role": "kind", "bsn": BSN_KIND}],  # the child, not the parents
        "politie": [{"role": "slachtoffer", "bsn": BSN_SLACHTOFFER}, {"role": "pleger", "bsn": BSN_PLEGER}],
    }
    for agency, subjects in expected.items():
        (m,) = [m for m in _inbox(gateway, agency)["messages"] if m["messageId"] == findings[agency]]
        assert m["subjects"] == subjects
        assert m["payload"]["bevindingen"] == MARKER
        assert "bsn:pleger" not in m["payload"]  # a payload key never poses as an identity
        with gateway.runtime.db.connect() as conn:
            delivery = stored_delivery(
                gateway.runtime, conn, findings[agency], "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
            )
        assert delivery is not None
        assert delivery.subjects == tuple(SubjectIdentity(s["role"], s["bsn"]) for s in subjects)
        assert delivery.payload == m["payload"]

    # At rest: no clear payload, nothing readable in the sealed bytes, the grant's term to keep it.
    row = _message(gateway, findings["rvdk"])
    assert row.payload is None and row.sealed is not None
    assert MARKER.encode() not in row.sealed and BSN_KIND.encode() not in row.sealed
    assert row.retain_until - row.received_at == dt.timedelta(days=30)
    with gateway.runtime.db.connect() as conn:
        identities = conn.execute(
            sa.select(Subject.identity).where(Subject.case_id == findings["case"])
        ).scalars()
        for sealed in identities:
            assert sealed is not None
            assert not any(b.encode() in sealed for b in (BSN_KIND, BSN_PLEGER, BSN_SLACHTOFFER))


def test_a_message_that_does_not_open_is_listed_unreadable(gateway: Gateway) -> None:
    case_id = gateway.open_case(step="onderzoek")
    r = share(
        gateway,
        "veilig_thuis",
        case_id,
        informationType="onderzoeksbevindingen",
        purpose="onderzoek_kinderbescherming",
        recipients=["rvdk"],
        payload={"bevindingen": "x"},
    )
    message_id = result_for(r, "rvdk")["messageId"]
    row = _message(gateway, message_id)
    with gateway.runtime.db.begin() as conn:  # damaged at rest: one byte of the tag flipped
        damaged = row.sealed[:-1] + bytes([row.sealed[-1] ^ 1])
        conn.execute(sa.update(Message).where(Message.message_id == message_id).values(sealed=damaged))
    inbox = _inbox(gateway, "rvdk")
    assert message_id in [m["messageId"] for m in inbox["unreadable"]]
    assert message_id not in [m["messageId"] for m in inbox["messages"]]


def _entries(gw: Gateway, **match: str) -> list[dict[str, Any]]:
    entries = [e.entry for e in gw.runtime.audit.iter_entries()]
    return [e for e in entries if all(e.get(k) == v for k, v in match.items())]


def test_ack_erases_and_the_sweep_erases_expired_messages_and_idle_identities(
    gateway: Gateway, findings: dict[str, Any]
) -> None:
    with gateway.agency("politie") as c:
        assert c.post(f"/v1/inbox/{findings['politie']}/ack").status_code in (200, 204)
    row = _message(gateway, findings["politie"])
    assert row.sealed is None and row.payload is None and row.erased_at is not None
    with gateway.runtime.db.connect() as conn:
        assert stored_delivery(gateway.runtime, conn, findings["politie"], "x") is None

    rt = gateway.runtime
    assert sweep(rt, now=utcnow()).messages == 0  # nothing is due yet
    later = utcnow() + dt.timedelta(days=31)  # past the findings' 30 days, within the case's 180
    assert sweep(rt, now=later).messages >= 1
    row = _message(gateway, findings["rvdk"])
    assert row.sealed is None and row.erased_at is not None and row.acked_at is None
    (erased,) = [
        e
        for e in _entries(gateway, type="retention", outcome="erased")
        if e["refs"]["messageId"] == findings["rvdk"]
    ]
    assert erased["refs"]["why"] == "retention_term" and erased["counterpart"] == "rvdk"
    assert findings["rvdk"] not in [m["messageId"] for m in _inbox(gateway, "rvdk")["messages"]]
    assert sweep(rt, now=later).messages == 0  # idempotent

    idle = utcnow() + dt.timedelta(days=181)
    assert sweep(rt, now=idle).cases >= 1
    with rt.db.connect() as conn:
        assert conn.execute(sa.select(CaseKey).where(CaseKey.case_id == findings["case"])).first() is None
        identities = conn.execute(sa.select(Subject.identity).where(Subject.case_id == findings["case"]))
        assert set(identities.scalars()) == {None}
    (shredded,) = [
        e
        for e in _entries(gateway, type="retention", outcome="identities_erased")
        if e["caseId"] == findings["case"]
    ]
    assert len(shredded["subjects"]) == 3 and all(len(p) > 20 for p in shredded["subjects"])  # pseudonyms
    assert not {BSN_KIND, BSN_PLEGER, BSN_SLACHTOFFER} & set(json.dumps(shredded).split('"'))

    # A share after the erasure still goes, without identities: there are none left to give.
    r = share(
        gateway,
        "veilig_thuis",
        findings["case"],
        informationType="onderzoeksbevindingen",
        purpose="onderzoek_kinderbescherming",
        recipients=["rvdk"],
        payload={"letsel": "geen"},
    )
    new_id = result_for(r, "rvdk")["messageId"]
    (m,) = [m for m in _inbox(gateway, "rvdk")["messages"] if m["messageId"] == new_id]
    assert m["subjects"] == []


def _gateway_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWAY_DATA_DIR": str(data_dir)}
    env.pop("GATEWAY_DEBUG", None)
    return subprocess.run(
        [*GATEWAY, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_start_is_refused_without_the_key_of_sealed_rows_and_clear_rows_get_sealed(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    rt = Runtime(settings)
    key_file = tmp_path / SEALING_KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    sealer = rt.sealer
    now = utcnow()
    with rt.db.begin() as conn:  # a case and a message as a gateway before sealing stored them
        conn.execute(
            sa.text(
                "INSERT INTO cases (case_id, flow, step, zorg, straf, opened_by, involved, created_at,"
                " updated_at) VALUES ('c-legacy', 'acuut', 'onderzoek', 0, 0, 'politie', '[]', :t, :t)"
            ),
            {"t": now},
        )
        conn.execute(
            sa.insert(Message).values(
                message_id="m-legacy",
                share_id="s",
                case_id="c-legacy",
                recipient="rvdk",
                sender="veilig_thuis",
                information_type="melding",
                purpose="onderzoek_kinderbescherming",
                legal_basis="b",
                payload={"aard": MARKER},
                received_at=now,
            )
        )
    rt.close()
    rt = Runtime(settings)  # the restart seals the clear row
    row = rt.db.connect().execute(sa.select(Message.__table__).where(Message.message_id == "m-legacy")).one()
    assert row.payload is None and rt.sealer.open_message("m-legacy", "rvdk", row.sealed)["payload"] == {
        "aard": MARKER
    }
    assert row.retain_until is not None
    rt.close()
    del sealer

    key_file.unlink()
    with pytest.raises(StartupRefused, match=r"sealed rows but the sealing key .* is missing"):
        Runtime(settings)
    out = _gateway_cli("retention", "sweep", data_dir=tmp_path)
    assert out.returncode != 0
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: ") and "sealing key" in line and "Traceback" not in out.stderr
    assert not key_file.exists()  # never silently made anew

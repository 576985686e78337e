"""Issue 11 items 2 and 4: every activated revision archived, every decision's input recorded with its
entry, and `gateway audit explain` deciding a logged decision again on exactly that revision and input.

One gateway for the module, on its own copy of policies/ (a reload changes it) and an in-thread engine
(no worker processes); the tests run in file order and share its log.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import gateway.runtime
from connectors import simulated_connectors
from gateway.app import create_app
from gateway.cli import app as cli_app
from gateway.models import DecisionInput, PolicyRevision, Share
from gateway.policy import EmbeddedEngine, read_policy
from gateway.runtime import Runtime
from gateway.services import policy_archive
from gateway.services.trail import fields_digest
from gateway.settings import REPO_ROOT, Settings
from tests.e2e.conftest import (
    AGENCIES,
    BSN_KIND,
    BSN_PLEGER,
    BSN_SLACHTOFFER,
    Gateway,
    fresh_pg_database,
)
from tests.live import reserve_socket, serve

FACTS = Path("veiligdelen") / "facts" / "data.json"
PAYLOAD = {"aard": "fysiek geweld", "meldingstekst": "Buren melden geschreeuw.", "locatie": "fictief adres"}
MELDING_BASIS = ("melding", "veilig_thuis", "politie")
"""The grant row the share uses: ``grants[informationType][recipient][sender]``."""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("archive")
    policy_dir = root / "policies"
    shutil.copytree(REPO_ROOT / "policies", policy_dir)
    sock = reserve_socket()
    settings = Settings(data_dir=root / "data", port=sock.getsockname()[1], policy_dir=policy_dir)
    engine = EmbeddedEngine(policy_dir, pool_size=1, timeout=None)
    runtime = Runtime(settings, connectors=simulated_connectors(), policy=engine)
    with serve(create_app(runtime=runtime), sock=sock) as base:
        g = Gateway(base=base, runtime=runtime)
        for agency in AGENCIES:
            g.register(f"{agency}-system", agency, "agency_system")
        g.register("auditor", "veilig_thuis", "auditor")
        g.register("author", "veilig_thuis", "policy_author")
        yield g
        g.http.close()
    runtime.close()


def _share(g: Gateway, case_id: str, recipients: list[str]) -> Any:
    with g.agency("politie") as c:
        return c.post(
            f"/v1/cases/{case_id}/shares",
            json={
                "informationType": "melding",
                "purpose": "veiligheid_herstellen",
                "recipients": recipients,
                "payload": PAYLOAD,
            },
        )


def _entries(g: Gateway) -> list[tuple[int, dict[str, Any]]]:
    size = g.runtime.audit.size()
    return [(e.index, e.entry) for e in g.runtime.audit.entries(0, size)]


def _explain(g: Gateway, *args: str) -> Any:
    env = {"GATEWAY_DATA_DIR": str(g.runtime.settings.data_dir)}
    return CliRunner().invoke(cli_app, ["audit", "explain", *args], env=env)


@pytest.fixture(scope="module")
def exchanged(gw: Gateway) -> dict[str, Any]:
    """A few real exchanges: a case opened, a share to two recipients (one refused), a request."""
    case_id = gw.open_case()
    r = _share(gw, case_id, ["veilig_thuis", "reclassering"])
    assert r.status_code == 200, r.text
    structural = gw.open_case(flow="structureel")
    gw.move(structural, "informatie_combineren")
    with gw.agency("veilig_thuis") as vt:
        req = vt.post(
            f"/v1/cases/{structural}/requests",
            json={
                "informationType": "strafrechtelijke_informatie",
                "purpose": "veiligheid_beoordelen",
                "holder": "politie",
            },
        )
    assert req.status_code == 200, req.text
    share_index = next(
        i
        for i, e in _entries(gw)
        if e.get("action") == "share"
        and e.get("counterpart") == "veilig_thuis"
        and e.get("caseId") == case_id
    )
    return {"case": case_id, "share": share_index, "revision": gw.runtime.policy.current.revision}


def test_every_decision_entry_names_an_input_stored_with_it(gw: Gateway, exchanged: dict[str, Any]) -> None:
    decided = [(i, e) for i, e in _entries(gw) if "decision" in e]
    assert {e["action"] for _, e in decided} >= {"case.open", "share", "request"}
    with gw.runtime.sessions() as s:
        rows = {r.digest: r for r in s.scalars(sa.select(DecisionInput))}
    for index, entry in decided:
        digest = entry["decision"]["inputDigest"]
        row = rows[digest]  # every named input is stored
        assert digest == "sha256:" + hashlib.sha256(row.input.encode("utf-8")).hexdigest(), index
        assert row.action == entry["action"]
        for secret in (BSN_SLACHTOFFER, BSN_PLEGER, BSN_KIND, *PAYLOAD.values()):
            assert secret not in row.input
    share_entries = [e for _, e in decided if e["action"] == "share" and e.get("caseId") == exchanged["case"]]
    # One decision over two recipients: one input, named by both entries; each entry its own fields.
    assert len({e["decision"]["inputDigest"] for e in share_entries}) == 1
    by_recipient = {e["counterpart"]: e["decision"] for e in share_entries}
    assert by_recipient["veilig_thuis"]["allowed"] is True
    assert by_recipient["reclassering"]["allowed"] is False
    assert by_recipient["reclassering"]["fieldsDigest"] == fields_digest([])
    # The log names no field (nor its content); the input does name the payload's fields.
    assert "meldingstekst" not in json.dumps(share_entries)
    assert "meldingstekst" in rows[share_entries[0]["decision"]["inputDigest"]].input

    records = policy_archive.recorded_decisions(gw.runtime.db, last=100)
    assert [r.index for r in records] == sorted((r.index for r in records), reverse=True)
    requests = [r for r in records if r.input["action"] == "request"]
    assert len(requests) == 1  # the request's decision and answer entries are one decision
    assert requests[0].recipient == "veilig_thuis"
    assert {r.recipient for r in records if r.input["action"] == "share"} >= {
        "veilig_thuis",
        "reclassering",
    }
    assert policy_archive.recorded_decisions(gw.runtime, last=2) == records[:2]


def test_the_active_revision_is_archived_at_start(gw: Gateway) -> None:
    revision = gw.runtime.policy.current.revision
    source = policy_archive.load_revision(gw.runtime.db, revision)
    on_disk = read_policy(gw.runtime.settings.policy_dir)
    assert (source.revision, source.modules, source.data) == (revision, on_disk.modules, on_disk.data)
    assert policy_archive.active_revision(gw.runtime.db) == revision


def test_explain_on_a_share_entry_says_same(gw: Gateway, exchanged: dict[str, Any]) -> None:
    # Once as operators run it: a process of its own on the data directory.
    env = dict(os.environ, GATEWAY_DATA_DIR=str(gw.runtime.settings.data_dir))
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "audit", "explain", str(exchanged["share"])],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("zelfde beslissing")
    assert "ontvanger: veilig_thuis" in done.stdout
    assert f"revisie: {exchanged['revision']}" in done.stdout

    r = _explain(gw, str(exchanged["share"]), "--json")
    assert r.exit_code == 0, r.output
    x = json.loads(r.output)
    assert x["status"] == "same" and x["differences"] == [] and x["revisionIntact"] is True
    assert x["recorded"]["fields"] == x["redecided"]["fields"]  # found again from the digest
    assert "aard" in x["recorded"]["fields"]


def test_a_reload_archives_the_new_revision_and_lists_both(gw: Gateway, exchanged: dict[str, Any]) -> None:
    policy_dir = gw.runtime.settings.policy_dir
    path = policy_dir / FACTS
    facts = json.loads(path.read_text(encoding="utf-8"))
    facts["grants"]["onderzoeksbevindingen"]["veilig_thuis"]["politie"]["legalBasis"] = "Wpg art. 19 (a)"
    path.write_text(json.dumps(facts, ensure_ascii=False, indent=2), encoding="utf-8")
    with gw.as_("author") as a:
        r = a.post("/v1/policies/reload")
        assert r.status_code == 200, r.text
        new = r.json()["revision"]
        listed = a.get("/v1/policies").json()["revisions"]
    assert [(x["revision"], x["active"]) for x in listed[:2]] == [(new, True), (exchanged["revision"], False)]
    assert all(x["activatedAt"] and x["createdAt"] for x in listed)
    reload_entry = [e for _, e in _entries(gw) if e.get("action") == "policy.reload"][-1]
    assert reload_entry["refs"] == {"oldRevision": exchanged["revision"], "newRevision": new}
    assert policy_archive.active_revision(gw.runtime.db) == new
    # The old share still explains on its own revision, not the one serving now.
    assert _explain(gw, str(exchanged["share"])).exit_code == 0


def test_a_refused_reload_names_the_candidate_and_its_errors(gw: Gateway) -> None:
    module = gw.runtime.settings.policy_dir / "veiligdelen" / "broken.rego"
    module.write_text("package veiligdelen.broken\n\nallow if {\n", encoding="utf-8")
    try:
        with gw.as_("author") as a:
            r = a.post("/v1/policies/reload")
        assert r.status_code == 422, r.text
        entry = [e for _, e in _entries(gw) if e.get("action") == "policy.reload"][-1]
        assert entry["outcome"] == "check_failed"  # the check parses before anything compiles
        assert entry["refs"]["newRevision"].startswith("sha256:")
        assert entry["refs"]["newRevision"] != entry["refs"]["oldRevision"]
        assert "veiligdelen/broken.rego" in entry["refs"]["errors"]
        assert entry["refs"]["newRevision"] not in {
            x.revision for x in policy_archive.list_revisions(gw.runtime.db)
        }
    finally:
        module.unlink()


def test_explain_reports_what_an_altered_archive_decides_differently(
    gw: Gateway, exchanged: dict[str, Any]
) -> None:
    revision = exchanged["revision"]  # no longer serving: altering its row changes nothing live
    with gw.runtime.sessions.begin() as s:
        row = s.get(PolicyRevision, revision)
        assert row is not None
        original = row.files
        files = json.loads(original)
        facts = json.loads(files[FACTS.as_posix()])
        information_type, recipient, sender = MELDING_BASIS
        facts["grants"][information_type][recipient][sender]["legalBasis"] = "een andere grondslag"
        files[FACTS.as_posix()] = json.dumps(facts)
        row.files = json.dumps(files)
    try:
        r = _explain(gw, str(exchanged["share"]))
        assert r.exit_code == 1, r.output
        assert "let op: de bestanden van deze revisie in het archief zijn gewijzigd" in r.output
        assert "grondslag:" in r.output and "-> een andere grondslag" in r.output
        with gw.as_("auditor") as a:
            x = a.get(f"/v1/audit/entries/{exchanged['share']}/explanation").json()
        assert x["status"] == "differs" and x["revisionIntact"] is False
        assert [d["field"] for d in x["differences"]] == ["revision", "legalBasis"]
        assert x["differences"][1]["redecided"] == "een andere grondslag"
        # The archive refuses altered files to anyone who does not ask for them as they are.
        with pytest.raises(policy_archive.RevisionTampered):
            policy_archive.load_revision(gw.runtime.db, revision)
    finally:
        with gw.runtime.sessions.begin() as s:
            restored = s.get(PolicyRevision, revision)
            assert restored is not None
            restored.files = original


def test_explain_cannot_without_a_decision(gw: Gateway) -> None:
    index = next(i for i, e in _entries(gw) if e.get("action") == "policy.reload")
    r = _explain(gw, str(index))
    assert r.exit_code == 2
    assert r.output == f"entry {index}: kan niet opnieuw beslissen: deze entry legt geen beslissing vast\n"
    r = _explain(gw, str(gw.runtime.audit.size() + 10), "--json")
    assert r.exit_code == 2 and json.loads(r.output)["reason"]["code"] == "entry_not_found"
    with gw.as_("politie-system") as c:  # not an audit reader
        assert c.get(f"/v1/audit/entries/{index}/explanation").status_code == 403


def test_a_failing_input_write_fails_the_whole_exchange(
    gw: Gateway, exchanged: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kw: Any) -> None:
        raise RuntimeError("decision_inputs unavailable")

    size = gw.runtime.audit.size()
    with gw.runtime.sessions() as s:
        shares = s.scalar(sa.select(sa.func.count()).select_from(Share))
    monkeypatch.setattr(gateway.runtime, "write_inputs", broken)
    r = _share(gw, exchanged["case"], ["veilig_thuis"])
    assert r.status_code == 503, r.text
    assert gw.runtime.audit.size() == size
    with gw.runtime.sessions() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Share)) == shares
    monkeypatch.undo()
    assert _share(gw, exchanged["case"], ["veilig_thuis"]).status_code == 200


def test_an_input_that_could_hold_a_bsn_or_text_is_withheld() -> None:
    withheld = policy_archive.withheld_reason
    assert withheld({"action": "share", "purpose": "veiligheid_herstellen", "n": 1234567}) is None
    assert withheld({"case": {"involved": [BSN_PLEGER]}}) == "a run of eight or more digits"
    assert withheld({"n": 99999999}) == "a run of eight or more digits"
    assert withheld({"note": "x" * 129}) == "a string longer than 128 characters"
    assert withheld({"x" * 129: True}) == "a string longer than 128 characters"
    assert withheld({"note": "x" * 128}) is None
    assert withheld({"note": 'een "citaat"'}) == "an escaped character"
    assert withheld({"note": "twee\nregels"}) == "an escaped character"
    assert withheld({"f": float("nan")}) == "not plain JSON"
    assert policy_archive.pending_input({"purpose": BSN_KIND}) is None


def test_inputs_and_revisions_are_stored_once_on_postgresql() -> None:
    from gateway.db import make_engine
    from gateway.migrations import upgrade

    with fresh_pg_database("vd_archive") as (url, _admin, _name):
        engine = make_engine(url)
        try:
            upgrade(engine)
            source = read_policy(REPO_ROOT / "policies")
            assert policy_archive.archive_revision(engine, source) is True
            assert policy_archive.archive_revision(engine, source) is False
            item = policy_archive.pending_input({"action": "case.read", "actor": {"agency": "politie"}})
            assert item is not None
            # Two writers of the same input at once: the second waits for the first, then skips.
            first = engine.connect()
            tx = first.begin()
            policy_archive.write_inputs(first, [item])
            errors: list[BaseException] = []

            def second() -> None:
                try:
                    with engine.begin() as conn:
                        policy_archive.write_inputs(conn, [item])
                except BaseException as e:
                    errors.append(e)

            t = threading.Thread(target=second)
            t.start()
            tx.commit()
            first.close()
            t.join(timeout=120)
            assert not t.is_alive() and errors == []
            with engine.connect() as conn:
                assert conn.scalar(sa.select(sa.func.count()).select_from(DecisionInput.__table__)) == 1
                assert conn.scalar(sa.select(sa.func.count()).select_from(PolicyRevision.__table__)) == 1
            assert policy_archive.load_input(engine, item.digest) == {
                "action": "case.read",
                "actor": {"agency": "politie"},
            }
            with engine.begin() as conn, pytest.raises(policy_archive.InputMissing):
                policy_archive.write_inputs(conn, [], ["sha256:" + "0" * 64])
        finally:
            engine.dispose()

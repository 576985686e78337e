"""Safe reloads: one snapshot per reload, the optional file watcher, and reloads under concurrent load."""

from __future__ import annotations

import json
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import gateway.policy.admin as policy_reload
from gateway.app import create_app
from gateway.policy import PolicySource, TestReport, policy_revision, run_tests
from gateway.policy.admin import PolicyWatcher
from gateway.settings import REPO_ROOT, Settings
from tests.e2e.conftest import AGENCIES, Gateway, start_gateway
from tests.live import serve

FACTS = Path("veiligdelen") / "facts" / "data.json"
TESTS = Path("veiligdelen") / "decision" / "decision_test.rego"


@pytest.fixture()
def own(tmp_path: Path) -> Iterator[tuple[Gateway, Path]]:
    """A gateway on its own copy of policies/, watcher off (the default)."""
    policy_dir = tmp_path / "policies"
    shutil.copytree(REPO_ROOT / "policies", policy_dir)
    # The load test below hammers from one client as fast as the machine allows: far above the
    # default per-client limit (50/second), which is not what it tests.
    runtime, sock = start_gateway(tmp_path / "data", policy_dir=policy_dir, rate_limit="100000/second")
    app = create_app(runtime=runtime)
    with serve(app, sock=sock) as base:
        gw = Gateway(base=base, runtime=runtime)
        gw.register("author", "veilig_thuis", "policy_author")
        gw.register("auditor", "veilig_thuis", "auditor")
        for agency in AGENCIES:
            gw.register(f"{agency}-system", agency, "agency_system")
        yield gw, policy_dir
    runtime.close()


def _set_basis(policy_dir: Path, basis: str) -> str:
    """Give the politie -> Veilig Thuis findings row another legal basis; returns the new revision."""
    path = policy_dir / FACTS
    facts = json.loads(path.read_text(encoding="utf-8"))
    facts["grants"]["onderzoeksbevindingen"]["veilig_thuis"]["politie"]["legalBasis"] = basis
    path.write_text(json.dumps(facts, ensure_ascii=False, indent=2), encoding="utf-8")
    return policy_revision(policy_dir)


def _all_entries(gw: Gateway, **params: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    with gw.as_("auditor") as a:
        while True:
            query = dict(params, limit="1000") | ({"cursor": cursor} if cursor else {})
            page = a.get("/v1/audit/entries", params=query).json()
            out += [item["entry"] for item in page["entries"]]
            cursor = page["next"]
            if not cursor:
                return out


# --- one snapshot per reload ------------------------------------------------------------------------


def test_a_reload_tests_exactly_the_files_it_compiled(
    own: tuple[Gateway, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    gw, policy_dir = own
    old = gw.runtime.policy.current.revision
    expected = _set_basis(policy_dir, "Wpg art. 19 (snapshot)")
    tests = policy_dir / TESTS
    broken = tests.read_text(encoding="utf-8") + "\ntest_written_while_reloading if {\n\tfalse\n}\n"
    seen: list[str] = []

    def files_change_while_reloading(source: PolicySource) -> TestReport:
        # A policy author saves a failing test after the reload read the files, before it tests them.
        tests.write_text(broken, encoding="utf-8")
        seen.append(source.revision)
        return run_tests(source)

    monkeypatch.setattr(policy_reload, "run_tests", files_change_while_reloading)
    with gw.as_("author") as author:
        r = author.post("/v1/policies/reload")
    assert r.status_code == 200, r.text
    # Compiled, tested and served: the same snapshot, not the files as they are now.
    assert seen == [expected]
    assert r.json()["revision"] == expected == gw.runtime.policy.current.revision
    assert policy_revision(policy_dir) != expected
    assert r.json()["previousRevision"] == old

    monkeypatch.undo()
    with gw.as_("author") as author:
        again = author.post("/v1/policies/reload")
    assert again.status_code == 422, again.text
    assert any("test_written_while_reloading" in e["field"] for e in again.json()["errors"])
    assert gw.runtime.policy.current.revision == expected


# --- the watcher ------------------------------------------------------------------------------------


def test_the_watcher_is_off_by_default() -> None:
    assert Settings().policy_watch is False
    assert Settings().policy_watch_interval == 2.0


def test_the_watcher_reloads_a_settled_change_and_refuses_a_broken_one(own: tuple[Gateway, Path]) -> None:
    gw, policy_dir = own
    watcher = PolicyWatcher(gw.runtime, interval=60)  # polled by hand here
    start = gw.runtime.policy.current.revision
    assert watcher.check() is None  # nothing changed

    changed = _set_basis(policy_dir, "Wpg art. 19 (watched)")
    assert watcher.check() is None  # changed: wait one poll for it to settle
    answer = watcher.check()
    assert answer is not None
    assert answer["revision"] == changed == gw.runtime.policy.current.revision
    assert answer["previousRevision"] == start

    rego = policy_dir / "veiligdelen" / "decision" / "decision.rego"
    good = rego.read_text(encoding="utf-8")
    rego.write_text(good + "\nbroken if {\n", encoding="utf-8")
    assert watcher.check() is None
    assert watcher.check() is None  # refused: the old revision keeps serving ...
    assert watcher.check() is None  # ... and is not retried until the files change again
    assert gw.runtime.policy.current.revision == changed

    rego.write_text(good + "\n# Reviewed.\n", encoding="utf-8")
    watcher.check()
    fixed = watcher.check()
    assert fixed is not None and fixed["revision"] == policy_revision(policy_dir)

    entries = [e for e in _all_entries(gw, type="policy") if e["actor"]["clientId"] == "policy-watcher"]
    assert [e["outcome"] for e in entries] == ["loaded", "check_failed", "loaded"]
    assert entries[0]["refs"] == {"oldRevision": start, "newRevision": changed}
    assert entries[0]["actor"] == {"agency": "gateway", "clientId": "policy-watcher"}
    assert entries[2]["refs"] == {"oldRevision": changed, "newRevision": fixed["revision"]}


def test_the_watcher_thread_reloads_a_running_gateway(tmp_path: Path) -> None:
    policy_dir = tmp_path / "policies"
    shutil.copytree(REPO_ROOT / "policies", policy_dir)
    runtime, sock = start_gateway(
        tmp_path / "data", policy_dir=policy_dir, policy_watch=True, policy_watch_interval=0.1
    )
    app = create_app(runtime=runtime)
    watcher = app.state.policy_watcher
    assert isinstance(watcher, PolicyWatcher)
    assert watcher.stop in app.router.on_shutdown  # `gateway serve` runs the app's shutdown
    try:
        with serve(app, sock=sock) as base:
            gw = Gateway(base=base, runtime=runtime)
            gw.register("author", "veilig_thuis", "policy_author")
            assert "policy-watcher" in {t.name for t in threading.enumerate()}
            changed = _set_basis(policy_dir, "Wpg art. 19 (seen by the thread)")
            deadline = time.monotonic() + 30
            with gw.as_("author") as author:
                while author.get("/v1/policies").json()["revision"] != changed:
                    assert time.monotonic() < deadline, "the watcher did not reload"
                    time.sleep(0.1)
    finally:
        watcher.stop()
        runtime.close()
    assert "policy-watcher" not in {t.name for t in threading.enumerate()}


# --- reloads under load -----------------------------------------------------------------------------


def test_reloads_under_load_fail_no_request_and_mix_no_revisions(own: tuple[Gateway, Path]) -> None:
    gw, policy_dir = own
    case_id = gw.open_case()  # acuut/fysieke_veiligheid, by politie
    basis = {gw.runtime.policy.current.revision: "Wpg art. 19"}
    share_body = {
        "informationType": "onderzoeksbevindingen",
        "purpose": "veiligheid_herstellen",
        "recipients": ["veilig_thuis", "om"],  # om is refused: two entries, one decision
        "payload": {"bevindingen": "letsel", "werkhypothese": "intern"},
    }
    what_if_body = {
        "action": "share",
        "caseId": case_id,
        "informationType": "onderzoeksbevindingen",
        "purpose": "veiligheid_herstellen",
        "recipient": "veilig_thuis",
    }
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def hammer(kind: str) -> None:
        with gw.agency("politie") as c:
            while not stop.is_set():
                trace = secrets.token_hex(16)
                headers = {"traceparent": f"00-{trace}-{secrets.token_hex(8)}-01"}
                try:
                    if kind == "share":
                        r = c.post(f"/v1/cases/{case_id}/shares", json=share_body, headers=headers)
                    else:
                        r = c.post("/v1/decisions", json=what_if_body, headers=headers)
                except httpx.HTTPError as e:
                    failures.append(f"{kind}: {type(e).__name__}")
                    continue
                if r.status_code != 200:
                    failures.append(f"{kind}: {r.status_code} {r.text[:200]}")
                    continue
                with lock:
                    results.append({"kind": kind, "trace": trace, "body": r.json()})

    threads = [threading.Thread(target=hammer, args=(k,)) for k in ("share", "share", "what-if")]
    for t in threads:
        t.start()
    try:
        with gw.as_("author") as author:
            for k in range(1, 4):
                time.sleep(0.3)
                revision = _set_basis(policy_dir, f"Wpg art. 19 (revision {k})")
                r = author.post("/v1/policies/reload")
                assert r.status_code == 200, r.text
                assert r.json()["revision"] == revision
                basis[revision] = f"Wpg art. 19 (revision {k})"
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()

    assert failures == []
    seen = {x["body"]["policyRevision"] for x in results}
    assert seen <= set(basis)  # every answer came from a revision that was active
    assert len(seen) >= 3, "the load did not span the reloads"
    assert {x["kind"] for x in results} == {"share", "what-if"}

    # No answer mixes revisions: the legal basis is the one of the revision that answered.
    for x in results:
        body = x["body"]
        if x["kind"] == "share":
            vt = next(p for p in body["results"] if p["recipient"] == "veilig_thuis")
            assert vt["allowed"] is True
            assert vt["legalBasis"] == basis[body["policyRevision"]]
        else:
            assert body["allowed"] is True
            assert body["legalBasis"] == basis[body["policyRevision"]]

    # And the trail recorded the same revision as the answer, for every entry of every decision.
    entries = _all_entries(gw, caseId=case_id)
    by_share: dict[str, set[str]] = {}
    by_trace: dict[str, set[str]] = {}
    for e in entries:
        if "decision" not in e:
            continue
        if e["action"] == "share":
            by_share.setdefault(e["refs"]["shareId"], set()).add(e["decision"]["policyRevision"])
        by_trace.setdefault(e["traceId"], set()).add(e["decision"]["policyRevision"])
    for x in results:
        body = x["body"]
        if x["kind"] == "share":
            assert by_share[body["shareId"]] == {body["policyRevision"]}
        assert by_trace[x["trace"]] == {body["policyRevision"]}
    reloads = [e for e in _all_entries(gw, type="policy") if e["outcome"] == "loaded"]
    assert [e["refs"]["newRevision"] for e in reloads] == list(basis)[1:]

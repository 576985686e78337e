"""Impact before activation over real HTTP: what a running gateway recorded, replayed on a candidate.

One gateway on its own copy of policies/ records a handful of real shares; the candidate is the same
directory changed on disk (not active). ``POST /v1/policies/impact`` and ``gateway policy impact``
report exactly the changed decisions; a reload with a reviewed impact activates only when the impact is
the reviewed one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.cli import run
from gateway.policy import read_policy
from gateway.policy._rowtests import row_tests
from gateway.services.policy_archive import recorded_decisions
from gateway.settings import REPO_ROOT
from tests.e2e.conftest import AGENCIES, Gateway, start_gateway
from tests.live import serve

FACTS = Path("veiligdelen") / "facts" / "data.json"
ROWS_TEST = Path("veiligdelen") / "decision" / "rows_test.rego"
DECISION = Path("veiligdelen") / "decision" / "decision.rego"


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Path, Path]]:
    """A gateway on its own copy of policies/, with the original kept beside it to restore from."""
    root = tmp_path_factory.mktemp("impact")
    policy_dir = root / "policies"
    shutil.copytree(REPO_ROOT / "policies", policy_dir)
    runtime, sock = start_gateway(root / "data", policy_dir=policy_dir)
    with serve(create_app(runtime=runtime), sock=sock) as base:
        gw = Gateway(base=base, runtime=runtime)
        gw.register("author", "veilig_thuis", "policy_author")
        for agency in AGENCIES:
            gw.register(f"{agency}-system", agency, "agency_system")
        _record(gw)
        yield gw, policy_dir, root / "data"
        gw.http.close()
    runtime.close()


def _share(
    gw: Gateway, sender: str, case_id: str, type_: str, purpose: str, to: list[str], payload: Any
) -> int:
    with gw.agency(sender) as c:
        r = c.post(
            f"/v1/cases/{case_id}/shares",
            json={"informationType": type_, "purpose": purpose, "recipients": to, "payload": payload},
        )
    assert r.status_code == 200, r.text
    return [x["allowed"] for x in r.json()["results"]]


def _record(gw: Gateway) -> None:
    """The decisions the tests replay: a melding, a findings share for the police, the assessment."""
    first = gw.open_case()
    melding = {"aard": "x"}
    assert _share(gw, "politie", first, "melding", "veiligheid_herstellen", ["veilig_thuis"], melding) == [
        True
    ]
    wide = gw.open_case()
    for step in ("motorkapoverleg", "onderzoek"):
        gw.move(wide, step, by="politie")
    purpose = "onderzoek_strafbare_feiten"
    assert _share(gw, "veilig_thuis", wide, "melding", purpose, ["politie"], melding) == [True]
    gw.move(wide, "veiligheidsmaatregelen", by="politie")
    # No track open: no samenloop, so the assessment reaches none of the three (three decisions).
    to = ["om", "reclassering", "rvdk"]
    assessment = {"conclusie": "x"}
    allowed = _share(
        gw, "veilig_thuis", wide, "veiligheidsbeoordeling", "maatregelen_afstemmen", to, assessment
    )
    assert allowed == [False, False, False]


def _set_candidate(policy_dir: Path, change: str | None) -> None:
    """Put the repository's policies back, then apply ``change`` (and regenerate the row tests)."""
    shutil.rmtree(policy_dir)
    shutil.copytree(REPO_ROOT / "policies", policy_dir)
    if change is None:
        return
    if change == "broken":
        path = policy_dir / DECISION
        path.write_text(path.read_text(encoding="utf-8") + "\nbroken if {\n\tnot\n}\n", encoding="utf-8")
        return
    path = policy_dir / FACTS
    facts = json.loads(path.read_text(encoding="utf-8"))
    if change == "purpose":
        facts["grants"]["melding"]["politie"]["veilig_thuis"]["purposes"].remove("onderzoek_strafbare_feiten")
    elif change == "samenloop":
        facts["samenloop"]["recipients"].remove("rvdk")
    path.write_text(json.dumps(facts, ensure_ascii=False, indent=2), encoding="utf-8")
    (policy_dir / ROWS_TEST).write_text(row_tests(read_policy(policy_dir).facts), encoding="utf-8")


def _index(gw: Gateway, action_input: dict[str, Any], recipient: str) -> int:
    """The log index of the recorded decision with this informationType/purpose for ``recipient``."""
    found = [
        r.index
        for r in recorded_decisions(gw.runtime.db)
        if r.recipient == recipient and all(r.input.get(k) == v for k, v in action_input.items())
    ]
    assert len(found) == 1, found
    return found[0]


def _impact(gw: Gateway, body: dict[str, Any] | None = None) -> Any:
    with gw.as_("author") as a:
        return a.post("/v1/policies/impact", json=body)


def test_an_unchanged_directory_changes_nothing(own: tuple[Gateway, Path, Path]) -> None:
    gw, policy_dir, _ = own
    _set_candidate(policy_dir, None)
    r = _impact(gw)
    assert r.status_code == 200, r.text
    answer = r.json()
    # 1 melding + 1 findings share + 3 assessment decisions, and the case actions (open, move, track).
    assert answer["totals"]["changed"] == 0 and answer["changes"] == []
    assert (
        answer["totals"]["replayed"] >= 5
        and answer["totals"]["distinctInputs"] <= answer["totals"]["replayed"]
    )
    assert answer["baselineRevision"] == answer["candidateRevision"] == gw.runtime.policy.current.revision


def test_a_dropped_purpose_over_http_names_the_refused_share(own: tuple[Gateway, Path, Path]) -> None:
    gw, policy_dir, _ = own
    _set_candidate(policy_dir, "purpose")
    r = _impact(gw, {"last": 100})
    assert r.status_code == 200, r.text
    answer = r.json()
    index = _index(gw, {"action": "share", "purpose": "onderzoek_strafbare_feiten"}, "politie")
    assert [(c["index"], c["recipient"], c["changes"]) for c in answer["changes"]] == [
        (
            index,
            "politie",
            [
                {"kind": "refused"},
                {"kind": "reasons", "added": ["purpose_not_allowed"], "removed": ["allowed"]},
            ],
        )
    ]
    assert answer["totals"]["changed"] == 1
    assert answer["byRow"][0] | {"kinds": None} == {
        "step": "acuut/onderzoek",
        "informationType": "melding",
        "recipient": "politie",
        "sender": "veilig_thuis",
        "changed": 1,
        "kinds": None,
    }
    assert answer["window"]["last"] == 100
    # Not activated: the gateway still serves the old revision.
    assert gw.runtime.policy.current.revision == answer["baselineRevision"] != answer["candidateRevision"]


def test_a_candidate_that_does_not_compile_is_a_422_with_its_place(own: tuple[Gateway, Path, Path]) -> None:
    gw, policy_dir, _ = own
    _set_candidate(policy_dir, "broken")
    r = _impact(gw)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "decision.rego" in r.json()["errors"][0]["field"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"last": 0}, "last"),
        ({"last": 100_001}, "last"),
        ({"since": 5}, "since"),
    ],
)
def test_a_bad_window_is_a_400_naming_the_field(
    own: tuple[Gateway, Path, Path], body: dict[str, Any], field: str
) -> None:
    gw, _, _ = own
    r = _impact(gw, body)
    assert r.status_code == 400, r.text
    assert field in json.dumps(r.json()["errors"])


def test_the_command_gates_on_the_impact(
    own: tuple[Gateway, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    gw, policy_dir, data_dir = own
    _set_candidate(policy_dir, None)
    assert run(["policy", "impact", str(policy_dir), "--data-dir", str(data_dir)]) == 0
    assert "Geen enkel besluit verandert." in capsys.readouterr().out
    _set_candidate(policy_dir, "samenloop")
    out = data_dir.parent / "samenloop.json"
    assert (
        run(
            [
                "policy",
                "impact",
                str(policy_dir),
                "--last",
                "50",
                "--out",
                str(out),
                "--data-dir",
                str(data_dir),
            ]
        )
        == 1
    )
    text = capsys.readouterr().out
    assert "geweigerd → toegestaan" in text and "veiligheidsbeoordeling" in text
    report = json.loads(out.read_text(encoding="utf-8"))
    index = _index(gw, {"action": "share", "informationType": "veiligheidsbeoordeling"}, "rvdk")
    assert [(c["index"], c["recipient"]) for c in report["changes"]] == [(index, "rvdk")]
    assert {"code": "samenloop_required", "gained": 0, "lost": 1} in report["byReason"]
    _set_candidate(policy_dir, "broken")
    assert run(["policy", "impact", str(policy_dir), "--data-dir", str(data_dir), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: kandidaat geweigerd") and len(err.strip().splitlines()) == 1


def test_a_reload_activates_only_the_reviewed_impact(
    own: tuple[Gateway, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    gw, policy_dir, data_dir = own
    old = gw.runtime.policy.current.revision
    _set_candidate(policy_dir, None)
    nothing = _impact(gw).json()
    _set_candidate(policy_dir, "purpose")
    reviewed = _impact(gw).json()
    assert reviewed["totals"]["changed"] == 1
    # Reviewed "nothing changes", but the purpose flips a decision: refused, the old revision stays.
    with gw.as_("author") as a:
        r = a.post("/v1/policies/reload", json={"expectImpact": nothing})
        assert r.status_code == 422, r.text
        assert "1 changed decisions not in the reviewed impact" in r.json()["detail"]
        assert gw.runtime.policy.current.revision == old
        # A malformed review is a 400 naming it, before anything is compiled.
        bad = a.post("/v1/policies/reload", json={"expectImpact": {"changes": "all"}})
        assert bad.status_code == 400 and "expectImpact" in bad.text
    refused = [e for e in _policy_entries(gw) if e["outcome"] == "impact_unexpected"]
    assert len(refused) == 1 and refused[0]["refs"]["oldRevision"] == old
    assert refused[0]["refs"]["newRevision"] == reviewed["candidateRevision"]
    assert "not reviewed" in json.dumps(refused[0]["refs"]["errors"])
    # The reviewed report, through the command: activates.
    path = data_dir.parent / "reviewed.json"
    path.write_text(json.dumps(reviewed), encoding="utf-8")
    token = gw.token("author")
    assert run(["policy", "reload", "--token", token, "--url", gw.base, "--expect-impact", str(path)]) == 0
    assert "geladen" in capsys.readouterr().out
    assert gw.runtime.policy.current.revision == reviewed["candidateRevision"]


def _policy_entries(gw: Gateway) -> list[dict[str, Any]]:
    if "impact-auditor" not in gw.keys:
        gw.register("impact-auditor", "veilig_thuis", "auditor")
    with gw.as_("impact-auditor") as a:
        page = a.get("/v1/audit/entries", params={"type": "policy", "limit": "100"}).json()
    return [item["entry"] for item in page["entries"]]

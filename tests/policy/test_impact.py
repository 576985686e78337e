"""Impact before activation: real changes of a copy of policies/, replayed on recorded inputs.

The records are built here as the gateway records them (one per recipient of a share, one per request
or case action), so each change below has an exact expected set of changed decisions. The end-to-end
test (tests/e2e/test_policy_impact.py) replays what a running gateway really recorded.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.policy import EmbeddedEngine, read_policy
from gateway.policy._rowtests import row_tests
from gateway.services.impact import (
    CandidateRefused,
    ImpactReport,
    check_candidate,
    render_text,
    replay,
    reviewed_keys,
    reviewed_window,
    unexpected_changes,
)
from gateway.services.policy_archive import RecordedDecision, input_digest
from tests.policy.conftest import POLICIES, actor, case, request, share

FACTS = Path("veiligdelen") / "facts" / "data.json"
ROWS_TEST = Path("veiligdelen") / "decision" / "rows_test.rego"


MELDING = share(
    "politie", case(), "melding", "veiligheid_herstellen", ["veilig_thuis", "rvdk"], ["aard", "locatie"]
)
MELDING_NO_AARD = share("politie", case(), "melding", "veiligheid_herstellen", ["veilig_thuis"], ["locatie"])
ONDERZOEK = case("acuut", "onderzoek")
TO_POLITIE_OSF = share(
    "veilig_thuis", ONDERZOEK, "melding", "onderzoek_strafbare_feiten", ["politie"], ["aard"]
)
TO_POLITIE_VH = share("veilig_thuis", ONDERZOEK, "melding", "veiligheid_herstellen", ["politie"], ["aard"])
ZORG_ONLY = case("acuut", "veiligheidsmaatregelen", zorg=True)
ASSESSMENT = share(
    "veilig_thuis",
    ZORG_ONLY,
    "veiligheidsbeoordeling",
    "maatregelen_afstemmen",
    ["om", "reclassering", "rvdk"],
    ["conclusie"],
)
READ = {"action": "case.read", "actor": actor("politie"), "case": case()}
ASK = request("veilig_thuis", ONDERZOEK, "strafrechtelijke_informatie", "veiligheid_herstellen", "politie")


def _records() -> list[RecordedDecision]:
    plan: list[tuple[dict[str, Any], list[str | None]]] = [
        (MELDING, ["veilig_thuis", "rvdk"]),  # 1, 2
        (MELDING, ["veilig_thuis", "rvdk"]),  # 3, 4: the same share again: one distinct input
        (MELDING_NO_AARD, ["veilig_thuis"]),  # 5
        (TO_POLITIE_OSF, ["politie"]),  # 6
        (TO_POLITIE_VH, ["politie"]),  # 7
        (ASSESSMENT, ["om", "reclassering", "rvdk"]),  # 8, 9, 10
        (READ, [None]),  # 11
        (ASK, ["veilig_thuis"]),  # 12
    ]
    out = []
    for policy_input, recipients in plan:
        for recipient in recipients:
            index = len(out) + 1
            time = f"2026-12-01T10:00:{index:02d}.000000Z"
            out.append(
                RecordedDecision(
                    index, time, "sha256:recorded", input_digest(policy_input), policy_input, {}, recipient
                )
            )
    return out


RECORDS = _records()
DISTINCT = 7


def _candidate(root: Path, name: str, change: Callable[[dict[str, Any]], None] | None) -> Path:
    """A copy of policies/ with ``change`` applied to its facts and its row tests regenerated."""
    target = root / name
    shutil.copytree(POLICIES, target)
    if change is None:
        return target
    path = target / FACTS
    facts = json.loads(path.read_text(encoding="utf-8"))
    change(facts)
    path.write_text(json.dumps(facts, ensure_ascii=False, indent=2), encoding="utf-8")
    (target / ROWS_TEST).write_text(row_tests(read_policy(target).facts), encoding="utf-8")
    return target


def _drop_field(facts: dict[str, Any]) -> None:
    facts["grants"]["melding"]["veilig_thuis"]["politie"]["fields"].remove("aard")


def _drop_purpose(facts: dict[str, Any]) -> None:
    facts["grants"]["melding"]["politie"]["veilig_thuis"]["purposes"].remove("onderzoek_strafbare_feiten")


def _samenloop_without_rvdk(facts: dict[str, Any]) -> None:
    facts["samenloop"]["recipients"].remove("rvdk")


@pytest.fixture(scope="module")
def baseline() -> Iterator[EmbeddedEngine]:
    # In the calling thread, no workers: the replays here are a few dozen decisions.
    with EmbeddedEngine(POLICIES, pool_size=1, timeout=None, cache_size=0) as engine:
        yield engine


@pytest.fixture(scope="module")
def candidates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("candidates")
    changes: dict[str, Callable[[dict[str, Any]], None] | None] = {
        "field": _drop_field,
        "purpose": _drop_purpose,
        "samenloop": _samenloop_without_rvdk,
        "unchanged": None,
    }
    return {name: _candidate(root, name, change) for name, change in changes.items()}


def _impact(baseline: EmbeddedEngine, directory: Path) -> ImpactReport:
    with EmbeddedEngine(directory, pool_size=1, timeout=None, cache_size=0) as candidate:
        return replay(RECORDS, baseline, candidate, window={"last": 100, "since": None})


def _changed(report: ImpactReport) -> list[tuple[int, str | None, list[dict[str, Any]]]]:
    return [(c.index, c.recipient, list(c.changes)) for c in report.changes]


def test_an_unchanged_copy_changes_nothing(baseline: EmbeddedEngine, candidates: dict[str, Path]) -> None:
    report = _impact(baseline, candidates["unchanged"])
    answer = report.to_json()
    assert answer["totals"] == {"replayed": 12, "distinctInputs": DISTINCT, "changed": 0, "unchanged": 12}
    assert answer["candidateRevision"] == answer["baselineRevision"] == baseline.revision
    assert answer["changes"] == [] and answer["byRow"] == [] and answer["byReason"] == []
    assert answer["window"] == {
        "last": 100,
        "since": None,
        "fromIndex": 1,
        "toIndex": 12,
        "fromTime": "2026-12-01T10:00:01.000000Z",
        "toTime": "2026-12-01T10:00:12.000000Z",
    }
    assert "Geen enkel besluit verandert." in render_text(report)


def test_a_removed_field_changes_that_row_only(baseline: EmbeddedEngine, candidates: dict[str, Path]) -> None:
    report = _impact(baseline, candidates["field"])
    removed = [{"kind": "fields", "added": [], "removed": ["aard"]}]
    # Shares 1 and 3 named aard; 5 did not; rvdk (2, 4) was refused before and after.
    assert _changed(report) == [(1, "veilig_thuis", removed), (3, "veilig_thuis", removed)]
    assert report.changes[0].before.fields == ("aard", "locatie")
    assert report.changes[0].after.fields == ("locatie",)
    assert report.to_json()["byRow"] == [
        {
            "step": "acuut/fysieke_veiligheid",
            "informationType": "melding",
            "recipient": "veilig_thuis",
            "sender": "politie",
            "changed": 2,
            "kinds": {"fields": 2},
        }
    ]
    assert report.by_reason() == [] and report.by_kind() == {"fields": 2}
    assert report.to_json()["totals"] == {
        "replayed": 12,
        "distinctInputs": DISTINCT,
        "changed": 2,
        "unchanged": 10,
    }


def test_a_dropped_purpose_refuses_those_shares_with_its_reason(
    baseline: EmbeddedEngine, candidates: dict[str, Path]
) -> None:
    report = _impact(baseline, candidates["purpose"])
    assert _changed(report) == [
        (
            6,
            "politie",
            [
                {"kind": "refused"},
                {"kind": "reasons", "added": ["purpose_not_allowed"], "removed": ["allowed"]},
            ],
        )
    ]
    change = report.changes[0]
    assert change.before.allowed and change.before.legal_basis and not change.after.allowed
    assert change.after.legal_basis is None and change.after.fields == ()
    assert report.by_reason() == [
        {"code": "allowed", "gained": 0, "lost": 1},
        {"code": "purpose_not_allowed", "gained": 1, "lost": 0},
    ]
    row = report.by_row()[0]
    assert (row["step"], row["informationType"], row["sender"], row["recipient"]) == (
        "acuut/onderzoek",
        "melding",
        "veilig_thuis",
        "politie",
    )
    assert row["changed"] == 1 and list(row["kinds"].items()) == [("refused", 1), ("reasons", 1)]


def test_the_samenloop_rule_without_rvdk_allows_the_assessment_to_rvdk_only(
    baseline: EmbeddedEngine, candidates: dict[str, Path]
) -> None:
    report = _impact(baseline, candidates["samenloop"])
    # One share to three recipients is three decisions: OM and 3RO still need samenloop.
    assert _changed(report) == [
        (
            10,
            "rvdk",
            [
                {"kind": "allowed"},
                {"kind": "reasons", "added": ["allowed"], "removed": ["samenloop_required"]},
            ],
        )
    ]
    assert report.changes[0].after.fields == ("conclusie",)
    assert report.by_row()[0]["informationType"] == "veiligheidsbeoordeling"
    assert {"code": "samenloop_required", "gained": 0, "lost": 1} in report.by_reason()
    text = render_text(report)
    assert "geweigerd → toegestaan" in text and "#10" in text and "samenloop_required" in text


def test_a_reviewed_impact_is_compared_item_by_item(
    baseline: EmbeddedEngine, candidates: dict[str, Path]
) -> None:
    reviewed = _impact(baseline, candidates["purpose"]).to_json()
    again = _impact(baseline, candidates["purpose"])
    assert unexpected_changes(reviewed, again) == {"missing": [], "unexpected": []}
    assert again.digest() == reviewed["changesDigest"]
    assert reviewed_window(reviewed) == (1, 12)
    # The reviewed report of another change: what it expected does not happen, what happens was not expected.
    other = _impact(baseline, candidates["field"])
    diff = unexpected_changes(reviewed, other)
    assert [item[:2] for item in diff["missing"]] == [[6, "politie"]]
    assert [item[:2] for item in diff["unexpected"]] == [[1, "veilig_thuis"], [3, "veilig_thuis"]]
    # A reviewed report of nothing changing expects nothing.
    nothing = _impact(baseline, candidates["unchanged"]).to_json()
    assert unexpected_changes(nothing, again)["unexpected"] == [json.loads(c.key()) for c in again.changes]


@pytest.mark.parametrize(
    ("reviewed", "message"),
    [
        ({}, "expectImpact.changes is not a list"),
        ({"changes": [1]}, "expectImpact.changes[0] is not an object"),
        ({"changes": [{"index": "6", "changes": []}]}, "needs an integer index"),
        ({"changes": [{"index": 6, "recipient": 1, "changes": []}]}, "recipient is not a string"),
    ],
)
def test_a_malformed_reviewed_report_is_named(reviewed: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        reviewed_keys(reviewed)


def test_a_reviewed_window_needs_its_index_range() -> None:
    assert reviewed_window({"window": {}}) is None
    with pytest.raises(ValueError, match="fromIndex and toIndex"):
        reviewed_window({"window": {"fromIndex": 1, "toIndex": "x"}})
    with pytest.raises(ValueError, match="window is not an object"):
        reviewed_window({})


def test_a_candidate_that_does_not_compile_is_refused_with_its_place(policy_copy: Path) -> None:
    rego = policy_copy / "veiligdelen" / "decision" / "decision.rego"
    rego.write_text(rego.read_text(encoding="utf-8") + "\nbroken if {\n\tnot\n}\n", encoding="utf-8")
    with pytest.raises(CandidateRefused) as refused:
        check_candidate(policy_copy)
    assert refused.value.status == 422
    assert "does not compile" in refused.value.detail
    assert refused.value.errors and "decision.rego" in refused.value.errors[0]["field"]


def test_a_candidate_whose_tests_fail_is_refused_with_their_names(policy_copy: Path) -> None:
    # The purpose dropped without regenerating the row tests: that row's test fails, by name.
    path = policy_copy / FACTS
    facts = json.loads(path.read_text(encoding="utf-8"))
    _drop_purpose(facts)
    path.write_text(json.dumps(facts), encoding="utf-8")
    with pytest.raises(CandidateRefused) as refused:
        check_candidate(policy_copy)
    assert "failed; the candidate was not replayed" in refused.value.detail
    assert [e["field"] for e in refused.value.errors or []] == [
        "veiligdelen.decision_test.test_row_melding__veilig_thuis__politie"
    ]

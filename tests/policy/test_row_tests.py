"""rows_test.rego: one generated Rego test per row of data.json, in sync with the facts, and able to fail."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.policy import EmbeddedEngine, run_tests
from gateway.policy._rowtests import row_tests
from gateway.policy._source import whole_input_with_lines
from tests.policy.conftest import POLICIES

ROWS_TEST = POLICIES / "veiligdelen" / "decision" / "rows_test.rego"
FACTS = Path("veiligdelen") / "facts" / "data.json"


def test_rows_test_is_generated_from_the_current_facts(engine: EmbeddedEngine) -> None:
    assert ROWS_TEST.read_text(encoding="utf-8") == row_tests(engine.facts()), (
        "policies/veiligdelen/decision/rows_test.rego is out of date: regenerate it with "
        "`gateway policy row-tests > policies/veiligdelen/decision/rows_test.rego`"
    )


def test_every_row_has_its_own_test(engine: EmbeddedEngine) -> None:
    text = ROWS_TEST.read_text(encoding="utf-8")
    grants = engine.facts()["grants"]
    names = [
        f"test_row_{t}__{sender}__{receiver}"
        for t, by_receiver in grants.items()
        for receiver, by_sender in by_receiver.items()
        for sender in by_sender
    ]
    assert len(names) == len(set(names)) >= 50
    for name in names:
        assert f"\n{name} if {{\n" in text, name
    assert whole_input_with_lines(text) == []


def test_a_row_test_fails_when_the_row_changes_behind_its_back(policy_copy: Path) -> None:
    # Narrow a row's purposes without regenerating: its test must fail, by name, and only it.
    path = policy_copy / FACTS
    facts = json.loads(path.read_text(encoding="utf-8"))
    facts["grants"]["maatregel"]["reclassering"]["politie"]["purposes"] = ["zorg_en_straf_afstemmen"]
    path.write_text(json.dumps(facts), encoding="utf-8")
    report = run_tests(policy_copy)
    failed = {r.name for r in report.results if not r.ok}
    assert failed == {"veiligdelen.decision_test.test_row_maatregel__politie__reclassering"}


def test_a_changed_legal_basis_needs_no_new_tests(policy_copy: Path) -> None:
    path = policy_copy / FACTS
    facts = json.loads(path.read_text(encoding="utf-8"))
    facts["grants"]["maatregel"]["reclassering"]["politie"]["legalBasis"] = "Wpg art. 18 (herzien)"
    path.write_text(json.dumps(facts), encoding="utf-8")
    report = run_tests(policy_copy)
    assert report.failed == 0, [r.name for r in report.results if not r.ok]

"""policy_revision: a hash over every .rego and .json file, by relative path."""

from __future__ import annotations

import shutil
from pathlib import Path

from gateway.policy import EmbeddedEngine, policy_revision, read_policy
from tests.policy.conftest import POLICIES


def test_revision_is_stable_and_matches_the_engine(policy_copy: Path) -> None:
    first = policy_revision(policy_copy)
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 64
    assert policy_revision(policy_copy) == first
    assert policy_revision(POLICIES) == first  # same content elsewhere, same revision
    assert read_policy(policy_copy).revision == first
    assert EmbeddedEngine(policy_copy, pool_size=1).revision == first


def test_revision_changes_with_a_rego_file(policy_copy: Path) -> None:
    before = policy_revision(policy_copy)
    rego = policy_copy / "veiligdelen" / "decision" / "decision.rego"
    rego.write_text(rego.read_text(encoding="utf-8") + "\n# a comment is a change\n", encoding="utf-8")
    assert policy_revision(policy_copy) != before


def test_revision_changes_with_data_and_tests(policy_copy: Path) -> None:
    before = policy_revision(policy_copy)
    data = policy_copy / "veiligdelen" / "facts" / "data.json"
    data.write_text(
        data.read_text(encoding="utf-8").replace("Wpg art. 19", "Wpg art. 19 lid 1"), encoding="utf-8"
    )
    after_data = policy_revision(policy_copy)
    assert after_data != before
    test = policy_copy / "veiligdelen" / "decision" / "decision_test.rego"
    test.write_text(test.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert policy_revision(policy_copy) != after_data


def test_revision_changes_when_a_file_moves(policy_copy: Path) -> None:
    before = policy_revision(policy_copy)
    shutil.move(policy_copy / "veiligdelen" / "facts", policy_copy / "veiligdelen" / "feiten")
    assert policy_revision(policy_copy) != before


def test_other_files_do_not_count(policy_copy: Path) -> None:
    before = policy_revision(policy_copy)
    (policy_copy / "README.md").write_text("notes", encoding="utf-8")
    (policy_copy / ".hidden").mkdir()
    (policy_copy / ".hidden" / "x.rego").write_text("package x", encoding="utf-8")
    assert policy_revision(policy_copy) == before

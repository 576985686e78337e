"""`gateway policy test|eval|table` through Typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gateway.cli.policy import app
from tests.policy.conftest import POLICIES, case, share

runner = CliRunner()


def test_test_prints_the_summary_and_exits_zero() -> None:
    result = runner.invoke(app, ["test", "--policy-dir", str(POLICIES)])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    passed, failed = last.split(", ")
    assert failed == "0 failed"
    assert int(passed.removesuffix(" passed")) > 40
    assert "FAIL" not in result.output


def test_test_prints_failures_and_exits_one(policy_copy: Path) -> None:
    test_file = policy_copy / "veiligdelen" / "decision" / "decision_test.rego"
    test_file.write_text(test_file.read_text(encoding="utf-8") + "\ntest_nope if false\n", encoding="utf-8")
    result = runner.invoke(app, ["test", "--policy-dir", str(policy_copy)])
    assert result.exit_code == 1
    assert "FAIL veiligdelen.decision_test.test_nope:" in result.output
    assert result.output.strip().splitlines()[-1].endswith(" passed, 1 failed")


def test_test_exits_one_on_a_compile_error(policy_copy: Path) -> None:
    (policy_copy / "veiligdelen" / "broken.rego").write_text("package broken\n\nx if {\n", encoding="utf-8")
    result = runner.invoke(app, ["test", "--policy-dir", str(policy_copy)])
    assert result.exit_code == 1
    assert "veiligdelen/broken.rego:" in result.output
    # The check refuses it before a single test runs (gateway/policy/_check.py).
    assert result.output.strip().splitlines()[-1].endswith(": 1 fout(en)")
    assert "passed" not in result.output


def test_eval_prints_the_decision(tmp_path: Path) -> None:
    policy_input = share(
        "politie", case(), "melding", "veiligheid_herstellen", ["veilig_thuis"], ["aard", "x"]
    )
    input_file = tmp_path / "input.json"
    input_file.write_text(json.dumps(policy_input), encoding="utf-8")
    result = runner.invoke(app, ["eval", "--input", str(input_file), "--policy-dir", str(POLICIES)])
    assert result.exit_code == 0, result.output
    decision = json.loads(result.output)
    assert decision["allowed"] is True
    assert decision["recipients"]["veilig_thuis"]["fields"] == ["aard"]
    assert decision["policyRevision"].startswith("sha256:")


def test_eval_refuses_unreadable_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    result = runner.invoke(app, ["eval", "--input", str(bad), "--policy-dir", str(POLICIES)])
    assert result.exit_code == 2


def test_table_prints_markdown() -> None:
    result = runner.invoke(app, ["table", "--policy-dir", str(POLICIES)])
    assert result.exit_code == 0
    assert "#### structureel/veiligheidsplan" in result.output
    assert "| veiligheidsbeoordeling | veilig_thuis → om |" in result.output

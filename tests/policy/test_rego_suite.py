"""The Rego test suite through run_tests: it passes, and failures, syntax errors and crashes show."""

from __future__ import annotations

import json
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.policy import run_tests
from gateway.policy._source import whole_input_with_lines
from tests.policy.conftest import POLICIES

TEST_FILE = Path("veiligdelen") / "decision" / "decision_test.rego"


def test_the_suite_passes() -> None:
    report = run_tests(POLICIES)
    failures = [f"{r.name}: {r.message}" for r in report.results if not r.ok]
    assert failures == []
    assert report.errors == ()
    assert report.passed > 40
    assert report.failed == 0
    assert report.ok
    assert report.summary == f"{report.passed} passed, 0 failed"
    names = {r.name for r in report.results}
    assert "veiligdelen.decision_test.test_demo_allowed_for_all_three_under_samenloop" in names


def test_a_broken_test_is_reported_by_name(policy_copy: Path) -> None:
    path = policy_copy / TEST_FILE
    path.write_text(
        path.read_text(encoding="utf-8")
        + '\ntest_deliberately_wrong if {\n\t_open("om", "acuut", "fysieke_veiligheid").allowed\n}\n',
        encoding="utf-8",
    )
    report = run_tests(policy_copy)
    assert report.failed == 1
    (failure,) = [r for r in report.results if not r.ok]
    assert failure.name == "veiligdelen.decision_test.test_deliberately_wrong"
    assert "undefined" in failure.message
    assert report.passed > 40


def test_a_test_that_errors_is_a_failure(policy_copy: Path) -> None:
    path = policy_copy / TEST_FILE
    path.write_text(
        path.read_text(encoding="utf-8") + "\n_twice := 1\n\n_twice := 2\n\ntest_conflict if _twice == 1\n",
        encoding="utf-8",
    )
    report = run_tests(policy_copy)
    (failure,) = [r for r in report.results if not r.ok]
    assert failure.name == "veiligdelen.decision_test.test_conflict"


def test_a_data_change_fails_the_consistency_tests(policy_copy: Path) -> None:
    data_file = policy_copy / "veiligdelen" / "facts" / "data.json"
    facts = json.loads(data_file.read_text(encoding="utf-8"))
    facts["grants"]["melding"]["veilig_thuis"]["politie"]["purposes"].append("nieuwsgierigheid")
    data_file.write_text(json.dumps(facts), encoding="utf-8")
    report = run_tests(policy_copy)
    failed = {r.name for r in report.results if not r.ok}
    assert "veiligdelen.decision_test.test_every_grant_is_complete" in failed


def test_a_syntax_error_is_reported_with_file_and_line(policy_copy: Path) -> None:
    path = policy_copy / "veiligdelen" / "decision" / "decision.rego"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.append("broken if {")
    lines.append("\t1 =")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = run_tests(policy_copy)
    assert not report.ok
    assert report.errors
    assert any(
        e.startswith(f"veiligdelen/decision/decision.rego:{len(lines) - 1}:") for e in report.errors
    ), report.errors


def test_unreadable_data_is_reported(policy_copy: Path) -> None:
    (policy_copy / "veiligdelen" / "facts" / "data.json").write_text("{not json", encoding="utf-8")
    report = run_tests(policy_copy)
    assert not report.ok
    assert any(e.startswith("veiligdelen/facts/data.json:1:") for e in report.errors)


def test_whole_input_with_is_refused_naming_file_and_line(policy_copy: Path) -> None:
    path = policy_copy / TEST_FILE
    text = path.read_text(encoding="utf-8")
    text += '\ntest_replaces_input if {\n\tdecision.result with input as {"action": "share"}\n}\n'
    path.write_text(text, encoding="utf-8")
    line = text.count("\n") - 1
    report = run_tests(policy_copy)
    assert report.results == ()  # nothing ran: the process would have crashed
    (error,) = report.errors
    assert error.startswith(f"{TEST_FILE.as_posix()}:{line}: `with input as`")


def test_a_regopy_crash_is_contained(tmp_path: Path) -> None:
    """regopy aborts on `with input as`; the child dies, the report says so, we live on."""
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "p.rego").write_text("package p\n\nr if count(input.l) > 1\n", encoding="utf-8")
    (tmp_path / "p" / "p_test.rego").write_text(
        'package p_test\n\nimport data.p\n\ntest_crash if p.r with input as {"l": [1, 2]}\n', encoding="utf-8"
    )
    report = run_tests(tmp_path, unsafe_allow_whole_input_with=True)
    assert not report.ok
    assert any("crashed" in e for e in report.errors), report.errors


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        ('x if data.p.r with input as {"a": 1}', [1]),
        ("x if data.p.r with input.a as 1", []),
        ("x if data.p.r\n\twith input\n\tas {}", [2]),
        ('# with input as {"a": 1}\nx if true', []),
        ('x := "with input as"', []),
        ("x := `with input as`\ny if data.p.r with input as {}", [2]),
    ],
)
def test_whole_input_with_detection(source: str, lines: list[int]) -> None:
    assert whole_input_with_lines(source) == lines


def test_a_runtime_error_names_the_test_and_its_place(tmp_path: Path) -> None:
    """regopy evaluates a call to an unknown function to an error (the check refuses it first; run_tests
    alone still says which test and where)."""
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "p.rego").write_text("package p\n\nbroken := no_such_function(1)\n", encoding="utf-8")
    tests = "".join(f"test_t_{i} if {{ p.broken }}\n" for i in range(3))
    (tmp_path / "p" / "p_test.rego").write_text(
        f"package p_test\n\nimport data.p\n\n{tests}", encoding="utf-8"
    )
    report = run_tests(tmp_path, workers=1)
    assert [r.name for r in report.results] == [f"p_test.test_t_{i}" for i in range(3)]
    for i, result in enumerate(report.results):
        assert not result.ok and result.message.startswith(f"p/p_test.rego:{5 + i}: error: ")


@pytest.fixture
def bounded_stack() -> Iterator[None]:
    """At most 8 MiB of stack for the test children (inherited through spawn), so that the deep
    recursion below overflows it on any machine, even one with an unlimited stack."""
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    limit = 8 * 1024 * 1024
    bounded = limit if soft == resource.RLIM_INFINITY else min(soft, limit)
    resource.setrlimit(resource.RLIMIT_STACK, (bounded, hard))
    yield
    resource.setrlimit(resource.RLIMIT_STACK, (soft, hard))


# json.unmarshal of an array nested 200,000 deep: regopy's parser recurses once per level and overflows
# any 8 MiB stack (SIGSEGV) while the test is evaluated, after the policy compiled and other tests ran.
DEEP_JSON = """test_crash if {
\tn := 200000
\topen := ["[" | some _ in numbers.range(1, n)]
\tclose := ["]" | some _ in numbers.range(1, n)]
\tjson.unmarshal(concat("", array.concat(open, close)))
}
"""


def test_the_runner_stops_after_a_crash_inside_a_test(tmp_path: Path, bounded_stack: None) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "p.rego").write_text("package p\n\nr := 1\n", encoding="utf-8")
    # Two workers take every other test: a, crash, d, f in one child; b, c, e in the other.
    names = ["a", "b", "crash", "c", "d", "e", "f"]
    rules = [DEEP_JSON if n == "crash" else f"test_{n} if p.r == 1\n" for n in names]
    text = "package p_test\n\nimport data.p\n\n" + "\n".join(rules)
    (tmp_path / "p" / "p_test.rego").write_text(text, encoding="utf-8")
    line = text.splitlines().index("test_crash if {") + 1

    report = run_tests(tmp_path, workers=2)

    by_name = {r.name.removeprefix("p_test.test_"): r for r in report.results}
    assert sorted(by_name) == ["a", "b", "c", "crash", "e"]  # d and f, after the crash in its chunk, did not
    assert [n for n, r in by_name.items() if r.ok] == ["a", "b", "c", "e"]
    crash = by_name["crash"].message
    assert crash.startswith(f"p/p_test.rego:{line}: regopy crashed (SIG"), crash
    assert crash.endswith(") while evaluating this test")
    assert report.errors == ("2 test(s) not run: the runner stops after a crash in p_test.test_crash",)
    assert not report.ok and report.summary == "4 passed, 1 failed"

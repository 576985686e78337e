"""`gateway policy check` (gateway/policy/_check.py): what OPA's Go compiler refuses, by file:line, before
anything compiles into the engine: on its own, in `gateway policy test` and in a reload (the watcher's too).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.errors import PolicyLoadFailed
from gateway.policy import PolicySource, read_policy
from gateway.policy._check import EMBEDDED, GO_COMPILER, check_source
from gateway.policy._source import source_from_bytes
from gateway.policy.admin import WATCHER, reload_policy
from gateway.runtime import Runtime
from gateway.services.trail import CallContext
from gateway.settings import REPO_ROOT, Settings
from gateway.tracing import from_header
from tests.policy.standin import OPA_GO_AVAILABLE

POLICIES = REPO_ROOT / "policies"
MODULE = "veiligdelen/decision/case.rego"
needs_go = pytest.mark.skipif(not OPA_GO_AVAILABLE, reason="OPA's Go compiler is not installed (make setup)")


def with_fault(fault: str) -> tuple[PolicySource, int]:
    source = read_policy(POLICIES)
    texts = dict(source.texts)
    texts[MODULE] += "\n" + fault + "\n"
    line = texts[MODULE].count("\n")  # the fault's own line, 1-based: the last one
    return source_from_bytes(POLICIES, [(p, t.encode()) for p, t in texts.items()]), line


def test_the_repositorys_policy_is_clean_on_both_paths() -> None:
    source = read_policy(POLICIES)
    for use_go in [True, False] if OPA_GO_AVAILABLE else [False]:
        report = check_source(source, use_go=use_go)
        assert report.ok, [str(f) for f in report.findings]
        assert report.compiler == (GO_COMPILER if use_go else EMBEDDED)
        assert report.modules == len(source.modules) and "geen fouten" in report.summary


@needs_go
@pytest.mark.parametrize(
    ("fault", "code", "message"),
    [
        ("broken := no_such_function(1)", "rego_type_error", "undefined function no_such_function"),
        ("unsafe_rule if { x == 1 }", "rego_unsafe_var_error", "var x is unsafe"),
        ("bad_arity := count(1, 2)", "rego_type_error", "count: arity mismatch"),
        ('wrong_type := 1 + "a"', "rego_type_error", "plus"),
        ("unclosed if {", "rego_parse_error", "unexpected eof token"),
    ],
)
def test_what_the_go_compiler_refuses_is_named_by_file_and_line(fault: str, code: str, message: str) -> None:
    source, line = with_fault(fault)
    report = check_source(source, use_go=True)
    assert not report.ok
    first = report.findings[0]
    assert (first.file, first.code) == (MODULE, code)
    assert first.line in (line, line + 1)  # a parse error at end of file is on the line after
    assert message in first.message
    assert str(first).startswith(f"{MODULE}:{first.line}: {code}: ")


def test_without_go_the_check_is_regopys_and_says_so() -> None:
    source, line = with_fault("unclosed if {")
    report = check_source(source, use_go=False)
    assert report.compiler == EMBEDDED and not report.ok
    assert report.findings[0].file == MODULE and report.findings[0].line == line
    # What only the Go compiler sees passes here: the command line warns about this (test below).
    unknown, _ = with_fault("broken := no_such_function(1)")
    assert check_source(unknown, use_go=False).ok


@needs_go
def test_policy_check_and_policy_test_exit_1_naming_the_place(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    target = policies / MODULE
    target.write_text(target.read_text() + "\nbroken := no_such_function(1)\n")
    line = target.read_text().count("\n")
    for command in ("check", "test"):
        result = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "policy", command, "--policy-dir", str(policies)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"ERROR {MODULE}:{line}: rego_type_error: undefined function no_such_function" in result.stderr
        assert "Traceback" not in result.stderr
        assert "passed" not in result.stdout  # policy test stops before the tests


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[tuple[Runtime, Path]]:
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    rt = Runtime(Settings(data_dir=tmp_path / "data", policy_dir=policies))
    yield rt, policies
    rt.close()


UNUSED_IMPORT = "import data.veiligdelen.facts.agencies as never_read"


def _append_unknown_function(text: str) -> tuple[str, str]:
    return text + "\nbroken := no_such_function(1)\n", "broken := no_such_function(1)"


def _add_unused_import(text: str) -> tuple[str, str]:
    head = "package veiligdelen.decision\n"
    return text.replace(head, f"{head}{UNUSED_IMPORT}\n", 1), UNUSED_IMPORT


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(
            _append_unknown_function,
            "rego_type_error: undefined function no_such_function",
            marks=needs_go,
            id="compiler",
        ),
        pytest.param(_add_unused_import, f"rego_compile_error: {UNUSED_IMPORT} unused", id="strict"),
    ],
)
def test_a_reload_refuses_what_the_check_finds_and_records_it(
    runtime: tuple[Runtime, Path],
    caplog: pytest.LogCaptureFixture,
    edit: Callable[[str], tuple[str, str]],
    message: str,
) -> None:
    """What the compiler refuses, and what only the strict pass does, are refused the same way."""
    rt, policies = runtime
    old = rt.policy.current.revision
    target = policies / MODULE
    text, fault = edit(target.read_text())
    target.write_text(text)
    line = text.split("\n").index(fault) + 1
    ctx = CallContext(principal=WATCHER, trace=from_header(None))
    with caplog.at_level(logging.INFO, logger="gateway.policy"), pytest.raises(PolicyLoadFailed) as raised:
        reload_policy(rt, ctx)
    assert raised.value.errors[0] == {"field": f"{MODULE}:{line}", "message": message}
    assert rt.policy.current.revision == old
    last = rt.audit.entry(rt.audit.size() - 1)
    assert last is not None
    entry = last.entry
    assert (entry["action"], entry["outcome"]) == ("policy.reload", "check_failed")
    assert f"{MODULE}:{line}: {message}" in entry["refs"]["errors"]
    lines = [r.getMessage() for r in caplog.records if "policy reload" in r.getMessage()]
    assert len(lines) == 1 and "check_failed" in lines[0] and f"{MODULE}:{line}" in lines[0]

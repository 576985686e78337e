"""Every reload, loaded or refused, is one log line on ``gateway.policy`` (issue 11 item 4) beside its
audit entry: the outcome, who, the old and the candidate revision, the errors' count and the first one."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.errors import PolicyLoadFailed
from gateway.policy.admin import WATCHER, reload_policy
from gateway.runtime import Runtime
from gateway.services.trail import CallContext
from gateway.settings import REPO_ROOT, Settings
from gateway.tracing import from_header

CTX = CallContext(principal=WATCHER, trace=from_header(None))


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[tuple[Runtime, Path]]:
    policies = tmp_path / "policies"
    shutil.copytree(REPO_ROOT / "policies", policies)
    rt = Runtime(Settings(data_dir=tmp_path / "data", policy_dir=policies))
    yield rt, policies
    rt.close()


def reload_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gateway.policy" and "policy reload" in r.getMessage()]


def rego_file(policies: Path) -> Path:
    return sorted(p for p in policies.rglob("*.rego") if not p.name.endswith("_test.rego"))[0]


def test_a_loaded_reload_is_one_info_line_naming_both_revisions(
    runtime: tuple[Runtime, Path], caplog: pytest.LogCaptureFixture
) -> None:
    rt, policies = runtime
    old = rt.policy.current.revision
    target = rego_file(policies)
    target.write_text(target.read_text() + "\n# another revision, the same rules\n")
    with caplog.at_level(logging.INFO, logger="gateway.policy"):
        result = reload_policy(rt, CTX)
    [line] = reload_lines(caplog)
    assert line.levelno == logging.INFO
    message = line.getMessage()
    assert message.startswith("policy reload loaded by policy-watcher:")
    assert f"old revision {old}" in message and f"candidate {result['revision']}" in message
    assert result["revision"] != old and "0 error(s)" in message


def test_a_refused_reload_is_one_warning_line_with_the_first_error(
    runtime: tuple[Runtime, Path], caplog: pytest.LogCaptureFixture
) -> None:
    rt, policies = runtime
    old = rt.policy.current.revision
    target = rego_file(policies)
    target.write_text(target.read_text() + "\nbroken if {\n")  # a syntax error
    with caplog.at_level(logging.INFO, logger="gateway.policy"), pytest.raises(PolicyLoadFailed):
        reload_policy(rt, CTX)
    [line] = reload_lines(caplog)
    assert line.levelno == logging.WARNING
    message = line.getMessage()
    assert message.startswith("policy reload check_failed by policy-watcher:")
    relative = target.relative_to(policies).as_posix()
    assert f"old revision {old}" in message and f"; first: {relative}:" in message
    assert rt.policy.current.revision == old


def test_a_reload_whose_tests_fail_is_logged_with_the_failing_test(
    runtime: tuple[Runtime, Path], caplog: pytest.LogCaptureFixture
) -> None:
    rt, policies = runtime
    (policies / "veiligdelen" / "zz_false_test.rego").write_text(
        "package veiligdelen.zz_false_test\n\ntest_always_false if { false }\n"
    )
    with caplog.at_level(logging.INFO, logger="gateway.policy"), pytest.raises(PolicyLoadFailed):
        reload_policy(rt, CTX)
    [line] = reload_lines(caplog)
    message = line.getMessage()
    assert message.startswith("policy reload tests_failed by policy-watcher:")
    assert "first: veiligdelen.zz_false_test.test_always_false:" in message

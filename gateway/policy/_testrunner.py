"""Run the ``test_*`` rules of every ``*_test.rego`` package, in a child process.

regopy crashes take the whole process down (a segmentation fault is not an exception), so the rules are
evaluated in spawned children (one per worker, each with its share of the tests) that report over a
pipe. When a child dies, the test it was running is reported as failed with its rule's ``file:line``,
and that child's remaining tests are reported as not run (a count): a crash is a failure, not a dead
gateway, and one typo many tests reach does not crash (and recompile) once per test. The other children
carry on. tests/policy/test_rego_suite.py crashes one inside a test on purpose (a deeply nested
``json.unmarshal`` overflows regopy's stack).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from gateway.policy._source import (
    PolicyCompileError,
    PolicySource,
    read_policy,
    refused_constructs,
    rego_errors,
)

TEST_TIMEOUT_SECONDS = 60.0
"""How long one test (or compiling the modules) may take before its child is stopped."""

_PACKAGE = re.compile(r"^package\s+([A-Za-z_][A-Za-z0-9_.]*)", re.MULTILINE)
_TEST_RULE = re.compile(r"^(test_[A-Za-z0-9_]*)\b", re.MULTILINE)


@dataclass(frozen=True)
class TestResult:
    """One test rule: ``name`` is ``<package>.<rule>``."""

    __test__ = False  # not a pytest test class

    name: str
    ok: bool
    message: str = ""


@dataclass(frozen=True)
class TestReport:
    """All test results of one policy revision, plus errors that kept tests from running."""

    __test__ = False

    revision: str
    results: tuple[TestResult, ...] = ()
    errors: tuple[str, ...] = ()
    """Compile errors, refused constructs, crashes outside a test: ``file:line: message``."""

    @property
    def passed(self) -> int:
        """Tests that evaluated to true."""
        return sum(1 for r in self.results if r.ok)

    @property
    def failed(self) -> int:
        """Tests that were false, undefined, errored or crashed."""
        return sum(1 for r in self.results if not r.ok)

    @property
    def ok(self) -> bool:
        """Every test passed and nothing kept one from running."""
        return self.failed == 0 and not self.errors and bool(self.results)

    @property
    def summary(self) -> str:
        """``N passed, M failed``."""
        return f"{self.passed} passed, {self.failed} failed"


@dataclass(frozen=True)
class _Test:
    package: str
    rule: str
    where: str = field(default="", compare=False)
    """``file:line`` of the rule, named with a failure (regopy's errors and crashes give no place)."""

    @property
    def name(self) -> str:
        return f"{self.package}.{self.rule}"

    @property
    def entrypoint(self) -> str:
        return f"{self.package.replace('.', '/')}/{self.rule}"


def discover_tests(source: PolicySource) -> list[_Test]:
    """The ``test_*`` rules of each ``*_test.rego`` module, in file order, without duplicates."""
    tests: dict[str, _Test] = {}
    for path, text in sorted(source.test_modules.items()):
        package = _PACKAGE.search(text)
        if not package:
            continue
        for match in _TEST_RULE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            test = _Test(package.group(1), match.group(1), f"{path}:{line}")
            tests.setdefault(test.name, test)
    return list(tests.values())


def run_tests(
    policy: Path | str | PolicySource,
    *,
    timeout: float = TEST_TIMEOUT_SECONDS,
    workers: int | None = None,
    unsafe_allow_whole_input_with: bool = False,
) -> TestReport:
    """Run every ``test_*`` rule of every ``*_test.rego`` package under ``policy``.

    ``policy`` is a directory, or a `PolicySource` already read: a reload tests exactly the bytes it
    compiles, even if a file changes meanwhile. ``workers`` child processes share the tests (default:
    `default_workers`). Refuses (as errors naming ``file:line``) any
    ``with input as``, which crashes regopy 1.5.2; ``unsafe_allow_whole_input_with`` exists only to
    prove that a crash is contained.
    """
    if isinstance(policy, PolicySource):
        source = policy
    else:
        try:
            source = read_policy(policy)
        except PolicyCompileError as e:
            found = e.errors or [{"field": "policy", "message": e.detail}]
            return TestReport("", errors=tuple(_lines(found)))
    if not unsafe_allow_whole_input_with:
        refused = refused_constructs(source.modules)
        if refused:
            return TestReport(source.revision, errors=tuple(_lines(refused)))
    tests = discover_tests(source)
    if not tests:
        return TestReport(source.revision, errors=("no test_* rules in any *_test.rego module",))
    # Interleaved chunks, one per worker: each compiles once in its own child and runs its share.
    n = max(1, min(workers if workers is not None else default_workers(), len(tests)))
    chunks = [tests[i::n] for i in range(n)]
    with ThreadPoolExecutor(max_workers=n) as pool:
        runs = list(pool.map(lambda chunk: _run_serially(source, chunk, timeout), chunks))
    order = {t.name: i for i, t in enumerate(tests)}
    results = sorted((r for done, _ in runs for r in done), key=lambda r: order.get(r.name, len(order)))
    errors = list(dict.fromkeys(e for _, errs in runs for e in errs))  # a compile error shows once
    return TestReport(source.revision, tuple(results), tuple(errors))


def default_workers() -> int:
    """Test processes that run at once: two where there are two cores (each compiles the policy)."""
    return max(1, min(2, os.cpu_count() or 1))


def _run_serially(
    source: PolicySource, tests: list[_Test], timeout: float
) -> tuple[list[TestResult], list[str]]:
    """Run ``tests`` in a child; after a crash, report the test that crashed (by name and the place of
    its rule) and stop: the rest are said not to have run. A typo in a rule many tests reach would
    otherwise crash a fresh child (and compile the policy again) once per test."""
    results: list[TestResult] = []
    errors: list[str] = []
    where = {t.name: t.where for t in tests}
    done, crash = _run_child(source, tests, timeout)
    # A failure names its test and where the test's rule is (regopy's runtime errors give no line).
    results.extend(r if r.ok else TestResult(r.name, False, f"{where[r.name]}: {r.message}") for r in done)
    if crash is not None:
        if crash.running is None:  # died or failed before the first test: nothing more will run
            errors.extend(crash.errors)
        else:
            test = crash.running
            results.append(TestResult(test.name, False, f"{test.where}: {crash.message}"))
            left = len(tests) - len(done) - 1
            if left:
                errors.append(f"{left} test(s) not run: the runner stops after a crash in {test.name}")
    return results, errors


@dataclass
class _Crash:
    running: _Test | None
    message: str
    errors: list[str] = field(default_factory=list)


def _run_child(
    source: PolicySource, tests: list[_Test], timeout: float
) -> tuple[list[TestResult], _Crash | None]:
    """One child for ``tests``; returns the results it reported and, if it stopped early, why."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(
        target=_child_main,
        args=(sender, source.modules, source.data, [(t.package, t.rule) for t in tests]),
        daemon=True,
    )
    child.start()
    sender.close()
    by_name = {t.name: t for t in tests}
    results: list[TestResult] = []
    running: _Test | None = None
    try:
        while True:
            if not receiver.poll(timeout):
                child.kill()
                child.join()
                what = f"timed out after {timeout:g} s"
                if running is None:
                    return results, _Crash(None, what, [f"compiling the policy {what}"])
                return results, _Crash(running, what)
            try:
                message = receiver.recv()
            except EOFError:
                break
            kind = message[0]
            if kind == "start":
                running = by_name[message[1]]
            elif kind == "result":
                results.append(TestResult(message[1], bool(message[2]), str(message[3])))
                running = None
            elif kind == "error":
                child.join()
                return results, _Crash(None, "compile error", list(message[1]))
            elif kind == "done":
                child.join()
                return results, None
    finally:
        receiver.close()
    child.join()
    what = _exit_text(child.exitcode)
    if running is None:
        return results, _Crash(None, what, [f"the test process {what} before running a test"])
    return results, _Crash(running, f"regopy {what} while evaluating this test")


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"crashed ({signal.Signals(-code).name})"
        except ValueError:
            return f"crashed (signal {-code})"
    return f"exited with code {code}"


def _lines(errors: list[dict[str, str]]) -> list[str]:
    return [f"{e['field']}: {e['message']}" for e in errors]


# --- the child ----------------------------------------------------------------------------------------


def _child_main(
    conn: Connection, modules: dict[str, str], data: dict[str, Any], tests: list[tuple[str, str]]
) -> None:
    """Compile every module (tests included) once, then evaluate each test rule, reporting as it goes."""
    import regopy

    from gateway.policy._embedded import new_interpreter

    entrypoints = [f"{pkg.replace('.', '/')}/{rule}" for pkg, rule in tests]
    try:
        interp = new_interpreter()
        for name, text in sorted(modules.items()):
            interp.add_module(name, text)
        interp.add_data_json(json.dumps(data, ensure_ascii=False))
        bundle = interp.build(None, entrypoints)
        interp.set_input_term("{}")
    except regopy.RegoError as e:
        conn.send(("error", _lines(rego_errors(str(e), modules))))
        conn.close()
        return
    for (pkg, rule), entrypoint in zip(tests, entrypoints, strict=True):
        name = f"{pkg}.{rule}"
        conn.send(("start", name))
        ok, message = _evaluate(interp, bundle, entrypoint, modules)
        conn.send(("result", name, ok, message))
    conn.send(("done",))
    conn.close()


def _evaluate(interp: Any, bundle: Any, entrypoint: str, modules: dict[str, str]) -> tuple[bool, str]:
    try:
        output = interp.query_bundle_entrypoint(bundle, entrypoint)
    except Exception as e:  # a test that errors fails; the run goes on
        return False, f"error: {type(e).__name__}: {str(e)[:300]}"
    text = str(output)
    if not output.ok():
        errors = rego_errors(text, modules)
        return False, "error: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    if text.strip() == "undefined":
        return False, "undefined (a condition of the test does not hold)"
    try:
        value = json.loads(text)["expressions"][0]
    except (ValueError, KeyError, IndexError) as e:
        return False, f"unreadable result: {e}"
    if value is True:
        return True, ""
    return False, f"evaluated to {json.dumps(value)[:200]}"

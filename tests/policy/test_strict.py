"""gateway/policy/_strict.py: the rules `opa check --strict` adds, by file:line with OPA's messages, on both
check paths, in `gateway policy check` and in a reload; and what they must not mistake for a finding."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.policy import PolicySource, read_policy
from gateway.policy._check import EMBEDDED, _go_findings, check_source
from gateway.policy._source import source_from_bytes
from gateway.policy._strict import strict_findings
from gateway.settings import REPO_ROOT
from tests.policy.standin import OPA_GO_AVAILABLE

POLICIES = REPO_ROOT / "policies"
MODULE = "veiligdelen/decision/case.rego"
UNUSED_Y = "rego_compile_error: unused argument y. (hint: use _ (wildcard variable) instead)"


def found(text: str) -> list[str]:
    """The findings of one module ``m.rego`` as ``line: code: message``."""
    return [f"{f.line}: {f.code}: {f.message}" for f in strict_findings({"m.rego": "package p\n" + text})]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("r if {\n\tx := 1\n\ttrue\n}", ["3: rego_compile_error: assigned var x unused"]),
        ("r := [a | some a in [1]; b := a]", ["2: rego_compile_error: assigned var b unused"]),
        ("r := {k: 1 | some k in [1]\n\tz := k}", ["3: rego_compile_error: assigned var z unused"]),
        ("r if {\n\tevery v in [1] {\n\t\tw := v\n\t}\n}", ["4: rego_compile_error: assigned var w unused"]),
        ("r if {\n\t[a, b] := [1, 2]\n\ta > 0\n}", ["3: rego_compile_error: assigned var b unused"]),
        ('r if {\n\t{"k": v} := {"k": 1}\n}', ["3: rego_compile_error: assigned var v unused"]),
        ("r := 1 if { false } else := 2 if {\n\tu := 3\n}", ["3: rego_compile_error: assigned var u unused"]),
        ("r if {\n\tsome s\n\ttrue\n}", ["3: rego_compile_error: declared var s unused"]),
        ("f(x, y) := x", [f"2: {UNUSED_Y}"]),
        ("f(x, y) := 1 if { x > 0 } else := 2", [f"2: {UNUSED_Y}"]),
        ("import data.lib\nr := 1", ["2: rego_compile_error: import data.lib unused"]),
        ("import data.a.b as c\nr := 1", ["2: rego_compile_error: import data.a.b as c unused"]),
        (
            "import data.lib\nimport input.lib\nr := lib",
            ["3: rego_compile_error: import must not shadow import data.lib"],
        ),
        ("input := 1", ["2: rego_compile_error: rules must not shadow input (use a different rule name)"]),
        (
            "f(data) := 1",
            ["2: rego_compile_error: args must not shadow data (use a different variable name)"],
        ),
        (
            "r if {\n\tinput := 1\n\tinput > 0\n}",
            ["3: rego_compile_error: variables must not shadow input (use a different variable name)"],
        ),
        ("r if any([true])", ["2: rego_type_error: deprecated built-in function calls in expression: any"]),
        (
            "r := x if x := net.cidr_overlap(input.a, input.b)",
            ["2: rego_type_error: deprecated built-in function calls in expression: net.cidr_overlap"],
        ),
        (
            "import data.lib\nr if {\n\tlib := 2\n\tlib > 1\n}",
            [
                "2: rego_compile_error: import data.lib unused",
                "4: strict_shadowed_import: variable lib shadows import data.lib"
                " (use a different variable name)",
            ],
        ),
    ],
)
def test_each_rule_is_found_on_its_line(text: str, expected: list[str]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize("keyword", ["in", "if", "contains", "every"])
def test_an_import_ending_in_a_keyword_does_not_hide_the_next_rule(keyword: str) -> None:
    text = f"import future.keywords.{keyword}\nr if {{\n\tx := 1\n\ttrue\n}}"
    assert found(text) == ["4: rego_compile_error: assigned var x unused"]


@pytest.mark.parametrize(
    "text",
    [
        "r := x if {\n\tx := 1\n}",  # used in the head's value
        "r[k] := 1 if {\n\tk := input.k\n}",  # in the head's ref
        "r contains m if {\n\tm := input.m\n}",  # in a contains head
        # in a later comprehension
        "r if {\n\tx := 1\n\tys := [y | some y in [1]; y > x]\n\tcount(ys) > 0\n}",
        "r if {\n\tx := 1\n\tallow with input.a as x\n}\nallow if input.a",  # in a with value
        "r if {\n\tx := 1\n\tallow\n\t\twith input.a as x\n}\nallow if input.a",  # with on its own line
        "r := 1 if { false } else := u if {\n\tu := 2\n}",  # in an else branch's value
        "f(x) := 1 if { false } else := x",  # an argument only the else branch reads
        "f(_, y) := y",  # the wildcard argument
        "r if {\n\t_ := input.a\n}",  # the wildcard assigned
        'r if {\n\tmsg := "x := 1 # y := 2"\n\tmsg != ""\n}',  # := and # inside a string
        'r if {\n\tmsg := `z := 1\n{ [`\n\tmsg != ""\n}',  # inside a raw string, across lines
        "r if {\n\tx := 1 # z := 2\n\tx > 0\n}",  # inside a comment
        "r if {\n\tsome k, v in input.m\n}",  # some .. in binds what it reads
        "r if {\n\tevery k, v in input.m { k != v }\n}",
        "r if {\n\tx := input.a\n\tevery v in input.m { v > x }\n}",  # in an every body
        "r if {\n\tx := 1\n\tinput.m[x]\n}",  # in a ref's brackets
        "r if {\n\tx := 1; x > 0\n}",  # after a semicolon
        "r if {\n\tx := 1 +\n\t\t2\n\tx > 0\n}",  # an expression continued after an operator
        "import future.keywords.in\nimport rego.v1\nr := 1",  # future and rego imports are exempt
        "import data.lib\nr := lib.f(1)",  # an import read through a call
        "import data.lib\nr if {\n\tallow with lib.f as g\n}\nallow := 1\ng(_) := 1",  # a with target
        "r := {a: 1} if {\n\ta := input.k\n}",  # an object key is a variable
    ],
)
def test_what_is_no_finding(text: str) -> None:
    assert found(text) == []


# What OPA 1.x refuses without --strict, so its Go compiler can referee: for each of these the pass must
# give exactly the Go compiler's findings of these kinds, by line.
SHARED_WITH_GO = (
    "declared var",
    "variables must not shadow",
    "rules must not shadow",
    "args must not shadow",
    "import must not shadow",
    "deprecated built-in",
)
REFEREED = [
    "f(input) := 1",
    "r if {\n\tevery k, v in input.xs {\n\t\tv > 0\n\t}\n}",
    "r if {\n\tevery k, v in input.xs {\n\t\tk != v\n\t}\n}",
    "r := [x | some x; x = 1]",
    "r := {x: 1 | some x, y; x = 1}",
    "r if {\n\tsome x\n\tinput.a[x]\n}",
    "r if {\n\tsome x\n\tinput.a[_] == 1\n}",
    "r if {\n\tsome x, y\n\tinput.a[x] == 1\n}",
    "r if {\n\tdata := 1\n\tdata > 0\n}",
    "data.p.x := 1",
    "r if all([true])",
    'r if { re_match("a", "a") }',
    'r if { x := cast_string(1); x != "" }',
    "import data.a\nimport data.b as a\nr := a",
    "import input.a\nimport data.a\nr := a",
    "r if {\n\tsome x in input.xs\n\tevery y in x {\n\t\ty > 0\n\t}\n}",
    "r := 1 if {\n\tsome z\n\ttrue\n} else := 2 if {\n\tsome w\n\tinput[w]\n}",
]


@pytest.mark.skipif(not OPA_GO_AVAILABLE, reason="OPA's Go compiler is not installed (make setup)")
@pytest.mark.parametrize("text", REFEREED)
def test_where_opa_checks_the_same_the_go_compiler_agrees(text: str) -> None:
    module = "package p\n" + text + "\n"
    source = source_from_bytes(Path("p"), [("m.rego", module.encode())])
    go = [(f.line, f.message) for f in _go_findings(source) if f.message.startswith(SHARED_WITH_GO)]
    ours = [
        (f.line, f.message)
        for f in strict_findings({"m.rego": module})
        if f.message.startswith(SHARED_WITH_GO)
    ]
    assert sorted(ours) == sorted(go)


def test_a_module_the_pass_cannot_read_is_left_to_the_compiler() -> None:
    assert found("r if {\n\tx := 1\n") == []
    assert found('r := "open') == []


def test_every_assignment_of_the_repositorys_policy_is_seen() -> None:
    """The pass reads our real policies: renaming any assigned variable where it is assigned (and only
    there) makes exactly that line a finding, and the policies as they are have none."""
    modules = dict(read_policy(POLICIES).modules)
    assert strict_findings(modules) == []
    assignment = re.compile(r"^[ \t]+([a-z_][a-z0-9_]*) := ", re.MULTILINE)
    seen = 0
    for name, text in modules.items():
        for m in assignment.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            renamed = text[: m.start(1)] + m[1] + "_unread" + text[m.end(1) :]
            findings = [(f.line, f.message) for f in strict_findings({name: renamed})]
            assert (line, f"assigned var {m[1]}_unread unused") in findings, (name, line)
            seen += 1
    assert seen > 150


def with_text(extra: str) -> tuple[PolicySource, int]:
    """The repository's policy with ``extra`` appended to MODULE; the line of ``extra``'s first line."""
    source = read_policy(POLICIES)
    texts = dict(source.texts)
    line = texts[MODULE].count("\n") + 2
    texts[MODULE] += "\n" + extra + "\n"
    return source_from_bytes(POLICIES, [(p, t.encode()) for p, t in texts.items()]), line


@pytest.mark.parametrize("use_go", [True, False] if OPA_GO_AVAILABLE else [False])
def test_both_check_paths_report_a_strict_finding_by_file_and_line(use_go: bool) -> None:
    source, line = with_text("_unused_assignment if {\n\tleft_over := 1\n\ttrue\n}")
    report = check_source(source, use_go=use_go)
    assert [str(f) for f in report.findings] == [
        f"{MODULE}:{line + 1}: rego_compile_error: assigned var left_over unused"
    ]
    assert "1 fout(en)" in report.summary and "strikte regels" in report.summary


@pytest.mark.skipif(not OPA_GO_AVAILABLE, reason="OPA's Go compiler is not installed (make setup)")
def test_what_the_go_compiler_also_refuses_is_reported_once() -> None:
    source, line = with_text("_shadow if {\n\tinput := 1\n\tinput > 0\n}")
    report = check_source(source, use_go=True)
    message = "variables must not shadow input (use a different variable name)"
    assert [(f.file, f.line, f.message) for f in report.findings] == [(MODULE, line + 1, message)]


def test_without_go_regopy_is_not_run_on_what_the_strict_pass_refuses() -> None:
    """A rule named data crashes regopy's compiler (std::runtime_error, the process dies): the strict
    pass refuses it first, so the check itself survives to say where."""
    source, line = with_text("data := 1")
    report = check_source(source, use_go=False)
    assert report.compiler == EMBEDDED
    assert [str(f) for f in report.findings] == [
        f"{MODULE}:{line}: rego_compile_error: rules must not shadow data (use a different rule name)"
    ]


def test_policy_check_exits_1_printing_the_place(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    target = policies / MODULE
    target.write_text(target.read_text() + "\n_f(ctx, extra) := ctx.actor\n")
    line = target.read_text().count("\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "policy", "check", "--policy-dir", str(policies)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    hint = "(hint: use _ (wildcard variable) instead)"
    expected = f"ERROR {MODULE}:{line}: rego_compile_error: unused argument extra. {hint}"
    assert expected in result.stderr.splitlines()
    assert "Traceback" not in result.stderr

"""``gateway policy``: run the Rego tests, evaluate one decision, print the decision table and row tests."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gateway import REPO_ROOT
from gateway.cli.policy_impact import impact, reload

# The Rego engine loads when a command runs, not for ``gateway --help``.
if TYPE_CHECKING:
    from gateway.policy._source import PolicyCompileError

app = typer.Typer(no_args_is_help=True, help="Test and evaluate the Rego policies")

PolicyDir = Annotated[
    Path,
    typer.Option(
        "--policy-dir",
        envvar="GATEWAY_POLICY_DIR",
        help="The policy directory (default: the repository's policies/)",
        file_okay=False,
    ),
]
DEFAULT_POLICY_DIR = REPO_ROOT / "policies"


@app.command()
def check(policy_dir: PolicyDir = DEFAULT_POLICY_DIR) -> None:
    """What `opa check --strict` refuses (unknown functions, unsafe variables, arity, types; unused
    assignments, arguments and imports, shadowed input/data), each as file:line: code: message; exit 1
    on any. Without OPA's Go compiler: the strict rules and regopy's compile errors only."""
    if not _check(policy_dir):
        raise typer.Exit(1)


def _check(policy_dir: Path) -> bool:
    """Run the check, print its findings and summary; True when there are none."""
    from gateway.policy._check import EMBEDDED, check_source
    from gateway.policy._source import PolicyCompileError, read_policy

    try:
        source = read_policy(policy_dir)
    except PolicyCompileError as e:
        _print_compile_error(e)
        return False
    report = check_source(source)
    for finding in report.findings:
        typer.echo(f"ERROR {finding}", err=True)
    if report.compiler == EMBEDDED:
        typer.echo(
            "Let op: OPA's Go compiler is niet geïnstalleerd (make setup); alleen de strikte regels en "
            "regopy's compileerfouten zijn gecontroleerd, niet onbekende functies, onveilige variabelen "
            "of ariteit.",
            err=True,
        )
    typer.echo(report.summary, err=not report.ok)
    return report.ok


@app.command()
def test(
    policy_dir: PolicyDir = DEFAULT_POLICY_DIR,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also list the tests that pass")] = False,
) -> None:
    """Check the modules (as `gateway policy check`), then run every test_* rule of every *_test.rego;
    prints failures and 'N passed, M failed'."""
    from gateway.policy._testrunner import run_tests

    if not _check(policy_dir):
        raise typer.Exit(1)
    report = run_tests(policy_dir)
    for error in report.errors:
        typer.echo(f"ERROR {error}", err=True)
    for result in report.results:
        if not result.ok:
            typer.echo(f"FAIL {result.name}: {result.message}")
        elif verbose:
            typer.echo(f"PASS {result.name}")
    typer.echo(report.summary)
    if report.failed or report.errors:
        raise typer.Exit(1)


@app.command("eval")
def eval_(
    input_file: Annotated[
        str, typer.Option("--input", "-i", help="A JSON file holding the policy input, or - for stdin")
    ],
    policy_dir: PolicyDir = DEFAULT_POLICY_DIR,
) -> None:
    """Evaluate one decision and print it as JSON."""
    from gateway.policy._embedded import EmbeddedEngine
    from gateway.policy._source import PolicyCompileError

    source = "standard input" if input_file == "-" else input_file
    try:
        text = sys.stdin.read() if input_file == "-" else Path(input_file).read_text(encoding="utf-8")
    except OSError as e:
        raise typer.BadParameter(f"{source}: {e.strerror}", param_hint="--input") from e
    except UnicodeDecodeError as e:
        raise typer.BadParameter(f"{source}: not UTF-8 text", param_hint="--input") from e
    try:
        policy_input = json.loads(text)
    except json.JSONDecodeError as e:
        # The parser's message gives a position only, never the text it read.
        raise typer.BadParameter(f"{source}: not JSON ({e})", param_hint="--input") from e
    if not isinstance(policy_input, dict):
        raise typer.BadParameter(f"{source}: the policy input must be a JSON object", param_hint="--input")
    try:
        # One decision: one worker, still under the deadline, so a runaway rule cannot hang the shell.
        engine = EmbeddedEngine(policy_dir, pool_size=1)
    except PolicyCompileError as e:
        _print_compile_error(e)
        raise typer.Exit(2) from e
    try:
        decision = engine.decide(policy_input)
    finally:
        engine.close()
    typer.echo(json.dumps(decision.to_json(), indent=2, ensure_ascii=False))


@app.command()
def table(
    policy_dir: PolicyDir = DEFAULT_POLICY_DIR,
    format: Annotated[
        str, typer.Option("--format", "-f", help="markdown (per step, for docs/policies.md), html or pdf")
    ] = "markdown",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file (pdf needs it)")] = None,
    diff: Annotated[
        Path | None,
        typer.Option("--diff", help="An older policy directory: show what changes from it", file_okay=False),
    ] = None,
) -> None:
    """The decision table of data.json: Markdown per step (default), or the lawyers' table (one row per
    grant, in Dutch, as in the console) as HTML or PDF; with --diff, the rows added, removed and changed."""
    from gateway.cli.policy_table import write_table

    write_table(policy_dir, format, out, diff)


@app.command("row-tests")
def row_tests_(policy_dir: PolicyDir = DEFAULT_POLICY_DIR) -> None:
    """Print rows_test.rego: one Rego test per row of data.json (where it allows, where it refuses)."""
    from gateway.policy._rowtests import row_tests
    from gateway.policy._source import PolicyCompileError, read_policy

    try:
        source = read_policy(policy_dir)
    except PolicyCompileError as e:
        _print_compile_error(e)
        raise typer.Exit(2) from e
    typer.echo(row_tests(source.facts), nl=False)


def _print_compile_error(e: PolicyCompileError) -> None:
    for error in e.errors or [{"field": "policy", "message": e.detail}]:
        typer.echo(f"ERROR {error['field']}: {error['message']}", err=True)


app.command()(impact)
app.command()(reload)

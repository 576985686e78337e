"""The ``gateway`` command: serve, demo, clients, audit, policy, outbox.

Every command fails the same way: one line on stderr naming what is wrong (the file, the setting, the
URL) and a non-zero exit (2 for a usage error), never a traceback; ``main`` is the one place that turns
errors into that line. ``GATEWAY_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from gateway.cli._common import DEBUG_ENV, DataDir, check_data_dir
from gateway.cli.clients import clients_app, token
from gateway.cli.console import console_link
from gateway.cli.errors import describe_error
from gateway.cli.serve import serve

__all__ = ["app", "describe_error", "main", "run"]

app = typer.Typer(help="Veilig Delen gateway", no_args_is_help=True, add_completion=False)
app.command()(serve)
app.command()(token)
app.command(name="console-link")(console_link)
app.add_typer(clients_app, name="clients")


def _register_policy_app() -> None:
    from gateway.cli.policy import app as policy_app

    app.add_typer(policy_app, name="policy", help="Test and evaluate the Rego policies")


def _register_audit_app() -> None:
    from gateway.cli.audit import app as audit_app

    app.add_typer(audit_app, name="audit", help="Check, export and search the audit log")


def _register_outbox_app() -> None:
    from gateway.cli.outbox import app as outbox_app

    app.add_typer(outbox_app, name="outbox", help="Push deliveries: list them, requeue dead letters")


def _register_sim_agency() -> None:
    from gateway.cli.sim_agency import sim_agency

    app.command("sim-agency")(sim_agency)


def _register_keys_app() -> None:
    from gateway.cli.keys import app as keys_app

    app.add_typer(keys_app, name="keys", help="The signing keys: list, stage, rotate, retire")


def _register_migrate() -> None:
    from gateway.cli.migrate import migrate

    app.command("migrate")(migrate)


def _register_retention_app() -> None:
    from gateway.cli.retention import app as retention_app

    app.add_typer(retention_app, name="retention", help="Erase expired messages and idle cases' identities")


_register_policy_app()
_register_migrate()
_register_retention_app()
_register_audit_app()
_register_sim_agency()
_register_outbox_app()
_register_keys_app()


@app.command()
def demo(
    data_dir: DataDir = None,
    quiet: Annotated[bool, typer.Option(help="Print only the trail and the verdict")] = False,
    distributed: Annotated[
        bool, typer.Option(help="Run the five agency systems as separate sim-agency processes over HTTP")
    ] = False,
) -> None:
    """Play the seed's process end to end on a fresh data directory and print the trail."""
    from gateway.cli.demo import run_demo

    if data_dir is not None:
        check_data_dir(data_dir)
    ok = run_demo(data_dir, verbose=not quiet, distributed=distributed)
    raise typer.Exit(0 if ok else 1)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the ``gateway`` command and return its exit code; a failure is one line on stderr."""
    debug = os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")
    try:
        result = app(args=argv, prog_name="gateway", standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        return 1
    except typer.TyperException as e:
        if not e.format_message():
            return e.exit_code  # ``gateway`` alone: Typer printed the help, nothing failed to explain
        if debug and e.__cause__ is not None:
            raise  # a failure we worded ourselves, raised from the error whose traceback is wanted
        line, code = describe_error(e)
        typer.echo(f"error: {line}", err=True)
        return code
    except Exception as e:
        if debug:
            raise
        line, code = describe_error(e)
        typer.echo(f"error: {line}", err=True)
        return code
    return result if isinstance(result, int) else 0


def main() -> None:
    """Console entry point."""
    sys.exit(run())

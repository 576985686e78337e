"""``gateway policy table``: the decision table as Markdown, HTML or PDF, or the diff of two directories.

Markdown without ``--diff`` is the per-step table of ``docs/policies.md`` (`gateway.policy._table`);
everything else is the lawyers' table (`gateway.policy._lawtable`), the same rows and words as the
console's ``/console/beslistabel``, verified marks read from each directory's own ``rows_test.rego``.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from gateway.policy._source import PolicySource

FORMATS = ("markdown", "html", "pdf")


def _read(policy_dir: Path, option: str) -> PolicySource:
    from gateway.policy._source import PolicyCompileError, read_policy

    try:
        return read_policy(policy_dir)
    except PolicyCompileError as e:
        for error in e.errors or [{"field": "policy", "message": e.detail}]:
            typer.echo(f"ERROR {error['field']}: {error['message']}", err=True)
        raise typer.Exit(2) from e
    except OSError as e:
        raise typer.BadParameter(f"{policy_dir}: {e.strerror}", param_hint=option) from e


def write_table(policy_dir: Path, fmt: str, out: Path | None, diff: Path | None) -> None:
    """Render and write (to ``out``, else standard output) the table or the diff in ``fmt``."""
    from gateway.policy._lawtable import diff_tables, law_table
    from gateway.policy._lawtable_formats import (
        render_diff_markdown,
        render_diff_pdf,
        render_html,
        render_pdf,
    )
    from gateway.policy._table import decision_table

    if fmt not in FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}", param_hint="--format")
    if fmt == "pdf" and out is None and sys.stdout.isatty():
        raise typer.BadParameter("a PDF goes to a file: add --out FILE", param_hint="--out")
    new = _read(policy_dir, "--policy-dir")
    made = dt.datetime.now().astimezone()
    new_table = law_table(new.facts, new.test_modules, new.revision)
    body: str | bytes
    if diff is not None:
        old = _read(diff, "--diff")
        changes = diff_tables(law_table(old.facts, old.test_modules, old.revision), new_table)
        if fmt == "markdown":
            body = render_diff_markdown(changes)
        elif fmt == "html":
            body = render_html(diff=changes, made=made, old_source=str(diff), new_source=str(policy_dir))
        else:
            body = render_diff_pdf(changes, made=made)
    elif fmt == "markdown":
        body = decision_table(new.facts)
    elif fmt == "html":
        body = render_html(new_table, made=made, new_source=str(policy_dir))
    else:
        body = render_pdf(new_table, made=made)
    if out is None:
        if isinstance(body, bytes):
            sys.stdout.buffer.write(body)
            sys.stdout.buffer.flush()
        else:
            typer.echo(body, nl=False)
        return
    try:
        if isinstance(body, bytes):
            out.write_bytes(body)
        else:
            out.write_text(body, encoding="utf-8")
    except OSError as e:
        raise typer.BadParameter(f"{out}: {e.strerror}", param_hint="--out") from e
    typer.echo(f"wrote {out}", err=True)


__all__ = ["FORMATS", "write_table"]

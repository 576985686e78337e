"""``gateway outbox list|retry``: the push deliveries waiting, done or given up, for operators.

Both work on the database directly (a running gateway need not be up); a requeued row is pushed by the
next pass of any running deliverer (every ``gateway serve`` worker runs one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from gateway.cli._common import DataDir, settings_for

if TYPE_CHECKING:
    import datetime as dt

app = typer.Typer(help="Push deliveries: list them, requeue dead letters", no_args_is_help=True)

STATUSES = ("pending", "delivered", "dead_letter")


def _agency(value: str | None) -> str | None:
    from connectors import AGENCIES

    if value is not None and value not in AGENCIES:
        raise typer.BadParameter(f"must be one of {', '.join(AGENCIES)}", param_hint="--agency")
    return value


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else "-"


AgencyOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--agency", help="Only rows to this recipient agency", callback=_agency),
]


@app.command("list")
def outbox_list(
    status: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="pending, delivered or dead_letter"),
    ] = None,
    agency: AgencyOption = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many rows")] = 1000,
    data_dir: DataDir = None,
) -> None:
    """One line per outbox row: message id, agency, status, attempts, next attempt, last error."""
    from gateway.cli.audit import _engine
    from gateway.services.outbox import outbox_rows

    if status is not None and status not in STATUSES:
        raise typer.BadParameter(f"must be one of {', '.join(STATUSES)}", param_hint="--status")
    rows = outbox_rows(_engine(settings_for(data_dir)), status=status, agency=agency, limit=limit)
    for r in rows:
        upcoming = _when(r.next_attempt_at) if r.status == "pending" else "-"
        typer.echo(
            f"{r.message_id}  {r.recipient:<12}  {r.status:<11}  attempts {r.attempts:<3}  "
            f"next {upcoming}  last error {r.last_error or '-'}"
        )
    if not rows:
        typer.echo("no outbox rows" + (" that match" if status or agency else ""), err=True)


@app.command("retry")
def outbox_retry(
    message_id: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(help="The message to push again (a dead letter, or a pending one now)"),
    ] = None,
    dead_letter: Annotated[
        bool, typer.Option("--dead-letter", help="Requeue every dead letter (of --agency, when given)")
    ] = False,
    agency: AgencyOption = None,
    data_dir: DataDir = None,
) -> None:
    """Put rows back to pending with fresh attempts, each with an audit entry; pushed at the next pass."""
    from audit import AuditWriteError
    from gateway.cli.audit import _audit_parts
    from gateway.db import utcnow
    from gateway.services.outbox import outbox_rows, requeue_entries, requeue_writes

    if (message_id is None) == (not dead_letter):
        raise typer.BadParameter("give a MESSAGE_ID or --dead-letter, not both and not neither")
    store, _ = _audit_parts(data_dir)
    if message_id is not None:
        rows = outbox_rows(store.engine, message_id=message_id, agency=agency, limit=1)
        if not rows:
            to = f" to {agency}" if agency else ""
            raise typer.TyperException(f"no outbox row for message {message_id}{to}")
        if rows[0].status == "delivered":
            raise typer.TyperException(f"message {message_id} was delivered; nothing to retry")
    else:
        rows = outbox_rows(store.engine, status="dead_letter", agency=agency, limit=100_000)
        if not rows:
            typer.echo("no dead letters to requeue")
            return
    try:
        store.append(requeue_entries(rows), writes=requeue_writes(rows, utcnow()))
    except AuditWriteError as e:
        if not e.writes_failed:
            raise
        raise typer.TyperException(
            "nothing requeued: a row changed meanwhile (a deliverer is pushing it); try again"
        ) from e
    typer.echo(f"requeued {len(rows)} message{'s' if len(rows) != 1 else ''}")

"""``gateway retention sweep``: erase, now, what the retention terms say the gateway no longer holds.

The same sweep that every ``gateway serve`` worker runs periodically (``GATEWAY_RETENTION_SWEEP_INTERVAL``);
safe while gateways run on the same database.
"""

from __future__ import annotations

import typer

from gateway.cli._common import DataDir, settings_for

app = typer.Typer(help="Erase expired messages and idle cases' identities", no_args_is_help=True)


@app.command("sweep")
def retention_sweep(data_dir: DataDir = None) -> None:
    """Erase acknowledged and expired messages and the identities of idle cases; print the counts."""
    from gateway.runtime import Runtime
    from gateway.services.retention import sweep

    rt = Runtime(settings_for(data_dir))
    try:
        result = sweep(rt)
    finally:
        rt.close()
    typer.echo(
        f"gewist / erased: {result.messages} berichten / messages, "
        f"identiteiten van {result.cases} zaken / identities of {result.cases} cases"
    )

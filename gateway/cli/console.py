"""``gateway console-link``: a one-time login link to the privacy officers' console."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from gateway.cli._common import DataDir, check_data_dir, gateway_url, settings_for

if TYPE_CHECKING:
    from sqlalchemy import Engine


def console_link(
    agency: Annotated[str, typer.Option(help="The agency the person works for")],
    role: Annotated[str, typer.Option(help="privacy_officer (sees its agency's entries) or auditor (all)")],
    url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="The gateway's base URL (default: what serve recorded)"),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Print a login link for the console, valid once and for a few minutes."""
    from connectors import AGENCIES
    from gateway.console import CONSOLE_ROLES, login_url, mint_login_token
    from gateway.console.sessions import LINK_TTL
    from gateway.db import make_engine
    from gateway.migrations import upgrade

    if role not in CONSOLE_ROLES:
        raise typer.BadParameter(f"must be one of {', '.join(CONSOLE_ROLES)}", param_hint="--role")
    if agency not in AGENCIES:
        raise typer.BadParameter(f"must be one of {', '.join(sorted(AGENCIES))}", param_hint="--agency")
    settings = settings_for(data_dir)
    check_data_dir(settings.data_dir)
    base, _ = gateway_url(url, data_dir)
    engine = make_engine(settings.effective_database_url, busy_timeout=settings.db_busy_timeout)
    try:
        upgrade(engine)
        token = mint_login_token(engine, agency, role)
    finally:
        engine.dispose()
    minutes = int(LINK_TTL.total_seconds() // 60)
    typer.echo(login_url(base, token))
    typer.echo(f"(one use, valid {minutes} minutes; {role} of {agency})", err=True)


def console_line(base: str, engine: Engine, agency: str = "veilig_thuis") -> str:
    """The line ``gateway serve`` prints in local mode: a one-time auditor's link to the console."""
    from gateway.console import login_url, mint_login_token

    link = login_url(base, mint_login_token(engine, agency, "auditor"))
    return f"  console          {link}  (one use, 5 minutes; more: gateway console-link)"

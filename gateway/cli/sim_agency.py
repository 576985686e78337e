"""``gateway sim-agency``: one simulated agency system as its own HTTP server (``docs/agency-api.yaml``).

It verifies every request's signature against the gateway's JWKS, keeps each delivery once per message
id in ``<data-dir>/<agency>-deliveries.db`` (so a restart keeps them), answers fetches from the
simulated records, and misbehaves on request (``--behaviour``, ``POST /sim/behaviour``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Optional

import typer

from connectors.base import AGENCIES
from gateway import REPO_ROOT
from gateway.cli._common import listen

DEFAULT_DIR = REPO_ROOT / "var" / "sim-agencies"


def store_path(data_dir: Path, agency: str) -> Path:
    """Where the simulated ``agency`` keeps its deliveries."""
    return data_dir / f"{agency}-deliveries.db"


def sim_agency(
    agency: Annotated[str, typer.Option(help=f"The agency: {', '.join(AGENCIES)}")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port")],
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    data_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--data-dir", help=f"Where its SQLite store lives (default {DEFAULT_DIR})"),
    ] = None,
    gateway_url: Annotated[
        str, typer.Option("--gateway-url", help="The gateway whose JWKS verifies the signatures")
    ] = "http://127.0.0.1:8000",
    behaviour: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            "--behaviour",
            help="slow=S, fail=N, fail-after-store=N, timeout-after-store=N, hang=S, down=true (repeatable)",
        ),
    ] = None,
    public_url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="This system's URL as the gateway calls it, when a proxy stands in between"),
    ] = None,
) -> None:
    """Run one agency's simulated system until interrupted."""
    import uvicorn

    from connectors.receiver import DeliveryReceiver, GatewayKeys, MessageStore
    from connectors.simulated import SimulatedAgencySystem
    from standins.agency import Behaviour, SimulatedAgencyServer

    if agency not in AGENCIES:
        raise typer.BadParameter(f"{agency!r} is not one of {', '.join(AGENCIES)}", param_hint="--agency")
    try:
        behaviour_now = Behaviour.parse(behaviour or [])
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--behaviour") from None
    directory = data_dir or DEFAULT_DIR
    if directory.exists() and not directory.is_dir():
        raise typer.TyperException(f"data directory {directory} is a file, not a directory")
    sock = listen(host, port)
    keys = GatewayKeys(gateway_url.rstrip("/"))
    store = MessageStore(store_path(directory, agency))
    receiver = DeliveryReceiver(keys.verifier(), store, agency=agency, public_url=public_url)
    server = SimulatedAgencyServer(SimulatedAgencySystem(agency), receiver, behaviour_now)
    typer.echo(
        f"sim-agency {agency} on http://{host}:{port} (store {store.path}; keys from {gateway_url})", err=True
    )
    config = uvicorn.Config(server.app(), log_level="warning", server_header=False, lifespan="off")
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[sock])
    store.close()

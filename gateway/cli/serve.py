"""``gateway serve``: bind, start the app (one process or several workers), record the URL."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from gateway.cli._common import URL_FILE, DataDir, check_data_dir, listen, settings_for
from gateway.cli.console import console_line

if TYPE_CHECKING:
    from fastapi import FastAPI

    from gateway.settings import Settings

WORKER_HEALTHCHECK_SECONDS = 60
"""How long a worker may take to answer the supervisor's health ping before it is replaced."""

WORKER_APP = "gateway.cli.serve:worker_app"
"""What each worker process of ``--workers N`` imports and calls: its own runtime, from the environment."""


def worker_app() -> FastAPI:
    """One worker's app, from the environment: the gateway with its deliverer (`with_deliverer`)."""
    from gateway.app import create_app

    return with_deliverer(create_app())


def with_deliverer(application: FastAPI) -> FastAPI:
    """Run the runtime's outbox deliverer while ``application`` serves, unless
    ``GATEWAY_DELIVERY_WORKER=false``. Every worker and replica runs one: leases keep them apart."""
    rt = application.state.runtime
    if rt.settings.delivery_worker:
        application.router.on_startup.append(rt.deliverer.start)
        application.router.on_shutdown.append(rt.deliverer.stop)
    if rt.settings.retention_sweep:  # erases expired messages and idle cases' identities (issue 9)
        from gateway.services.retention import RetentionSweeper

        sweeper = RetentionSweeper(rt, interval=rt.settings.retention_sweep_interval)
        application.router.on_startup.append(sweeper.start)
        application.router.on_shutdown.append(sweeper.stop)
    if rt.settings.witnesses:  # submits new checkpoints to the agencies' witnesses (issue 12)
        from gateway.services.witnessing import Witnessing

        witnessing = Witnessing(rt)
        application.router.on_startup.append(witnessing.start)
        application.router.on_shutdown.append(witnessing.stop)
        application.state.witnessing = witnessing
    return application


def serve(
    host: Annotated[Optional[str], typer.Option(help="Interface to listen on")] = None,  # noqa: UP045
    port: Annotated[Optional[int], typer.Option(help="Port")] = None,  # noqa: UP045
    data_dir: DataDir = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1, help="Worker processes (one per core), each its own runtime on the same data and database"
        ),
    ] = 1,
) -> None:
    """Start the gateway: SQLite, embedded Rego and simulated agencies unless configured otherwise."""
    import uvicorn

    from gateway.app import create_app
    from gateway.runtime import Runtime

    settings = settings_for(data_dir, host=host, port=port)
    check_data_dir(settings.data_dir)
    limits_line = _worker_rate_limits(settings, workers)
    # Bind first: a port in use is said in one line before any start-up work (uvicorn would log it and exit).
    sock = _listen(settings.host, settings.port)
    try:
        try:
            # With workers, this runtime only does what must happen once, before they start: migrate the
            # database and create the signing keys and the pseudonym secret, which N workers would race.
            application = with_deliverer(create_app(settings)) if workers == 1 else None
            rt = application.state.runtime if application is not None else Runtime(settings)
        except ValueError as e:
            # At start-up no request has been seen, so the message holds configuration only.
            raise typer.TyperException(f"the gateway cannot start with these settings: {e}") from e
        base = settings.base_url
        url_file = _record_url(settings.data_dir, base)
        typer.echo(
            "\n".join(
                [
                    f"Veilig Delen gateway on {base}",
                    f"  data directory   {settings.data_dir}",
                    f"  database         {settings.effective_database_url.split('@')[-1]}",
                    f"  policy engine    {settings.policy_engine} "
                    f"(revision {rt.policy.current.revision[:19]})",
                    f"  agency systems   {settings.connectors}",
                    f"  deliverer        {_deliverer_line(settings, workers)}",
                    f"  OpenAPI          {base}/v1/openapi.json  (browse: {base}/v1/docs)",
                    f"  token endpoint   {base}/oauth2/token",
                    f"  audit log key    {rt.signer.verifier_key()}",
                    *([_witnesses_line(settings)] if settings.witnesses else []),
                    *([f"  workers          {workers} processes", limits_line] if workers > 1 else []),
                    *([console_line(base, rt.db)] if settings.mode == "local" else []),
                    "Register an agency system:  gateway clients register --client-id ID --agency AGENCY "
                    "--role agency_system --public-key key.pem",
                ]
            )
        )
        if application is None:
            rt.close()
            try:
                _serve_workers(settings, sock, workers)
            finally:
                _forget_url(url_file, base)
            return
        config = uvicorn.Config(
            application,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            server_header=False,
            **proxy_options(settings),
        )
        server = uvicorn.Server(config)

        def forget_and_stop(signum: int, _frame: object) -> None:
            # uvicorn stops gracefully on SIGTERM, then raises it again with the handler it found: this one.
            # Forget the URL, then end by the signal as before, which service managers count as a clean stop.
            _forget_url(url_file, base)
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

        previous = signal.signal(signal.SIGTERM, forget_and_stop)
        try:
            server.run(sockets=[sock])
        finally:
            signal.signal(signal.SIGTERM, previous)
            _forget_url(url_file, base)
    finally:
        sock.close()
    if not server.started:
        raise typer.TyperException(f"the gateway did not start on {base}")


def _deliverer_line(settings: Settings, workers: int) -> str:
    if not settings.delivery_worker:
        return "off in this process (GATEWAY_DELIVERY_WORKER=false): retries wait for another"
    where = "in each worker" if workers > 1 else "in this process"
    return (
        f"{where}: {settings.delivery_max_attempts} attempts, backoff up to "
        f"{settings.delivery_backoff_cap:g} s, lease {settings.delivery_lease:g} s"
    )


def _witnesses_line(settings: Settings) -> str:
    names = ", ".join(w.name for w in settings.witnesses)
    return (
        f"  witnesses        {names}: quorum {settings.quorum}, "
        f"submitting every {settings.witness_interval:g} s"
    )


def _worker_rate_limits(settings: Settings, workers: int) -> str:
    """The start-up line on rate limits under ``--workers``; refused where each worker's own count would
    multiply the configured budget and the operator has said this is production."""
    storage = settings.rate_limit_storage
    if workers == 1 or not storage.startswith("memory://"):
        shared = storage.split("@")[-1]  # never a password
        return f"  rate limits      {settings.rate_limit} per client, one budget in {shared}"
    if settings.mode == "production":
        raise typer.TyperException(
            f"--workers {workers} with GATEWAY_RATE_LIMIT_STORAGE=memory:// would give every client "
            f"{workers} budgets, one per worker; set GATEWAY_RATE_LIMIT_STORAGE=redis://HOST:PORT/DB"
        )
    return (
        f"  rate limits      {settings.rate_limit} per client PER WORKER (memory://): up to {workers} times "
        "that in all; GATEWAY_RATE_LIMIT_STORAGE=redis://... shares one budget"
    )


def _serve_workers(settings: Settings, sock: socket.socket, workers: int) -> None:
    """Run ``workers`` uvicorn processes on ``sock``; each builds its own app (``WORKER_APP``) from the
    environment, so the command-line options are handed down in it."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    os.environ.update(
        GATEWAY_DATA_DIR=str(settings.data_dir), GATEWAY_HOST=settings.host, GATEWAY_PORT=str(settings.port)
    )
    # A reload reaches one worker; the others follow the revision it activated (gateway.policy.follow).
    os.environ.setdefault("GATEWAY_POLICY_FOLLOW", "true")
    config = uvicorn.Config(
        WORKER_APP,
        factory=True,
        workers=workers,
        log_level="warning",
        server_header=False,
        **proxy_options(settings),
        # uvicorn kills a worker that does not answer its health ping within this many seconds, and a
        # its replacement too: on a busy machine the default 5 s can turn a slow start into a restart loop.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )
    supervisor = Multiprocess(config, sockets=[sock])
    supervisor.run()  # until SIGINT or SIGTERM, which it passes on to the workers
    if any(p.exitcode == 3 for p in supervisor.processes):  # uvicorn's STARTUP_FAILURE
        raise typer.TyperException(f"a worker of the gateway did not start on {settings.base_url}")


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's proxy options: ``X-Forwarded-For`` counts only from ``GATEWAY_FORWARDED_ALLOW_IPS``.

    uvicorn's own default trusts 127.0.0.1 (or ``$FORWARDED_ALLOW_IPS``); unset here means no proxy at
    all, so a local process cannot pose as many addresses to the per-address limits.
    """
    return {
        "proxy_headers": bool(settings.forwarded_allow_ips),
        "forwarded_allow_ips": settings.forwarded_allow_ips or None,
    }


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, as uvicorn would bind it, or one line saying why not."""
    return listen(host, port, "GATEWAY_HOST, GATEWAY_PORT, --host, --port")


def _record_url(data_dir: Path, url: str) -> Path:
    """Write the URL this gateway serves on into its data directory (mode 0600, replaced atomically)."""
    from audit import write_private_file

    path = data_dir / URL_FILE
    write_private_file(path, (url + "\n").encode(), replace=True)
    return path


def _forget_url(path: Path, url: str) -> None:
    """Remove the recorded URL when it is still this gateway's: a stopped gateway points nowhere."""
    # Gone already is fine; replaced by another gateway on this data directory, it stays.
    with contextlib.suppress(FileNotFoundError):
        if path.read_text().strip() == url:
            path.unlink()

"""``gateway serve``: bind, start the app (one process or several workers), record the URL."""

from __future__ import annotations

import contextlib
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    pass
from gateway.cli._common import URL_FILE, DataDir, check_data_dir, settings_for


def serve(
    host: Annotated[Optional[str], typer.Option(help="Interface to listen on")] = None,  # noqa: UP045
    port: Annotated[Optional[int], typer.Option(help="Port")] = None,  # noqa: UP045
    data_dir: DataDir = None,
) -> None:
    """Start the gateway: SQLite, embedded Rego and simulated agencies unless configured otherwise."""
    import uvicorn

    from gateway.app import create_app

    settings = settings_for(data_dir, host=host, port=port)
    check_data_dir(settings.data_dir)
    # Bind first: a port in use is said in one line before any start-up work (uvicorn would log it and exit).
    sock = _listen(settings.host, settings.port)
    try:
        try:
            application = create_app(settings)
        except ValueError as e:
            # At start-up no request has been seen, so the message holds configuration only.
            raise typer.TyperException(f"the gateway cannot start with these settings: {e}") from e
        rt = application.state.runtime
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
                    f"  OpenAPI          {base}/v1/openapi.json  (browse: {base}/v1/docs)",
                    f"  token endpoint   {base}/oauth2/token",
                    f"  audit log key    {rt.signer.verifier_key()}",
                    "Register an agency system:  gateway clients register --client-id ID --agency AGENCY "
                    "--role agency_system --public-key key.pem",
                ]
            )
        )
        config = uvicorn.Config(
            application, host=settings.host, port=settings.port, log_level="warning", server_header=False
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


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, as uvicorn would bind it, or one line saying why not."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as e:
        sock.close()
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise typer.TyperException(
            f"cannot listen on {host}:{port}: {reason} (GATEWAY_HOST, GATEWAY_PORT, --host, --port)"
        ) from e
    return sock


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

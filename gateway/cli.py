"""The ``gateway`` command: serve, demo, clients, audit, policy.

Every command fails the same way: one line on stderr naming what is wrong (the file, the setting, the
URL) and a non-zero exit (2 for a usage error), never a traceback; ``main`` is the one place that turns
errors into that line. ``GATEWAY_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from gateway.settings import Settings

if TYPE_CHECKING:
    import httpx
    import pydantic

    from gateway.auth import ClientRegistry

app = typer.Typer(help="Veilig Delen gateway", no_args_is_help=True, add_completion=False)
clients_app = typer.Typer(help="Manage agency systems allowed to get tokens", no_args_is_help=True)
app.add_typer(clients_app, name="clients")

DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help="Data directory (GATEWAY_DATA_DIR)")]  # noqa: UP045

DEBUG_ENV = "GATEWAY_DEBUG"
URL_FILE = "gateway.url"
"""Where ``gateway serve`` records the URL it serves on, in its data directory, for ``gateway token``."""


def settings_for(data_dir: Path | None = None, **overrides: object) -> Settings:
    """Settings from the environment, with command-line options on top."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)  # type: ignore[arg-type]


def check_data_dir(path: Path) -> None:
    """Refuse a data directory that is, or lies under, a file, before anything is created in it."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise typer.TyperException(
                    f"data directory {path}: {candidate} is a file, not a directory "
                    "(GATEWAY_DATA_DIR, --data-dir)"
                )
            return


def _register_policy_app() -> None:
    from gateway.policy.cli import app as policy_app

    app.add_typer(policy_app, name="policy", help="Test and evaluate the Rego policies")


def _register_audit_app() -> None:
    from gateway.audit_commands import app as audit_app

    app.add_typer(audit_app, name="audit", help="Check, export and search the audit log")


_register_policy_app()
_register_audit_app()


@app.command()
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
    path = data_dir / URL_FILE
    tmp = path.with_name(f".{URL_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(url + "\n")
    os.replace(tmp, path)
    return path


def _forget_url(path: Path, url: str) -> None:
    """Remove the recorded URL when it is still this gateway's: a stopped gateway points nowhere."""
    # Gone already is fine; replaced by another gateway on this data directory, it stays.
    with contextlib.suppress(FileNotFoundError):
        if path.read_text().strip() == url:
            path.unlink()


@app.command()
def demo(
    data_dir: DataDir = None,
    quiet: Annotated[bool, typer.Option(help="Print only the trail and the verdict")] = False,
) -> None:
    """Play the seed's process end to end on a fresh data directory and print the trail."""
    from gateway.demo import run_demo

    if data_dir is not None:
        check_data_dir(data_dir)
    ok = run_demo(data_dir, verbose=not quiet)
    raise typer.Exit(0 if ok else 1)


# -- clients -------------------------------------------------------------------------------------------


def _read_pem(value: str) -> str:
    if value == "-":
        return sys.stdin.read()
    if value.lstrip().startswith("-----BEGIN"):
        return value
    path = Path(value)
    if not path.is_file():
        raise typer.BadParameter(
            f"{value}: no such file; give a PEM file, '-' for standard input, or the PEM text",
            param_hint="--public-key",
        )
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise typer.BadParameter(f"{value}: not a readable PEM file", param_hint="--public-key") from e


def _registry(data_dir: Path | None) -> ClientRegistry:
    from audit import private_directory
    from gateway.auth import ClientRegistry
    from gateway.db import make_engine, make_sessionmaker
    from gateway.migrations import upgrade

    settings = settings_for(data_dir)
    check_data_dir(settings.data_dir)
    private_directory(settings.data_dir)
    engine = make_engine(settings.effective_database_url)
    upgrade(engine)
    return ClientRegistry(make_sessionmaker(engine))


@clients_app.command("register")
def clients_register(
    client_id: Annotated[str, typer.Option("--client-id", help="Client identifier")],
    agency: Annotated[str, typer.Option(help="politie, veilig_thuis, om, reclassering or rvdk")],
    role: Annotated[str, typer.Option(help="agency_system, privacy_officer, auditor or policy_author")],
    public_key: Annotated[str, typer.Option("--public-key", help="PEM file, '-' or PEM text")],
    data_dir: DataDir = None,
) -> None:
    """Register a client and its public key (Ed25519, ES256 or RS256); usable at once."""
    from gateway.auth import ClientError

    registry = _registry(data_dir)
    try:
        client = registry.register(client_id, agency, role, _read_pem(public_key))
    except ClientError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    typer.echo(f"registered {client.client_id} ({client.agency}, {client.role}, {client.key_alg})")


@clients_app.command("keygen")
def clients_keygen(
    out: Annotated[Path, typer.Argument(help="Writes OUT.key.pem (private, mode 0600) and OUT.pub.pem")],
    kind: Annotated[str, typer.Option(help="Ed25519, ES256 or RS256")] = "Ed25519",
) -> None:
    """Generate a key pair for an agency system (the private key never leaves that system)."""
    from gateway.auth import generate_keypair

    if kind not in ("Ed25519", "ES256", "RS256"):
        raise typer.BadParameter("Ed25519, ES256 or RS256", param_hint="--kind")
    private_pem, public_pem = generate_keypair(kind)  # type: ignore[arg-type]
    key_path, pub_path = Path(f"{out}.key.pem"), Path(f"{out}.pub.pem")
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as e:
        raise typer.TyperException(f"{key_path} already exists; not overwritten") from e
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    pub_path.write_bytes(public_pem)
    typer.echo(f"private key {key_path} (keep it on the agency system), public key {pub_path}")


@app.command()
def token(
    client_id: Annotated[str, typer.Option("--client-id", help="Registered client id")],
    key: Annotated[Path, typer.Option(help="The client's private key (PEM)")],
    url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="The gateway's base URL. Default: the URL a running 'gateway serve' recorded in the data "
            "directory, else the one 'gateway serve' would use "
            "(GATEWAY_PUBLIC_URL, GATEWAY_HOST, GATEWAY_PORT)"
        ),
    ] = None,
    scope: Annotated[Optional[str], typer.Option(help="Scopes to ask for")] = None,  # noqa: UP045
    data_dir: DataDir = None,
) -> None:
    """Get an access token as an agency system would: a private_key_jwt client assertion (RFC 7523)."""
    import httpx

    from gateway.auth import make_client_assertion

    base, source = gateway_url(url, data_dir)
    token_url = f"{base}/oauth2/token"
    try:
        pem = key.read_bytes()
    except OSError as e:
        raise typer.TyperException(f"--key {key}: {e.strerror}") from e
    try:
        assertion = make_client_assertion(client_id, pem, token_url)
    except (ValueError, TypeError) as e:
        # cryptography says ValueError for a malformed PEM and TypeError for an encrypted one.
        raise typer.TyperException(
            f"--key {key}: not a private key this command can use (unencrypted PEM: Ed25519, ES256 or RS256)"
        ) from e
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    if scope:
        form["scope"] = scope
    try:
        r = httpx.post(token_url, data=form, timeout=30)
    except (httpx.TransportError, httpx.InvalidURL) as e:
        raise typer.TyperException(
            f"no gateway answers at {base} ({source}): {_reason(e)}; start one with 'gateway serve', "
            "or give --url"
        ) from e
    answer = _json_or_none(r)
    if r.status_code != 200:
        said = ""
        if isinstance(answer, dict):
            said = ": " + ": ".join(
                str(answer[k]) for k in ("error", "error_description", "title", "detail") if answer.get(k)
            )
        raise typer.TyperException(f"the gateway at {base} refused the token request: {r.status_code}{said}")
    if not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str):
        raise typer.TyperException(f"{base} answered without an access token; is it a Veilig Delen gateway?")
    typer.echo(answer["access_token"])


def gateway_url(url: str | None, data_dir: Path | None) -> tuple[str, str]:
    """The gateway's base URL and where it came from: ``--url``, what ``serve`` recorded, or the settings."""
    if url:
        return url.rstrip("/"), "--url"
    settings = settings_for(data_dir)
    recorded = settings.data_dir / URL_FILE
    if recorded.is_file():
        text = recorded.read_text(encoding="utf-8", errors="replace").strip()
        if not re.fullmatch(r"https?://\S+", text):
            raise typer.TyperException(f"{recorded} holds no URL; remove it or give --url")
        return text.rstrip("/"), f"recorded by gateway serve in {recorded}"
    return settings.base_url, "GATEWAY_PUBLIC_URL" if settings.public_url else "GATEWAY_HOST, GATEWAY_PORT"


def _json_or_none(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


@clients_app.command("list")
def clients_list(
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """List registered clients."""
    rows = registry_rows(_registry(data_dir))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        status = "revoked" if r["revokedAt"] else "active"
        typer.echo(f"{r['clientId']:<28} {r['agency']:<13} {r['role']:<16} {r['keyAlg']:<8} {status}")


def registry_rows(registry: ClientRegistry) -> list[dict[str, object]]:
    """Clients as plain rows."""
    return [
        {
            "clientId": c.client_id,
            "agency": c.agency,
            "role": c.role,
            "keyAlg": c.key_alg,
            "createdAt": c.created_at.isoformat(),
            "revokedAt": c.revoked_at.isoformat() if c.revoked_at else None,
        }
        for c in registry.list()
    ]


@clients_app.command("revoke")
def clients_revoke(
    client_id: Annotated[str, typer.Option("--client-id", help="Client identifier")],
    data_dir: DataDir = None,
) -> None:
    """Revoke a client: no new tokens, and its current tokens stop working."""
    from gateway.auth import ClientError

    try:
        _registry(data_dir).revoke(client_id)
    except ClientError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    typer.echo(f"revoked {client_id}")


# -- one line per failure ------------------------------------------------------------------------------


def describe_error(error: BaseException) -> tuple[str, int]:
    """The one line (without ``error:``) that says what went wrong, and the exit code.

    Expected errors say what they are about: the file, the setting, the URL, the database. Anything else
    is a bug: its type only, since its message could hold anything, and how to see the traceback.
    """
    import httpx
    import pydantic
    import sqlalchemy.exc
    from pydantic_settings import SettingsError

    from audit import AuditError, InvalidEntry
    from connectors.base import ConnectorError
    from gateway.auth.keys import SigningKeyError
    from gateway.errors import GatewayError

    message: str
    match error:
        case typer.TyperException():
            # Typer's own usage errors (exit 2) and the commands' expected failures (exit 1).
            message = error.format_message()
            ctx = getattr(error, "ctx", None)
            if error.exit_code == 2 and ctx is not None:
                message += f" (see '{ctx.command_path} --help')"
            return _one_line(message), error.exit_code
        case pydantic.ValidationError():
            return _one_line(f"bad settings: {_validation_problems(error)}"), 1
        case SettingsError():
            return _one_line(f"bad settings: {_settings_source_problem(error)}"), 1
        case GatewayError():
            message = error.detail
        case InvalidEntry():
            # Its text can quote a value of the entry, and an entry is about a person: say what failed only.
            message = "an audit entry could not be written (InvalidEntry); nothing was logged"
        case AuditError():
            message = error.reason
        case ConnectorError() | SigningKeyError():
            message = str(error)
        case httpx.TransportError() | httpx.InvalidURL():
            message = f"{_request_url(error)}{_reason(error)}"
        case sqlalchemy.exc.ArgumentError():
            # Raised for a URL SQLAlchemy cannot parse or has no driver for; the text holds no password.
            message = f"GATEWAY_DATABASE_URL is not a usable database URL: {error}"
        case sqlalchemy.exc.DBAPIError():
            # The driver's first line only: SQLAlchemy's own text repeats the statement and its parameters.
            message = (
                f"database unavailable: {_first_line(error.orig)} "
                "(GATEWAY_DATABASE_URL, or gateway.db in the data directory)"
            )
        case OSError():
            message = _os_reason(error)
        case _:
            return (
                f"unexpected {type(error).__name__} (a bug; please report it); "
                f"rerun with {DEBUG_ENV}=1 to see the traceback",
                1,
            )
    return _one_line(message), 1


def _one_line(message: str) -> str:
    return re.sub(r"\s*\n\s*", " ", message.strip()) or "failed"


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip() if error is not None else ""
    return text.splitlines()[0] if text else type(error).__name__


def _validation_problems(error: pydantic.ValidationError) -> str:
    """``GATEWAY_PORT: Input should be a valid integer; ...``: names and reasons, never the values."""
    prefix = "GATEWAY_" if error.title == "Settings" else f"{error.title}."
    parts = []
    for problem in error.errors(include_input=False, include_url=False, include_context=False):
        where = ".".join(str(part) for part in problem["loc"])
        reason = problem["msg"].removeprefix("Value error, ")
        parts.append(f"{prefix}{where.upper()}: {reason}" if where else reason)
    return "; ".join(parts)


def _settings_source_problem(error: Exception) -> str:
    """``GATEWAY_AGENCY_URLS: not valid JSON``, from pydantic-settings' 'error parsing value for field'."""
    field = re.search(r'field "(\w+)"', str(error))
    if field is None:
        return str(error)
    cause = error.__cause__
    why = "not valid JSON" if isinstance(cause, json.JSONDecodeError) else "cannot be read"
    return f"GATEWAY_{field.group(1).upper()}: {why}"


def _request_url(error: Exception) -> str:
    try:
        request = error.request  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when no request is attached
        return ""
    return f"{request.method} {request.url}: "


def _reason(error: Exception) -> str:
    """Why a connection failed, e.g. ``connection refused``, ``timed out``."""
    text = str(error).strip()
    errno_text = re.fullmatch(r"\[Errno -?\d+\] (.+)", text)
    if errno_text:
        text = errno_text.group(1)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _os_reason(error: OSError) -> str:
    what = error.strerror or str(error) or type(error).__name__
    if error.filename is None:
        return what
    if error.filename2 is not None:
        return f"{error.filename} -> {error.filename2}: {what}"
    return f"{error.filename}: {what}"


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


if __name__ == "__main__":
    main()

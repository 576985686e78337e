"""The ``gateway`` command: serve, demo, clients, audit, policy."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from gateway.auth import ClientRegistry
from gateway.settings import Settings

app = typer.Typer(help="Veilig Delen gateway", no_args_is_help=True, add_completion=False)
clients_app = typer.Typer(help="Manage agency systems allowed to get tokens", no_args_is_help=True)
app.add_typer(clients_app, name="clients")

DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help="Data directory (GATEWAY_DATA_DIR)")]  # noqa: UP045


def settings_for(data_dir: Path | None = None, **overrides: object) -> Settings:
    """Settings from the environment, with command-line options on top."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)  # type: ignore[arg-type]


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
    from gateway.errors import StartupRefused

    settings = settings_for(data_dir, host=host, port=port)
    try:
        application = create_app(settings)
    except StartupRefused as e:
        typer.echo(f"error: {e.detail}", err=True)
        raise typer.Exit(1) from e
    rt = application.state.runtime
    base = settings.base_url
    typer.echo(
        "\n".join(
            [
                f"Veilig Delen gateway on {base}",
                f"  data directory   {settings.data_dir}",
                f"  database         {settings.effective_database_url.split('@')[-1]}",
                f"  policy engine    {settings.policy_engine} (revision {rt.policy.current.revision[:19]})",
                f"  agency systems   {settings.connectors}",
                f"  OpenAPI          {base}/v1/openapi.json  (browse: {base}/v1/docs)",
                f"  token endpoint   {base}/oauth2/token",
                f"  audit log key    {rt.signer.verifier_key()}",
                "Register an agency system:  gateway clients register --client-id ID --agency AGENCY "
                "--role agency_system --public-key key.pem",
            ]
        )
    )
    uvicorn.run(
        application,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        server_header=False,
        # uvicorn would trust X-Forwarded-For from 127.0.0.1 by default; only configured proxies may
        # name the source address that the failed-authentication limit counts by.
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
    )


@app.command()
def demo(
    data_dir: DataDir = None,
    quiet: Annotated[bool, typer.Option(help="Print only the trail and the verdict")] = False,
) -> None:
    """Play the seed's process end to end on a fresh data directory and print the trail."""
    from gateway.demo import run_demo

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
            "give a PEM file, '-' for standard input, or the PEM text", param_hint="--public-key"
        )
    return path.read_text()


def _registry(data_dir: Path | None) -> ClientRegistry:
    from audit import private_directory
    from gateway.db import make_engine, make_sessionmaker
    from gateway.migrations import upgrade

    settings = settings_for(data_dir)
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
    import os

    from gateway.auth import generate_keypair

    if kind not in ("Ed25519", "ES256", "RS256"):
        raise typer.BadParameter("Ed25519, ES256 or RS256", param_hint="--kind")
    private_pem, public_pem = generate_keypair(kind)  # type: ignore[arg-type]
    key_path, pub_path = Path(f"{out}.key.pem"), Path(f"{out}.pub.pem")
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    pub_path.write_bytes(public_pem)
    typer.echo(f"private key {key_path} (keep it on the agency system), public key {pub_path}")


@app.command()
def token(
    client_id: Annotated[str, typer.Option("--client-id", help="Registered client id")],
    key: Annotated[Path, typer.Option(help="The client's private key (PEM)")],
    url: Annotated[str, typer.Option(help="The gateway's base URL")] = "http://127.0.0.1:8000",
    scope: Annotated[Optional[str], typer.Option(help="Scopes to ask for")] = None,  # noqa: UP045
) -> None:
    """Get an access token as an agency system would: a private_key_jwt client assertion (RFC 7523)."""
    import httpx

    from gateway.auth import make_client_assertion

    token_url = f"{url.rstrip('/')}/oauth2/token"
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": make_client_assertion(client_id, key.read_bytes(), token_url),
    }
    if scope:
        form["scope"] = scope
    r = httpx.post(token_url, data=form, timeout=30)
    if r.status_code != 200:
        typer.echo(f"error: {r.status_code} {r.text}", err=True)
        raise typer.Exit(1)
    typer.echo(r.json()["access_token"])


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


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()

"""``gateway clients register|keygen|list|revoke`` and ``gateway token``: the agency systems."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from gateway.auth import ClientRegistry
from gateway.cli._common import DataDir, _json_or_none, check_data_dir, gateway_url, settings_for
from gateway.cli.errors import _reason

clients_app = typer.Typer(help="Manage agency systems allowed to get tokens", no_args_is_help=True)


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
    from audit import write_private_file

    if not key_path.parent.is_dir():
        raise typer.TyperException(f"{key_path}: directory {key_path.parent} does not exist")
    # The one helper for private files: mode 0600, written atomically, never over an existing key.
    if not write_private_file(key_path, private_pem):
        raise typer.TyperException(f"{key_path} already exists; not overwritten")
    pub_path.write_bytes(public_pem)
    typer.echo(f"private key {key_path} (keep it on the agency system), public key {pub_path}")


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

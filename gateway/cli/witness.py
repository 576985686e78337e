"""``gateway audit witness serve`` and ``keygen``: an agency's C2SP witness of the log (tlog-witness).

``gateway audit witness --url ... --state ...`` (the polling check) is the group's own callback, in
``gateway/cli/audit.py``; this module holds the served witness. Heavy imports wait for a command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gateway.cli._common import listen

witness_app = typer.Typer(
    help="Witness the audit log: check (--url --state), or serve C2SP add-checkpoint (serve, keygen)",
    invoke_without_command=True,
)

DEFAULT_KEY = Path("witness.key")


@witness_app.command("keygen")
def witness_keygen(
    name: Annotated[
        str, typer.Option("--name", help="The witness's name, a schema-less URL: witness.om.example")
    ],
    key: Annotated[
        Path, typer.Option("--key", help="Where the private key goes (mode 0600); the vkey beside it")
    ] = DEFAULT_KEY,
) -> None:
    """Make the witness's Ed25519 key; print its verifier key (type 0x04) to give to the log's operator."""
    from audit import WitnessKeyError, create_witness_key

    try:
        signer = create_witness_key(key, name)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--name") from e
    except WitnessKeyError as e:
        typer.echo(f"error: {e.reason}", err=True)
        raise typer.Exit(1) from e
    except OSError as e:
        typer.echo(f"error: cannot write {key}: {e.strerror}", err=True)
        raise typer.Exit(1) from e
    typer.echo(signer.verifier_key())
    typer.echo(f"private key in {key} (keep it), verifier key also in {key}.vkey", err=True)


@witness_app.command("serve")
def witness_serve(
    state: Annotated[Path, typer.Option("--state", help="The witness's state (JSON, mode 0600)")],
    key: Annotated[
        Path, typer.Option("--key", help="The witness's private key (gateway audit witness keygen)")
    ],
    log_key: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            "--log-key",
            help="The log's verifier key (name+keyid+key), from its operator out of band; needed on the "
            "first start, pinned in the state after (give a new one after a key rotation)",
        ),
    ] = None,
    origin: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--origin", help="The log's origin line (default: the log key's name)"),
    ] = None,
    name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--name", help="The witness's name (default: from the key's .vkey file)"),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port")] = 8444,
) -> None:
    """Serve POST /add-checkpoint: cosign each checkpoint that extends the last one, refuse others.

    A refused fork, rollback or bad proof is kept in STATE.evidence-*.json beside the state.
    """

    import uvicorn

    from audit import TlogWitness, WitnessKeyError, WitnessStateError, load_witness_signer, witness_app

    try:
        signer = load_witness_signer(key, name)
        witness = TlogWitness.open(state, signer, log_key or [], origin)
        witness.lock()
    except (WitnessKeyError, WitnessStateError) as e:
        typer.echo(f"error: {e.reason}", err=True)
        raise typer.Exit(2) from e
    try:
        sock = listen(host, port)
    except typer.TyperException:
        witness.release()
        raise
    bound = sock.getsockname()[1]
    where = f"[{host}]" if ":" in host else host
    typer.echo(
        "\n".join(
            [
                f"C2SP witness {signer.name} on http://{where}:{bound}/add-checkpoint",
                f"  log              {witness.state.origin}, {len(witness.state.verifier_keys)} key(s)",
                f"  holds            {witness.size} entries",
                f"  state            {state}",
                f"  verifier key     {signer.verifier_key()}",
            ]
        ),
    )
    config = uvicorn.Config(witness_app(witness), log_level="warning", server_header=False, lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        witness.release()

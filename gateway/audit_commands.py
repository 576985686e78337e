"""``gateway audit ...``: verify the log, sign checkpoints, export and check offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from audit import LogSigner, SqlAuditStore, load_or_create_signing_key
from gateway.settings import Settings

app = typer.Typer(help="Check and export the audit log", no_args_is_help=True)
DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help="Data directory (GATEWAY_DATA_DIR)")]  # noqa: UP045


def settings_for(data_dir: Path | None) -> Settings:
    """Settings from the environment, with ``--data-dir`` on top."""
    return Settings(data_dir=data_dir) if data_dir is not None else Settings()


def _audit_parts(data_dir: Path | None) -> tuple[SqlAuditStore, LogSigner]:
    from gateway.db import make_engine
    from gateway.migrations import upgrade

    settings = settings_for(data_dir)
    engine = make_engine(settings.effective_database_url)
    upgrade(engine)
    signer = LogSigner(load_or_create_signing_key(settings.data_dir / "audit-log.key"), settings.log_origin)
    return SqlAuditStore(engine, signer), signer


@app.command("verify")
def audit_verify(data_dir: DataDir = None) -> None:
    """Recompute the Merkle tree from every entry and check the signed checkpoints."""
    from audit import verify_log

    store, signer = _audit_parts(data_dir)
    result = verify_log(store, signer.verifier_key())
    if result.ok:
        typer.echo(f"audit log OK: {result.size} entries, root and checkpoints verified")
        return
    typer.echo(f"audit log FAILED at index {result.first_bad_index}: {result.reason}", err=True)
    raise typer.Exit(1)


@app.command("checkpoint")
def audit_checkpoint(data_dir: DataDir = None) -> None:
    """Sign and print a checkpoint of the log as it is now."""
    store, _ = _audit_parts(data_dir)
    typer.echo(store.checkpoint(), nl=False)


@app.command("export")
def audit_export(
    out: Annotated[Path, typer.Argument(help="NDJSON file to write; the checkpoint goes to FILE.checkpoint")],
    data_dir: DataDir = None,
) -> None:
    """Write every entry as NDJSON ``{index, leafData}`` plus a signed checkpoint beside it."""
    import base64

    store, signer = _audit_parts(data_dir)
    note = store.checkpoint()
    size = int(note.splitlines()[1])
    with out.open("w") as f:
        for e in store.iter_entries(0, size):
            f.write(json.dumps({"index": e.index, "leafData": base64.b64encode(e.leaf_data).decode()}) + "\n")
    Path(str(out) + ".checkpoint").write_text(note)
    typer.echo(f"wrote {size} entries to {out}; checkpoint in {out}.checkpoint")
    typer.echo(f"verifier key: {signer.verifier_key()}")


@app.command("verify-export")
def audit_verify_export(
    file: Annotated[Path, typer.Argument(help="NDJSON export")],
    key: Annotated[str, typer.Option("--key", help="Note verifier key (name+keyhash+base64key)")],
    checkpoint: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Signed checkpoint (default: FILE.checkpoint)"),
    ] = None,
) -> None:
    """Check an export offline: nothing but the file, the checkpoint and the verifier key."""
    from audit import verify_export

    cp = checkpoint or Path(str(file) + ".checkpoint")
    if not cp.is_file():
        typer.echo(f"error: no checkpoint at {cp}", err=True)
        raise typer.Exit(2)

    def progress(done: int) -> None:
        if done % 100_000 == 0:
            typer.echo(f"  {done} entries checked", err=True)

    with file.open() as f:
        result = verify_export(f, cp.read_text(), key, progress=progress)
    if result.ok:
        typer.echo(f"export OK: {result.size} entries match the signed checkpoint")
        return
    typer.echo(f"export FAILED at index {result.first_bad_index}: {result.reason}", err=True)
    raise typer.Exit(1)

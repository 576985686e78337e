"""``gateway audit ...``: verify the log, sign checkpoints, export and check offline, witness, report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from audit import open_private_file, write_private_file
from gateway.bsn import Pseudonymizer, is_valid_bsn
from gateway.cli.witness import witness_app
from gateway.errors import StartupRefused

# The log's store, SQLAlchemy and the settings load when a command runs, not for ``gateway --help``.
if TYPE_CHECKING:
    from sqlalchemy import Engine

    from audit import LogSigner, SqlAuditStore
    from gateway.services.reports import Report
    from gateway.services.trail import CallContext
    from gateway.settings import Settings

app = typer.Typer(help="Check and export the audit log", no_args_is_help=True)
DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help="Data directory (GATEWAY_DATA_DIR)")]  # noqa: UP045


def settings_for(data_dir: Path | None) -> Settings:
    """Settings from the environment, with ``--data-dir`` on top."""
    from gateway.settings import Settings

    return Settings(data_dir=data_dir) if data_dir is not None else Settings()


def _engine(settings: Settings) -> Engine:
    from gateway.db import make_engine
    from gateway.migrations import upgrade

    if settings.database_url is None and not settings.data_dir.is_dir():
        # SQLite would only say "unable to open database file"; name the directory instead.
        typer.echo(
            f"error: no data directory at {settings.data_dir} (GATEWAY_DATA_DIR, --data-dir)", err=True
        )
        raise typer.Exit(1)
    engine = make_engine(settings.effective_database_url)
    upgrade(engine)
    return engine


def _audit_parts(data_dir: Path | None) -> tuple[SqlAuditStore, LogSigner]:
    """The log and its signer as the gateway opens them: a log with entries never gets a new key here."""
    from gateway.runtime import open_audit_log

    settings = settings_for(data_dir)
    try:
        store = open_audit_log(settings, _engine(settings))
    except StartupRefused as e:
        typer.echo(f"error: {e.detail}", err=True)
        raise typer.Exit(1) from e
    return store, store.signer


def _kept_checkpoint(path: Path) -> str:
    """A signed checkpoint from a file: a bare note, or the ``checkpoint`` of a witness state file."""
    text = path.read_text()
    if text.lstrip().startswith("{"):
        try:
            note = json.loads(text).get("checkpoint")
        except (ValueError, AttributeError) as e:
            raise typer.BadParameter(f"{path} is neither a signed checkpoint nor a witness state") from e
        if not isinstance(note, str):
            raise typer.BadParameter(f"{path} holds no checkpoint")
        return note
    return text


@app.command("verify")
def audit_verify(
    data_dir: DataDir = None,
    key: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            "--key",
            help="Trusted verifier key (repeatable; e.g. the current and a rotated-out key). Default: the "
            "key in the data directory, which someone with file access could have replaced.",
        ),
    ] = None,
    checkpoint: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option(
            "--checkpoint",
            help="A signed checkpoint kept outside the database (a note file or a witness state file); "
            "repeatable. Only these catch a log rewritten together with its stored checkpoints.",
        ),
    ] = None,
) -> None:
    """Recompute the Merkle tree from every entry and check the signed checkpoints."""
    from audit import verify_log

    trusted = [_kept_checkpoint(p) for p in checkpoint or []]
    if key:
        # Trusted keys given: the data directory's key is not needed (it may be the thing that is lost).
        source: SqlAuditStore | Engine = _engine(settings_for(data_dir))
        keys = list(key)
    else:
        store, _ = _audit_parts(data_dir)
        source, keys = store, store.verifier_keys()
    result = verify_log(source, keys, trusted_checkpoints=trusted)
    if result.ok:
        outside = f", {len(trusted)} kept outside" if trusted else ""
        typer.echo(f"audit log OK: {result.size} entries, root and checkpoints verified{outside}")
        return
    where = "" if result.first_bad_index is None else f" at index {result.first_bad_index}"
    typer.echo(f"audit log FAILED{where}: {result.reason}", err=True)
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
    # Private like everything else the gateway writes: entries name agencies, cases and pseudonyms.
    with open_private_file(out) as f:
        for e in store.iter_entries(0, size):
            f.write(json.dumps({"index": e.index, "leafData": base64.b64encode(e.leaf_data).decode()}) + "\n")
    write_private_file(Path(str(out) + ".checkpoint"), note.encode("utf-8"), replace=True)
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
        if done and done % 100_000 == 0:
            typer.echo(f"  {done} entries checked", err=True)

    # Bytes that are not UTF-8 become U+FFFD: the line then fails to parse and is a finding, not a crash.
    with file.open(encoding="utf-8", errors="replace") as f:
        result = verify_export(f, cp.read_text(), key, progress=progress)
    if result.ok:
        typer.echo(f"export OK: {result.size} entries match the signed checkpoint")
        return
    where = "" if result.first_bad_index is None else f" at index {result.first_bad_index}"
    typer.echo(f"export FAILED{where}: {result.reason}", err=True)
    raise typer.Exit(1)


def _read_bsn(value: str | None) -> str:
    """The BSN from ``--bsn``, from stdin for ``--bsn -``, or from a hidden prompt when left out."""
    if value == "-":
        bsn = sys.stdin.readline().strip()
    elif value is None:
        bsn = str(typer.prompt("BSN", hide_input=True)).strip()
    else:
        bsn = value.strip()
    if not is_valid_bsn(bsn):
        # Never repeat the value: a mistyped BSN is still someone's personal data.
        typer.echo("error: not a valid BSN (nine digits, elfproef)", err=True)
        raise typer.Exit(2)
    return bsn


def _pseudonymizer(settings: Settings) -> Pseudonymizer:
    from gateway.bsn import secret_path

    path = secret_path(settings.data_dir, settings.pseudonym_secret_file)
    if not settings.pseudonym_secret and not path.exists():
        # Generating a fresh secret here would give a pseudonym that matches nothing: say so instead.
        typer.echo(
            f"error: no pseudonym secret: set GATEWAY_PSEUDONYM_SECRET or GATEWAY_PSEUDONYM_SECRET_FILE, "
            f"or point --data-dir at the gateway's data directory (no {path})",
            err=True,
        )
        raise typer.Exit(2)
    return Pseudonymizer.from_settings(
        settings.pseudonym_secret, settings.data_dir, settings.pseudonym_secret_file
    )


ReportFormat = Annotated[
    str,
    typer.Option(
        "--format",
        help="text (the default: readable lines), pdf or csv (UTF-8 with BOM, ';' separated, for Excel)",
    ),
]
ReportOutput = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--output", "-o", help="Write the report to this file (0600); needed for pdf"),
]
ReportLang = Annotated[str, typer.Option("--lang", help="nl (the default) or en")]
ReportTechnical = Annotated[
    bool,
    typer.Option(
        "--technical",
        help="Add each entry's log index, leaf hash and trace id, the pseudonym and the signed checkpoint "
        "(for the officer; leave it out for the person the report is about)",
    ),
]
ReportAgency = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--agency", help="Only entries naming this agency (a privacy officer's view)"),
]
_FORMATS = ("text", "pdf", "csv")


def _check_report_options(fmt: str, lang: str, output: Path | None, agency: str | None) -> None:
    """Every option checked before anything is looked up or logged; never repeating a bad value."""
    from typing import get_args

    from connectors import Agency

    if fmt not in _FORMATS:
        typer.echo(f"error: --format must be one of {', '.join(_FORMATS)}", err=True)
        raise typer.Exit(2)
    if lang not in ("nl", "en"):
        typer.echo("error: --lang must be nl or en", err=True)
        raise typer.Exit(2)
    if fmt == "pdf" and output is None:
        typer.echo("error: a pdf report needs --output FILE", err=True)
        raise typer.Exit(2)
    if output is not None and not output.parent.is_dir():
        typer.echo(f"error: no directory {output.parent} for --output", err=True)
        raise typer.Exit(2)
    if agency is not None and agency not in get_args(Agency):
        # Never repeat the value: whatever was typed here must not reach the screen or the log.
        typer.echo(f"error: --agency must be one of {', '.join(get_args(Agency))}", err=True)
        raise typer.Exit(2)


def _policy_facts(settings: Settings) -> dict[str, Any]:
    """The loaded policy's facts (names, templates), read from the policy directory as the gateway does."""
    from gateway.policy import PolicyCompileError, read_policy

    try:
        return read_policy(settings.policy_dir).facts
    except (PolicyCompileError, OSError) as e:
        typer.echo(
            f"error: cannot read the policy in {settings.policy_dir} (GATEWAY_POLICY_DIR): {e}", err=True
        )
        raise typer.Exit(1) from e


def _operator_context() -> CallContext:
    """The operator at the command line, in the agency's view when one is named: the lookup entry says
    so (actor ``operator``, counterpart the agency), rather than claiming the agency asked."""
    from gateway.auth import Principal
    from gateway.services.trail import CallContext
    from gateway.tracing import from_header

    operator = Principal(client_id="gateway-cli", agency="operator", role="operator", scopes=frozenset())
    return CallContext(principal=operator, trace=from_header(None))


def _log_lookup(store: SqlAuditStore, entry: dict[str, object]) -> None:
    try:
        store.append([entry])
    except Exception as e:
        # No audit, no report: the lookup is only made once it is on record.
        typer.echo(
            f"error: the audit log could not be written ({type(e).__name__}); no report made", err=True
        )
        raise typer.Exit(1) from e


def _emit(report: Report, fmt: str, output: Path | None) -> None:
    from gateway.services.reports import render_csv, render_pdf, render_text

    data: bytes
    if fmt == "pdf":
        data = render_pdf(report)
    elif fmt == "csv":
        data = render_csv(report).encode("utf-8")
    else:
        data = render_text(report).encode("utf-8")
    if output is None:
        typer.echo(data.decode("utf-8"), nl=False)
        return
    # Private like everything else the gateway writes: a report is about a person.
    write_private_file(output, data, replace=True)
    typer.echo(f"wrote the report ({len(report.rows)} entries, {fmt}) to {output}", err=True)


@app.command("subject-report")
def audit_subject_report(
    bsn: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--bsn",
            help="The person's BSN, or '-' to read it from stdin; left out, it is asked for (hidden). "
            "WARNING: a BSN typed on the command line can land in your shell history and the process "
            "list; prefer '-' or the prompt.",
        ),
    ] = None,
    agency: ReportAgency = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON (the API's shape)")] = False,
    fmt: ReportFormat = "text",
    output: ReportOutput = None,
    lang: ReportLang = "nl",
    technical: ReportTechnical = False,
    data_dir: DataDir = None,
) -> None:
    """Every logged exchange about one person (AVG art. 15), in plain Dutch: when, which agency gave
    what to whom, why, on which legal basis, and every refusal with its reasons.

    The BSN is pseudonymised with the gateway's secret and never stored, printed or logged. The lookup
    itself is logged as an audit entry, as every access to someone's data is. Each entry's inclusion is
    checked against the signed checkpoint the report covers.
    """
    from audit import subject_report, verify_checkpoint
    from gateway.services.reports import Lang, build_subject_report
    from gateway.services.trail import lookup_entry

    _check_report_options(fmt, lang, output, agency)
    value = _read_bsn(bsn)
    settings = settings_for(data_dir)
    pseudonym = _pseudonymizer(settings).pseudonym(value)
    facts = None if as_json else _policy_facts(settings)
    store, signer = _audit_parts(data_dir)
    ctx = _operator_context()
    _log_lookup(
        store, lookup_entry(ctx, action="audit.subject_report", pseudonym=pseudonym, counterpart=agency)
    )
    if as_json:
        note = store.checkpoint()
        size = verify_checkpoint(note, signer.verifier).size
        rows = subject_report(store, pseudonym, visible_to=agency, tree_size=size)
        typer.echo(json.dumps({**rows.as_json(), "checkpoint": note}, indent=2))
        return
    assert facts is not None
    language: Lang = "en" if lang == "en" else "nl"
    report = build_subject_report(
        store,
        pseudonym,
        facts=facts,
        requested_by=ctx.principal,
        visible_to=agency,
        lang=language,
        technical=technical,
    )
    _emit(report, fmt, output)


@app.command("case-report")
def audit_case_report(
    case_id: Annotated[str, typer.Argument(help="The case's id")],
    agency: ReportAgency = None,
    fmt: ReportFormat = "text",
    output: ReportOutput = None,
    lang: ReportLang = "nl",
    technical: ReportTechnical = False,
    data_dir: DataDir = None,
) -> None:
    """Every logged entry about one case, in plain Dutch: its steps, what was shared and refused, and who
    looked at it. The lookup is logged (naming the case's subjects), like every report."""
    from gateway.services.reports import Lang, build_case_report, case_subjects
    from gateway.services.trail import lookup_entry

    _check_report_options(fmt, lang, output, agency)
    settings = settings_for(data_dir)
    facts = _policy_facts(settings)
    store, _ = _audit_parts(data_dir)
    subjects = case_subjects(store.engine, case_id)
    if subjects is None:
        # Never repeat the value: an id typed here could be anything, a BSN included.
        typer.echo("error: no case with that id", err=True)
        raise typer.Exit(1)
    ctx = _operator_context()
    _log_lookup(
        store,
        lookup_entry(ctx, action="audit.case_report", subjects=subjects, case_id=case_id, counterpart=agency),
    )
    language: Lang = "en" if lang == "en" else "nl"
    report = build_case_report(
        store,
        case_id,
        facts=facts,
        requested_by=ctx.principal,
        visible_to=agency,
        lang=language,
        technical=technical,
    )
    _emit(report, fmt, output)


@app.command("explain")
def audit_explain(
    index: Annotated[int, typer.Argument(min=0, help="The entry's index")],
    as_json: Annotated[bool, typer.Option("--json", help="The explanation as JSON, for machines")] = False,
    data_dir: DataDir = None,
) -> None:
    """Decide an entry's decision again, on its archived input and policy revision, and compare: exit 0
    same decision, 1 a difference, 2 cannot (no decision, input or revision not archived)."""
    from gateway.services.explain import explain, render_text

    found = explain(_engine(settings_for(data_dir)), index)
    if as_json:
        typer.echo(json.dumps(found.to_json(), indent=2, ensure_ascii=False))
    else:
        typer.echo(render_text(found), nl=False, err=found.status == "cannot")
    raise typer.Exit(found.exit_code)


app.add_typer(witness_app, name="witness")


@witness_app.callback()
def audit_witness(
    ctx: typer.Context,
    url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--url", help="The gateway's base URL, e.g. https://gateway.example"),
    ] = None,
    token_file: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--token-file", help="File holding a bearer token of scope audit or audit:all"),
    ] = None,
    state: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--state", help="Where the last verified checkpoint is kept (JSON)"),
    ] = None,
    key: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            "--key",
            help="The log's verifier key; needed on the first run, pinned in the state after. Get it "
            "out of band (from the operator), not from the log you are checking.",
        ),
    ] = None,
) -> None:
    """Check that the log's newest checkpoint extends the one kept in --state, then keep the new one.

    Exit 0: consistent (state updated). Exit 1: the log was forked, rewritten, rolled back or signed
    by another key (state kept; both checkpoints saved beside it as evidence). Exit 2: could not check.
    ``serve`` and ``keygen`` run a C2SP witness that the log submits its checkpoints to instead.
    """
    if ctx.invoked_subcommand is not None:
        return
    if url is None or token_file is None or state is None:
        missing = [
            o for o, v in (("--url", url), ("--token-file", token_file), ("--state", state)) if v is None
        ]
        raise typer.BadParameter(f"missing {', '.join(missing)}", param_hint="the witness check")
    from audit import HttpLogSource, LogUnavailable, WitnessAlarm, WitnessStateError, witness

    try:
        token = token_file.read_text().strip()
    except OSError as e:
        typer.echo(f"error: cannot read the token file {token_file}: {e.strerror}", err=True)
        raise typer.Exit(2) from e
    try:
        with HttpLogSource(url, token) as source:
            result = witness(source, state, verifier_keys=key or [])
    except WitnessAlarm as e:
        typer.echo(f"ALARM: {e.reason}", err=True)
        if e.evidence is not None:
            typer.echo(f"evidence saved in {e.evidence}", err=True)
        raise typer.Exit(1) from e
    except (LogUnavailable, WitnessStateError) as e:
        typer.echo(f"error: {e.reason}", err=True)
        raise typer.Exit(2) from e
    if result.previous is None:
        typer.echo(f"first checkpoint kept: {result.current.size} entries ({result.current.origin})")
    else:
        typer.echo(
            f"consistent: {result.previous.size} -> {result.current.size} entries "
            f"(+{result.grew_by}); checkpoint kept in {state}"
        )


@app.command("rotate-key")
def audit_rotate_key(
    data_dir: DataDir = None,
    lost_key: Annotated[
        bool,
        typer.Option(
            "--lost-key",
            help="The current key is missing or unusable: make a new one anyway. Checkpoints the lost key "
            "signed then verify only with its verifier key (give it as --old-key, or later to verify --key).",
        ),
    ] = False,
    old_key: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--old-key", help="With --lost-key: the lost key's verifier key, kept in the history"),
    ] = None,
) -> None:
    """Replace the checkpoint signing key on purpose, and record the rotation in the log.

    Stop the gateway first (a running one keeps signing with the key it loaded). The log is sealed
    with a checkpoint by the old key, the rotation is appended as an audit entry naming both keys,
    the old verifier key is kept in audit-log.key.retired (so older checkpoints still verify), the
    old private key is deleted, and a checkpoint by the new key covers the rotation entry.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from audit import (
        AuditError,
        LogSigner,
        NoteVerifier,
        SigningKeyUnavailable,
        SqlAuditStore,
        install_signing_key,
        load_or_create_signing_key,
        parse_verifier_key,
        retire_verifier_key,
        retired_keys_path,
        retired_verifier_keys,
    )
    from gateway.auth import Principal
    from gateway.runtime import audit_key_path
    from gateway.services.trail import CallContext, make_entry
    from gateway.tracing import from_header

    settings = settings_for(data_dir)
    path = audit_key_path(settings)
    engine = _engine(settings)
    try:
        retired = retired_verifier_keys(path)
    except SigningKeyUnavailable as e:
        typer.echo(f"error: {e.reason}", err=True)
        raise typer.Exit(1) from e
    old: NoteVerifier | None = None
    old_signer: LogSigner | None = None
    try:
        old_signer = LogSigner(load_or_create_signing_key(path, create=False), settings.log_origin)
    except SigningKeyUnavailable as e:
        if not lost_key:
            typer.echo(f"error: {e.reason}; if it is lost for good, run again with --lost-key", err=True)
            raise typer.Exit(1) from e
    if old_signer is not None:
        old = old_signer.verifier
    elif old_key is not None:
        try:
            old = parse_verifier_key(old_key)
        except AuditError as e:
            typer.echo(f"error: --old-key: {e.reason}", err=True)
            raise typer.Exit(2) from e
    new_key = Ed25519PrivateKey.generate()
    new_signer = LogSigner(new_key, settings.log_origin)
    try:
        if old_signer is not None:
            # Seal the log under the old key first: everything before the rotation is signed by it.
            SqlAuditStore(engine, old_signer, retired=retired).checkpoint()
        operator = Principal(client_id="gateway-cli", agency="operator", role="operator", scopes=frozenset())
        entry = make_entry(
            CallContext(principal=operator, trace=from_header(None)),
            type_="audit",
            action="audit.rotate_key",
            outcome="rotated",
        )
        entry["keyRotation"] = {
            "oldKeyId": old.key_id.hex() if old else None,
            "oldVerifierKey": str(old) if old else None,
            "newKeyId": new_signer.verifier.key_id.hex(),
            "newVerifierKey": new_signer.verifier_key(),
        }
        [index] = SqlAuditStore(engine, new_signer, retired=retired).append([entry])
        # History before key: a crash between the two leaves the old key in place and in the history,
        # which verifies exactly as before; the other order could lose the old verifier key.
        if old is not None:
            retire_verifier_key(path, old)
        install_signing_key(path, new_key)  # replaces the file: the old private key is gone
        store = SqlAuditStore(engine, new_signer, retired=retired_verifier_keys(path))
        store.checkpoint()
    except AuditError as e:
        typer.echo(f"error: the audit log refused the rotation: {e.reason}", err=True)
        raise typer.Exit(1) from e
    before = (
        f"old key {old.key_id.hex()} retired (kept in {retired_keys_path(path)})" if old else "no old key"
    )
    typer.echo(f"rotated the audit signing key at entry {index}: {before}")
    typer.echo(f"new verifier key: {new_signer.verifier_key()}")
    typer.echo("give it to witnesses and auditors; restart the gateway to sign with it")

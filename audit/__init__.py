"""The tamper-evident audit log of Veilig Delen.

Every exchange is logged as an entry (a JSON object) before it happens. Entries are stored as their
RFC 8785 canonical JSON bytes, which are the leaves of an RFC 6962 / RFC 9162 Merkle tree. The log
signs C2SP tlog checkpoints (signed notes, Ed25519) of its tree, serves inclusion and consistency
proofs, and can be verified in place (``verify_log``) or offline from an export (``verify_export``).
Witnesses keep the last checkpoint they verified and check every new one for consistency
(``witness``); ``subject_report`` lists every entry about one (pseudonymised) person. The signing key
is made for a new log only; a rotation keeps the old verifier keys (``retired_verifier_keys``) so older
checkpoints still verify. ``write_private_file`` and friends make files readable by their owner only,
whatever the umask (the gateway uses them for its other secrets too).

Usable without the web application::

    engine = sqlalchemy.create_engine("sqlite:///audit.db")
    audit.metadata.create_all(engine)
    with engine.begin() as conn:
        audit.install_append_only_triggers(conn)
    signer = audit.LogSigner(audit.load_or_create_signing_key("var/audit-key.pem"), "example.org/audit")
    store = audit.SqlAuditStore(engine, signer)
    [index] = store.append([{"type": "exchange", "caseId": "c-1"}])

    # The caller's own rows in the same transaction as its entries (under the log's write lock): both
    # commit or neither does. If ``writes`` raises, only this call fails (AuditWriteError, with
    # ``writes_failed`` set and the exception as ``__cause__``); other callers batched with it commit.
    def writes(conn: sqlalchemy.Connection) -> None:
        conn.execute(sqlalchemy.insert(messages).values(id="m-1", case_id="c-1"))
        # or, through the ORM: with Session(bind=conn, join_transaction_mode="create_savepoint") as s:
        #     s.add(Message(...)); s.commit()   # releases the session's savepoint only

    [index] = store.append([{"type": "exchange", "refs": {"messageId": "m-1"}}], writes=writes)
    note = store.checkpoint()
    assert audit.verify_log(store, signer.verifier_key()).ok
"""

from audit._internal.canonical import canonical_json
from audit._internal.errors import (
    AuditError,
    AuditWriteError,
    EntryNotFound,
    InvalidEntry,
    InvalidNote,
    InvalidProof,
    LogCorrupted,
    SigningKeyUnavailable,
)
from audit._internal.files import (
    create_private_file,
    open_private_file,
    private_directory,
    write_private_file,
)
from audit._internal.keys import (
    install_signing_key,
    load_or_create_signing_key,
    retire_verifier_key,
    retired_keys_path,
    retired_verifier_keys,
)
from audit._internal.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from audit._internal.note import (
    Checkpoint,
    LogSigner,
    NoteVerifier,
    format_checkpoint,
    open_note,
    parse_checkpoint,
    parse_verifier_key,
    verify_checkpoint,
)
from audit._internal.report import ReportRow, SubjectReport, report_row, subject_report
from audit._internal.schema import (
    NAMING_CONVENTION,
    UTCDateTime,
    append_only_ddl,
    drop_append_only_ddl,
    install_append_only_triggers,
    metadata,
    remove_append_only_triggers,
)
from audit._internal.store import (
    MAX_PAGE,
    AuditStore,
    LogEntry,
    SearchFilters,
    SqlAuditStore,
    StoredCheckpoint,
    Writes,
    log_size,
)
from audit._internal.verify import (
    VerifyResult,
    check_consistency,
    export_lines,
    verify_export,
    verify_log,
)
from audit._internal.witness import (
    HttpLogSource,
    LogSource,
    LogUnavailable,
    WitnessAlarm,
    WitnessResult,
    WitnessState,
    WitnessStateError,
    witness,
)

__all__ = [
    "EMPTY_ROOT",
    "MAX_PAGE",
    "NAMING_CONVENTION",
    "AuditError",
    "AuditStore",
    "AuditWriteError",
    "Checkpoint",
    "EntryNotFound",
    "HttpLogSource",
    "InvalidEntry",
    "InvalidNote",
    "InvalidProof",
    "LogCorrupted",
    "LogEntry",
    "LogSigner",
    "LogSource",
    "LogUnavailable",
    "NoteVerifier",
    "ReportRow",
    "SearchFilters",
    "SigningKeyUnavailable",
    "SqlAuditStore",
    "StoredCheckpoint",
    "SubjectReport",
    "UTCDateTime",
    "VerifyResult",
    "WitnessAlarm",
    "WitnessResult",
    "WitnessState",
    "WitnessStateError",
    "Writes",
    "append_only_ddl",
    "canonical_json",
    "check_consistency",
    "consistency_proof",
    "create_private_file",
    "drop_append_only_ddl",
    "export_lines",
    "format_checkpoint",
    "inclusion_proof",
    "install_append_only_triggers",
    "install_signing_key",
    "leaf_hash",
    "load_or_create_signing_key",
    "log_size",
    "metadata",
    "node_hash",
    "open_note",
    "open_private_file",
    "parse_checkpoint",
    "parse_verifier_key",
    "private_directory",
    "remove_append_only_triggers",
    "report_row",
    "retire_verifier_key",
    "retired_keys_path",
    "retired_verifier_keys",
    "root_hash",
    "subject_report",
    "verify_checkpoint",
    "verify_consistency",
    "verify_export",
    "verify_inclusion",
    "verify_log",
    "witness",
    "write_private_file",
]

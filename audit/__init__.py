"""The tamper-evident audit log of Veilig Delen.

Every exchange is logged as an entry (a JSON object) before it happens. Entries are stored as their
RFC 8785 canonical JSON bytes, which are the leaves of an RFC 6962 / RFC 9162 Merkle tree. The log
signs C2SP tlog checkpoints (signed notes, Ed25519) of its tree, serves inclusion and consistency
proofs, and can be verified in place (``verify_log``) or offline from an export (``verify_export``).
Witnesses keep the last checkpoint they verified and check every new one for consistency
(``witness``); ``subject_report`` lists every entry about one (pseudonymised) person.

Usable without the web application::

    engine = sqlalchemy.create_engine("sqlite:///audit.db")
    audit.metadata.create_all(engine)
    with engine.begin() as conn:
        audit.install_append_only_triggers(conn)
    signer = audit.LogSigner(audit.load_or_create_signing_key("var/audit-key.pem"), "example.org/audit")
    store = audit.SqlAuditStore(engine, signer)
    [index] = store.append([{"type": "exchange", "caseId": "c-1"}])
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
)
from audit._internal.keys import load_or_create_signing_key
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
    "SqlAuditStore",
    "StoredCheckpoint",
    "SubjectReport",
    "UTCDateTime",
    "VerifyResult",
    "WitnessAlarm",
    "WitnessResult",
    "WitnessState",
    "WitnessStateError",
    "append_only_ddl",
    "canonical_json",
    "check_consistency",
    "consistency_proof",
    "drop_append_only_ddl",
    "export_lines",
    "format_checkpoint",
    "inclusion_proof",
    "install_append_only_triggers",
    "leaf_hash",
    "load_or_create_signing_key",
    "metadata",
    "node_hash",
    "open_note",
    "parse_checkpoint",
    "parse_verifier_key",
    "remove_append_only_triggers",
    "report_row",
    "root_hash",
    "subject_report",
    "verify_checkpoint",
    "verify_consistency",
    "verify_export",
    "verify_inclusion",
    "verify_log",
    "witness",
]

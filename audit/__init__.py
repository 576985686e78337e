"""The tamper-evident audit log of Veilig Delen.

Every exchange is logged as an entry (a JSON object) before it happens. Entries are stored as their
RFC 8785 canonical JSON bytes, which are the leaves of an RFC 6962 / RFC 9162 Merkle tree. The log
signs C2SP tlog checkpoints (signed notes, Ed25519) of its tree, serves inclusion and consistency
proofs, and can be verified in place (``verify_log``) or offline from an export (``verify_export``).
Witnesses keep the last checkpoint they verified and check every new one for consistency
(``witness``), or are sent each new checkpoint and cosign it (``TlogWitness``: C2SP tlog-witness and
tlog-cosignature; ``cosignatures_in`` counts the cosignatures on a note); ``subject_report`` lists
every entry about one (pseudonymised) person. The signing key is made for a new log only; a rotation
keeps the old verifier keys (``retired_verifier_keys``) so older checkpoints still verify.
``write_private_file`` and friends make files readable by their owner only, whatever the umask (the
gateway uses them for its other secrets too).

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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
        WitnessStateError,
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
    from audit._internal.tlog_witness import (
        AddCheckpoint,
        Cosignature,
        CosignatureVerifier,
        MalformedRequest,
        ServedState,
        TlogWitness,
        WitnessKeyError,
        WitnessSigner,
        cosignature_message,
        cosignatures_in,
        create_witness_key,
        load_witness_signer,
        parse_add_checkpoint,
        parse_cosignature_key,
        parse_signature_lines,
        parse_size_answer,
        split_note,
        witness_app,
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
        witness,
    )

__all__ = [
    "EMPTY_ROOT",
    "MAX_PAGE",
    "NAMING_CONVENTION",
    "AddCheckpoint",
    "AuditError",
    "AuditStore",
    "AuditWriteError",
    "Checkpoint",
    "Cosignature",
    "CosignatureVerifier",
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
    "MalformedRequest",
    "NoteVerifier",
    "ReportRow",
    "SearchFilters",
    "ServedState",
    "SigningKeyUnavailable",
    "SqlAuditStore",
    "StoredCheckpoint",
    "SubjectReport",
    "TlogWitness",
    "UTCDateTime",
    "VerifyResult",
    "WitnessAlarm",
    "WitnessKeyError",
    "WitnessResult",
    "WitnessSigner",
    "WitnessState",
    "WitnessStateError",
    "Writes",
    "append_only_ddl",
    "canonical_json",
    "check_consistency",
    "consistency_proof",
    "cosignature_message",
    "cosignatures_in",
    "create_private_file",
    "create_witness_key",
    "drop_append_only_ddl",
    "export_lines",
    "format_checkpoint",
    "inclusion_proof",
    "install_append_only_triggers",
    "install_signing_key",
    "leaf_hash",
    "load_or_create_signing_key",
    "load_witness_signer",
    "log_size",
    "metadata",
    "node_hash",
    "open_note",
    "open_private_file",
    "parse_add_checkpoint",
    "parse_checkpoint",
    "parse_cosignature_key",
    "parse_signature_lines",
    "parse_size_answer",
    "parse_verifier_key",
    "private_directory",
    "remove_append_only_triggers",
    "report_row",
    "retire_verifier_key",
    "retired_keys_path",
    "retired_verifier_keys",
    "root_hash",
    "split_note",
    "subject_report",
    "verify_checkpoint",
    "verify_consistency",
    "verify_export",
    "verify_inclusion",
    "verify_log",
    "witness",
    "witness_app",
    "write_private_file",
]

_WHERE = {
    "EMPTY_ROOT": "audit._internal.merkle",
    "MAX_PAGE": "audit._internal.store",
    "NAMING_CONVENTION": "audit._internal.schema",
    "AddCheckpoint": "audit._internal.tlog_witness",
    "AuditError": "audit._internal.errors",
    "AuditStore": "audit._internal.store",
    "AuditWriteError": "audit._internal.errors",
    "Checkpoint": "audit._internal.note",
    "Cosignature": "audit._internal.tlog_witness",
    "CosignatureVerifier": "audit._internal.tlog_witness",
    "EntryNotFound": "audit._internal.errors",
    "HttpLogSource": "audit._internal.witness",
    "InvalidEntry": "audit._internal.errors",
    "InvalidNote": "audit._internal.errors",
    "InvalidProof": "audit._internal.errors",
    "LogCorrupted": "audit._internal.errors",
    "LogEntry": "audit._internal.store",
    "LogSigner": "audit._internal.note",
    "LogSource": "audit._internal.witness",
    "LogUnavailable": "audit._internal.witness",
    "MalformedRequest": "audit._internal.tlog_witness",
    "NoteVerifier": "audit._internal.note",
    "ReportRow": "audit._internal.report",
    "SearchFilters": "audit._internal.store",
    "ServedState": "audit._internal.tlog_witness",
    "SigningKeyUnavailable": "audit._internal.errors",
    "SqlAuditStore": "audit._internal.store",
    "StoredCheckpoint": "audit._internal.store",
    "SubjectReport": "audit._internal.report",
    "TlogWitness": "audit._internal.tlog_witness",
    "UTCDateTime": "audit._internal.schema",
    "VerifyResult": "audit._internal.verify",
    "WitnessAlarm": "audit._internal.witness",
    "WitnessKeyError": "audit._internal.tlog_witness",
    "WitnessResult": "audit._internal.witness",
    "WitnessSigner": "audit._internal.tlog_witness",
    "WitnessState": "audit._internal.witness",
    "WitnessStateError": "audit._internal.errors",
    "Writes": "audit._internal.store",
    "append_only_ddl": "audit._internal.schema",
    "canonical_json": "audit._internal.canonical",
    "check_consistency": "audit._internal.verify",
    "consistency_proof": "audit._internal.merkle",
    "cosignature_message": "audit._internal.tlog_witness",
    "cosignatures_in": "audit._internal.tlog_witness",
    "create_private_file": "audit._internal.files",
    "create_witness_key": "audit._internal.tlog_witness",
    "drop_append_only_ddl": "audit._internal.schema",
    "export_lines": "audit._internal.verify",
    "format_checkpoint": "audit._internal.note",
    "inclusion_proof": "audit._internal.merkle",
    "install_append_only_triggers": "audit._internal.schema",
    "install_signing_key": "audit._internal.keys",
    "leaf_hash": "audit._internal.merkle",
    "load_or_create_signing_key": "audit._internal.keys",
    "load_witness_signer": "audit._internal.tlog_witness",
    "log_size": "audit._internal.store",
    "metadata": "audit._internal.schema",
    "node_hash": "audit._internal.merkle",
    "open_note": "audit._internal.note",
    "open_private_file": "audit._internal.files",
    "parse_add_checkpoint": "audit._internal.tlog_witness",
    "parse_checkpoint": "audit._internal.note",
    "parse_cosignature_key": "audit._internal.tlog_witness",
    "parse_signature_lines": "audit._internal.tlog_witness",
    "parse_size_answer": "audit._internal.tlog_witness",
    "parse_verifier_key": "audit._internal.note",
    "private_directory": "audit._internal.files",
    "remove_append_only_triggers": "audit._internal.schema",
    "report_row": "audit._internal.report",
    "retire_verifier_key": "audit._internal.keys",
    "retired_keys_path": "audit._internal.keys",
    "retired_verifier_keys": "audit._internal.keys",
    "root_hash": "audit._internal.merkle",
    "split_note": "audit._internal.tlog_witness",
    "subject_report": "audit._internal.report",
    "verify_checkpoint": "audit._internal.note",
    "verify_consistency": "audit._internal.merkle",
    "verify_export": "audit._internal.verify",
    "verify_inclusion": "audit._internal.merkle",
    "verify_log": "audit._internal.verify",
    "witness": "audit._internal.witness",
    "witness_app": "audit._internal.tlog_witness",
    "write_private_file": "audit._internal.files",
}
"""Where each public name is defined. Importing the package loads none of them: the first use of a name
imports its module (PEP 562), so a command that needs only ``write_private_file`` does not load
SQLAlchemy, and tools that use part of the log pay only for that part."""


if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any name imported from here

    def __getattr__(name: str) -> object:
        try:
            module = _WHERE[name]
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # the next use is a plain lookup
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})

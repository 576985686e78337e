"""The witness: keeps the last checkpoint, takes a new one only when the log provably extends it.

The log is a real ``SqlAuditStore`` (it is a ``LogSource`` too); a misbehaving log is a second store
with the same key and another history, or a wrapper that serves an older checkpoint or a wrong proof.
The witness over HTTP, against a running gateway, is tested in tests/e2e/test_audit_witness.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from audit import (
    LogSigner,
    SqlAuditStore,
    WitnessAlarm,
    WitnessState,
    WitnessStateError,
    verify_checkpoint,
    witness,
)
from tests.audit.conftest import ORIGIN, create_log, make_entry, sqlite_engine


class ServesOldCheckpoint:
    """A log that answers with a checkpoint it signed earlier (a rollback)."""

    def __init__(self, store: SqlAuditStore, note: str) -> None:
        self.store, self.note = store, note

    def checkpoint(self) -> str:
        return self.note

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        return self.store.consistency_proof(size1, size2)


class ServesWrongProof(ServesOldCheckpoint):
    """A log that signs honestly but proves consistency between other sizes than asked."""

    def checkpoint(self) -> str:
        return self.store.checkpoint()

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        return self.store.consistency_proof(size1 - 1, size2)


@pytest.fixture
def log(sqlite_log: Engine, signer: LogSigner) -> SqlAuditStore:
    store = SqlAuditStore(sqlite_log, signer)
    store.append([make_entry(i) for i in range(10)])
    return store


def kept(state: Path) -> int:
    size = json.loads(state.read_text())["size"]
    assert isinstance(size, int)
    return size


def test_first_run_needs_a_pinned_key(log: SqlAuditStore, tmp_path: Path) -> None:
    state = tmp_path / "witness.json"
    with pytest.raises(WitnessStateError, match="first run needs the log's verifier key"):
        witness(log, state)
    assert not state.exists()
    with pytest.raises(WitnessStateError, match="not a note verifier key"):
        witness(log, state, verifier_keys=["garbage"])
    result = witness(log, state, verifier_keys=[log.verifier_key()])
    assert result.previous is None and result.current.size == 10 and result.grew_by == 10
    saved = json.loads(state.read_text())
    assert saved["verifierKeys"] == [log.verifier_key()]
    assert saved["origin"] == ORIGIN and saved["size"] == 10
    assert verify_checkpoint(saved["checkpoint"], log.verifier_key()).root == log.root(10)


def test_a_growing_log_is_followed(log: SqlAuditStore, tmp_path: Path) -> None:
    state = tmp_path / "witness.json"
    witness(log, state, verifier_keys=[log.verifier_key()])
    for more in (1, 7, 0, 100):
        log.append([make_entry(i) for i in range(more)])
        before = kept(state)
        result = witness(log, state)  # the key now comes from the state
        assert result.previous is not None and result.previous.size == before
        assert result.current.size == before + more == kept(state)
    assert list(tmp_path.glob("*.evidence-*")) == []


def test_a_log_that_started_empty(sqlite_log: Engine, signer: LogSigner, tmp_path: Path) -> None:
    store = SqlAuditStore(sqlite_log, signer)
    state = tmp_path / "w.json"
    assert witness(store, state, verifier_keys=[signer.verifier_key()]).current.size == 0
    store.append([make_entry(0)])
    assert witness(store, state).current.size == 1


def alarm(source: object, state: Path) -> WitnessAlarm:
    before = state.read_text()
    with pytest.raises(WitnessAlarm) as caught:
        witness(source, state)  # type: ignore[arg-type]
    assert state.read_text() == before, "the state must not change on an alarm"
    return caught.value


def test_a_fork_with_the_same_key_is_caught_and_kept_as_evidence(
    log: SqlAuditStore, signer: LogSigner, tmp_path: Path
) -> None:
    state = tmp_path / "witness.json"
    witness(log, state, verifier_keys=[signer.verifier_key()])
    # The same key signs another history, shown to this witness later (a split view).
    other = SqlAuditStore(create_log(sqlite_engine(tmp_path / "fork.db")), signer)
    other.append([make_entry(i, outcome="withdrawn" if i == 4 else "delivered") for i in range(15)])
    caught = alarm(other, state)
    assert "does not extend the kept one of 10" in caught.reason
    assert "forked or rewritten" in caught.reason
    assert caught.evidence is not None
    evidence = json.loads(caught.evidence.read_text())
    assert evidence["keptCheckpoint"] == json.loads(state.read_text())["checkpoint"]
    assert verify_checkpoint(evidence["newCheckpoint"], signer.verifier_key()).size == 15
    assert len(evidence["consistencyProof"]) > 0
    # The honest log goes on being accepted.
    log.append([make_entry(10)])
    assert witness(log, state).current.size == 11
    other.engine.dispose()


def test_same_size_with_another_root_is_a_fork(log: SqlAuditStore, signer: LogSigner, tmp_path: Path) -> None:
    state = tmp_path / "witness.json"
    witness(log, state, verifier_keys=[signer.verifier_key()])
    other = SqlAuditStore(create_log(sqlite_engine(tmp_path / "fork.db")), signer)
    other.append([make_entry(i + 1) for i in range(10)])
    assert "two different roots signed for the same size 10" in alarm(other, state).reason
    other.engine.dispose()


def test_a_rollback_is_caught(log: SqlAuditStore, tmp_path: Path) -> None:
    state = tmp_path / "witness.json"
    old_note = log.checkpoint()
    log.append([make_entry(10)])
    witness(log, state, verifier_keys=[log.verifier_key()])
    assert "shrank from 11 to 10" in alarm(ServesOldCheckpoint(log, old_note), state).reason


def test_a_checkpoint_by_another_key_is_caught(log: SqlAuditStore, tmp_path: Path) -> None:
    state = tmp_path / "witness.json"
    witness(log, state, verifier_keys=[log.verifier_key()])
    impostor = LogSigner(Ed25519PrivateKey.generate(), ORIGIN)
    log.append([make_entry(10)])
    forged = impostor.sign_checkpoint(11, log.root())
    caught = alarm(ServesOldCheckpoint(log, forged), state)
    assert "does not verify with the pinned key" in caught.reason


def test_a_wrong_proof_is_caught(log: SqlAuditStore, tmp_path: Path) -> None:
    state = tmp_path / "witness.json"
    witness(log, state, verifier_keys=[log.verifier_key()])
    log.append([make_entry(i) for i in range(10, 17)])
    assert "does not extend" in alarm(ServesWrongProof(log, ""), state).reason
    assert witness(log, state).current.size == 17


def test_a_rotated_key_is_trusted_once_added(log: SqlAuditStore, signer: LogSigner, tmp_path: Path) -> None:
    state = tmp_path / "witness.json"
    witness(log, state, verifier_keys=[signer.verifier_key()])
    rotated = SqlAuditStore(log.engine, LogSigner(Ed25519PrivateKey.generate(), ORIGIN))
    rotated.append([make_entry(10)])
    assert "does not verify with the pinned key" in alarm(rotated, state).reason
    result = witness(rotated, state, verifier_keys=[rotated.verifier_key()])
    assert result.current.size == 11
    assert WitnessState.load(state).verifier_keys == (signer.verifier_key(), rotated.verifier_key())


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"version": 2, "verifierKeys": ["x"]}',
        '{"version": 1, "verifierKeys": []}',
        '{"version": 1, "verifierKeys": ["not a key"]}',
    ],
)
def test_an_unusable_state_file_is_refused(log: SqlAuditStore, tmp_path: Path, content: str) -> None:
    state = tmp_path / "witness.json"
    state.write_text(content)
    with pytest.raises(WitnessStateError):
        witness(log, state, verifier_keys=[log.verifier_key()])
    assert state.read_text() == content


def test_a_state_whose_checkpoint_was_edited_is_refused(log: SqlAuditStore, tmp_path: Path) -> None:
    state = tmp_path / "witness.json"
    witness(log, state, verifier_keys=[log.verifier_key()])
    saved = json.loads(state.read_text())
    saved["checkpoint"] = saved["checkpoint"].replace("\n10\n", "\n9\n")
    state.write_text(json.dumps(saved))
    with pytest.raises(WitnessStateError, match="kept checkpoint does not verify"):
        witness(log, state)

"""The C2SP witness (tlog-witness ``add-checkpoint``) and its cosignatures (tlog-cosignature), in-process.

The log is a real ``SqlAuditStore`` on SQLite; a forked log is a second store with the same key and
other entries; a rolled-back log is the same store's earlier checkpoint. Cosignatures are checked with
a verifier written here from the spec's text with ``cryptography`` (not with the module's own code).
The witness as a process, beside a running gateway, is tested in tests/e2e/test_witnesses.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit import (
    AddCheckpoint,
    CosignatureVerifier,
    InvalidNote,
    LogSigner,
    SqlAuditStore,
    TlogWitness,
    WitnessKeyError,
    WitnessSigner,
    WitnessStateError,
    cosignatures_in,
    create_witness_key,
    load_witness_signer,
    open_note,
    parse_add_checkpoint,
    parse_cosignature_key,
    parse_size_answer,
    verify_checkpoint,
    witness_app,
)
from tests.audit.conftest import ORIGIN, create_log, make_entry, sqlite_engine
from tests.live import serve

WITNESS = "witness.om.example"
SEED = bytes(range(32))  # a fixed witness key, so the known answer below is fixed too
# The cosignature line from tlog-cosignature's own example (its key is not published): the layout
# is key ID (4) || big-endian timestamp (8) || signature (64), and the spec's message says time 1679315147.
SPEC_LINE = (
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZ"
    "qhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)


def independent_check(line: str, body: str, name: str, public: bytes) -> int:
    """Verify a cosignature line from the spec's words alone; returns its timestamp.

    tlog-cosignature: key ID = SHA-256(<name> || "\\n" || 0x04 || 32-byte key)[:4]; the signature is
    u64 timestamp (big-endian) || Ed25519 signature over "cosignature/v1\\ntime <t>\\n" || note body.
    """
    dash, got_name, b64 = line.rstrip("\n").split(" ")
    assert dash == "\u2014"
    assert got_name == name
    blob = base64.b64decode(b64)
    assert len(blob) == 4 + 8 + 64
    assert blob[:4] == hashlib.sha256(name.encode() + b"\n" + b"\x04" + public).digest()[:4]
    timestamp = int.from_bytes(blob[4:12], "big")
    message = b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + body.encode()
    Ed25519PublicKey.from_public_bytes(public).verify(blob[12:], message)  # raises if wrong
    return timestamp


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class Clock:
    """The witness's clock, set by the test (a cosignature's time is part of what is signed)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def new_store(path: Path, key: Ed25519PrivateKey) -> SqlAuditStore:
    return SqlAuditStore(create_log(sqlite_engine(path)), LogSigner(key, ORIGIN))


@pytest.fixture
def log(tmp_path: Path, log_key: Ed25519PrivateKey) -> Iterator[SqlAuditStore]:
    store = new_store(tmp_path / "log.db", log_key)
    yield store
    store.engine.dispose()


@pytest.fixture
def fork(tmp_path: Path, log_key: Ed25519PrivateKey) -> Iterator[SqlAuditStore]:
    """The same log's key and origin, with other entries: what a split view is made of."""
    store = new_store(tmp_path / "fork.db", log_key)
    yield store
    store.engine.dispose()


@pytest.fixture
def witness(tmp_path: Path, log: SqlAuditStore) -> TlogWitness:
    signer = WitnessSigner(Ed25519PrivateKey.from_private_bytes(SEED), WITNESS)
    return TlogWitness.open(tmp_path / "w" / "state.json", signer, [log.verifier_key()], clock=Clock())


def grow(store: SqlAuditStore, n: int, start: int = 0) -> str:
    store.append([make_entry(start + i) for i in range(n)])
    return store.checkpoint()


def submit(w: TlogWitness, store: SqlAuditStore, old: int, note: str) -> tuple[int, bytes, str]:
    size = verify_checkpoint(note, store.verifier_key()).size
    proof = store.consistency_proof(old, size) if 0 < old < size else []
    answer = w.add_checkpoint(AddCheckpoint(old, tuple(proof), note).encode())
    return answer.status, answer.body, answer.media_type


def evidence_files(w: TlogWitness) -> list[dict[str, object]]:
    files = sorted(w.state_path.parent.glob(w.state_path.name + ".evidence-*.json"))
    return [json.loads(f.read_text()) for f in files]


# -- the bytes ------------------------------------------------------------------------------------


def test_a_cosignature_is_the_specs_bytes_checked_independently() -> None:
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    signer = WitnessSigner(key, WITNESS)
    body = f"{ORIGIN}\n3\n{base64.b64encode(bytes(32)).decode()}\n"
    line = signer.cosign(body, 1679315147)
    assert independent_check(line, body, WITNESS, raw_public(key)) == 1679315147
    # Ed25519 is deterministic: the whole line is a known answer, computed by hand from the spec.
    message = b"cosignature/v1\ntime 1679315147\n" + body.encode()
    kid = hashlib.sha256(WITNESS.encode() + b"\n\x04" + raw_public(key)).digest()[:4]
    blob = kid + struct.pack(">Q", 1679315147) + key.sign(message)
    assert line == f"— {WITNESS} {base64.b64encode(blob).decode()}"
    with pytest.raises(InvalidSignature):
        independent_check(line, body.replace("\n3\n", "\n4\n"), WITNESS, raw_public(key))


def test_the_verifier_key_is_name_keyid_and_type_0x04() -> None:
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    vkey = WitnessSigner(key, WITNESS).verifier_key()
    name, hex_id, b64 = vkey.split("+", 2)
    raw = base64.b64decode(b64)
    assert (name, raw[0], raw[1:]) == (WITNESS, 0x04, raw_public(key))
    assert hex_id == hashlib.sha256(WITNESS.encode() + b"\n" + raw).digest()[:4].hex()
    assert str(parse_cosignature_key(vkey)) == vkey
    log_vkey = str(LogSigner(key, WITNESS).verifier)  # the same key as a log key: type 0x01
    with pytest.raises(InvalidNote, match="type 0x04"):
        parse_cosignature_key(log_vkey)


def test_the_specs_example_line_has_the_specs_key_id_and_time() -> None:
    verifier = CosignatureVerifier("witness.example.com/w1", bytes.fromhex("8d66cf3f"), bytes(32))
    with pytest.raises(InvalidNote, match="does not verify"):  # the right line for this name and ID
        verifier.check("example.com/behind-the-sofa\n20852163\nx\n", SPEC_LINE)
    blob = base64.b64decode(SPEC_LINE.split(" ")[2])
    assert struct.unpack(">Q", blob[4:12]) == (1679315147,)
    other = CosignatureVerifier("witness.example.com/w2", bytes.fromhex("8d66cf3f"), bytes(32))
    assert other.check("x\n", SPEC_LINE) is None  # same ID, other name: someone else's, ignored


def test_the_request_body_is_the_specs() -> None:
    h = bytes(range(32))
    body = AddCheckpoint(5, (h,), "o\n7\nroot\n\n— o sig\n").encode()
    assert body == b"old 5\n" + base64.b64encode(h) + b"\n\no\n7\nroot\n\n\xe2\x80\x94 o sig\n"
    assert parse_add_checkpoint(body) == AddCheckpoint(5, (h,), "o\n7\nroot\n\n— o sig\n")
    assert parse_add_checkpoint(b"old 0\n\nnote\n").proof == ()
    assert parse_size_answer("text/x.tlog.size", b"42\n") == 42


@pytest.mark.parametrize(
    "body",
    [
        b"old 01\n\nx\n",
        b"old -1\n\nx\n",
        b"old 1\nnot-base64!\n\nx\n",
        b"old 1\nAAAA\n\nx\n",
        b"new 1\n\nx\n",
    ],
)
def test_a_malformed_body_is_a_400(witness: TlogWitness, body: bytes) -> None:
    assert witness.add_checkpoint(body).status == 400


# -- the witness ----------------------------------------------------------------------------------


def test_honest_growth_is_cosigned_and_the_cosigned_note_still_verifies(
    witness: TlogWitness, log: SqlAuditStore
) -> None:
    first = grow(log, 3)
    status, body, media = submit(witness, log, 0, first)
    assert (status, media) == (200, "text/plain; charset=utf-8")
    text = first.split("\n\n")[0] + "\n"
    public = raw_public(Ed25519PrivateKey.from_private_bytes(SEED))
    assert independent_check(body.decode(), text, WITNESS, public) == 1_800_000_000
    assert witness.size == 3

    witness.clock.now += 60  # type: ignore[attr-defined]
    second = grow(log, 5, start=3)
    status, body, _ = submit(witness, log, 3, second)
    assert status == 200
    assert witness.size == 8
    cosigned = second + body.decode()
    # The note with an extra line: the log's verifier ignores the unknown signer (signed-note)...
    assert verify_checkpoint(cosigned, log.verifier_key()).size == 8
    # ...and a verifier that knows the witness finds its cosignature, as of the witness's clock.
    [cosig] = cosignatures_in(cosigned, [witness.signer.verifier])
    assert (cosig.witness, cosig.time) == (WITNESS, 1_800_000_060)
    # A known witness's line that does not verify rejects the whole note, as Go's note.Open does.
    tampered = cosigned.replace(body.decode()[-10:], "A" * 8 + "==\n")
    with pytest.raises(InvalidNote):
        cosignatures_in(tampered, [witness.signer.verifier])
    # The same checkpoint again is cosigned again (nothing changes), and the state kept it.
    assert submit(witness, log, 8, second)[0] == 200
    state = json.loads(witness.state_path.read_text())
    assert (state["size"], state["origin"]) == (8, ORIGIN)
    assert witness.state_path.stat().st_mode & 0o777 == 0o600
    assert evidence_files(witness) == []


def test_a_wrong_old_size_is_a_409_with_the_size_held_then_resync(
    witness: TlogWitness, log: SqlAuditStore
) -> None:
    assert submit(witness, log, 0, grow(log, 4))[0] == 200
    note = grow(log, 2, start=4)
    status, body, media = submit(witness, log, 0, note)  # a client that knows nothing sends old 0
    assert (status, body, media) == (409, b"4\n", "text/x.tlog.size")
    assert submit(witness, log, parse_size_answer(media, body), note)[0] == 200
    assert witness.size == 6


def test_a_fork_at_the_same_size_is_refused_and_kept_as_evidence(
    witness: TlogWitness, log: SqlAuditStore, fork: SqlAuditStore
) -> None:
    honest = grow(log, 5)
    assert submit(witness, log, 0, honest)[0] == 200
    forked = grow(fork, 5, start=100)  # same key, same size, other entries
    status, body, media = submit(witness, fork, 5, forked)
    assert (status, body, media) == (409, b"5\n", "text/x.tlog.size")
    [kept] = evidence_files(witness)
    assert (kept["keptCheckpoint"], kept["newCheckpoint"]) == (
        honest,
        forked,
    )
    assert "forked" in str(kept["reason"])
    assert witness.size == 5
    assert json.loads(witness.state_path.read_text())["checkpoint"] == honest


def test_a_fork_that_grew_fails_its_proof_and_is_kept_as_evidence(
    witness: TlogWitness, log: SqlAuditStore, fork: SqlAuditStore
) -> None:
    assert submit(witness, log, 0, grow(log, 5))[0] == 200
    forked = grow(fork, 9, start=100)
    status, body, _ = submit(witness, fork, 5, forked)  # the fork's own proof from 5 to 9
    assert status == 422
    assert b"does not extend" in body
    [kept] = evidence_files(witness)
    assert kept["oldSize"] == 5
    assert kept["consistencyProof"] == [base64.b64encode(h).decode() for h in fork.consistency_proof(5, 9)]
    assert witness.size == 5


def test_a_rolled_back_log_is_refused_and_kept_as_evidence(witness: TlogWitness, log: SqlAuditStore) -> None:
    old = grow(log, 3)
    assert submit(witness, log, 0, old)[0] == 200
    assert submit(witness, log, 3, grow(log, 4, start=3))[0] == 200
    # The log restored to its state at 3 entries: it sends that checkpoint as following the 7 held.
    status, _, _ = submit(witness, log, 7, old)
    assert status == 400
    [kept] = evidence_files(witness)
    assert (kept["heldSize"], kept["newCheckpoint"]) == (7, old)
    # Without claiming to follow 7, it is only told the size held (no evidence: a stale client looks so).
    assert submit(witness, log, 3, old)[:2] == (409, b"7\n")
    assert len(evidence_files(witness)) == 1
    assert witness.size == 7


def test_unknown_origin_404_untrusted_key_403_proof_from_zero_422(
    witness: TlogWitness, log: SqlAuditStore, tmp_path: Path
) -> None:
    note = grow(log, 2)
    other_origin = SqlAuditStore(
        create_log(sqlite_engine(tmp_path / "o.db")),
        LogSigner(Ed25519PrivateKey.generate(), "other.example/log"),
    )
    assert submit(witness, other_origin, 0, grow(other_origin, 1))[0] == 404
    impostor = new_store(tmp_path / "i.db", Ed25519PrivateKey.generate())  # our origin, another key
    assert submit(witness, impostor, 0, grow(impostor, 2))[0] == 403
    bad_sig = note.replace(note.split(" ")[-1], base64.b64encode(b"\0" * 68).decode() + "\n")
    assert witness.add_checkpoint(AddCheckpoint(0, (), bad_sig).encode()).status == 403
    proof = AddCheckpoint(0, (bytes(32),), note).encode()
    assert witness.add_checkpoint(proof).status == 422
    assert witness.size == 0
    other_origin.engine.dispose()
    impostor.engine.dispose()


def test_the_state_is_on_disk_before_the_answer_and_one_process_holds_it(
    witness: TlogWitness, log: SqlAuditStore
) -> None:
    assert submit(witness, log, 0, grow(log, 3))[0] == 200
    again = TlogWitness.open(witness.state_path, witness.signer)  # what a restart reads
    assert again.size == 3
    witness.lock()
    with pytest.raises(WitnessStateError, match="in use"):
        again.lock()
    witness.release()
    again.lock()
    again.release()
    with pytest.raises(WitnessStateError, match="witnesses"):
        TlogWitness.open(witness.state_path, witness.signer, origin="other.example/log")


def test_keygen_writes_a_private_key_and_its_vkey(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "witness.key"
    signer = create_witness_key(path, WITNESS)
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys" / "witness.key.vkey").read_text() == signer.verifier_key() + "\n"
    assert load_witness_signer(path).verifier_key() == signer.verifier_key()
    with pytest.raises(WitnessKeyError, match="exists"):
        create_witness_key(path, WITNESS)


def test_over_real_http_the_409_media_type_is_exact(witness: TlogWitness, log: SqlAuditStore) -> None:
    note = grow(log, 2)
    with serve(witness_app(witness)) as base, httpx.Client(base_url=base) as c:
        assert c.get("/").text.startswith(f"tlog-witness {witness.signer.verifier_key()}\n")
        ok = c.post("/add-checkpoint", content=AddCheckpoint(0, (), note).encode())
        assert ok.status_code == 200
        conflict = c.post("/add-checkpoint", content=AddCheckpoint(0, (), note).encode())
        assert (conflict.status_code, conflict.headers["content-type"], conflict.text) == (
            409,
            "text/x.tlog.size",
            "2\n",
        )
        assert c.post("/add-checkpoint", content=b"x" * 70_000).status_code == 413
        monitored = c.get("/" + hashlib.sha256(ORIGIN.encode()).hexdigest() + "/checkpoint")
        assert monitored.status_code == 200
        assert open_note(monitored.text, [log.verifier_key()])[0] == note.split("\n\n")[0] + "\n"
        assert cosignatures_in(monitored.text, [witness.signer.verifier])[0].witness == WITNESS

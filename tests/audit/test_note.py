"""C2SP signed notes and checkpoints, against the reference example of Go's sumdb/note package."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import (
    Checkpoint,
    InvalidNote,
    LogSigner,
    format_checkpoint,
    open_note,
    parse_checkpoint,
    parse_verifier_key,
    verify_checkpoint,
)

# golang.org/x/mod/sumdb/note: the PeterNeumann key and the note its documentation shows.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
GO_SIG = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
GO_NOTE = GO_TEXT + "\n— PeterNeumann " + GO_SIG + "\n"


def go_signer() -> LogSigner:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert seed[0] == 0x01
    return LogSigner(Ed25519PrivateKey.from_private_bytes(seed[1:]), "PeterNeumann")


def test_go_reference_key_and_signature_byte_for_byte() -> None:
    signer = go_signer()
    assert signer.verifier_key() == GO_VKEY
    assert signer.verifier.key_id.hex() == "c74f20a3"
    # Ed25519 is deterministic, so the signed note must be exactly Go's.
    assert signer.sign_note(GO_TEXT) == GO_NOTE
    text, by = open_note(GO_NOTE, [GO_VKEY])
    assert text == GO_TEXT
    assert [str(v) for v in by] == [GO_VKEY]


def test_key_id_definition() -> None:
    v = parse_verifier_key(GO_VKEY)
    expected = hashlib.sha256(b"PeterNeumann\n\x01" + v.public_key).digest()[:4]
    assert v.key_id == expected


def test_signature_line_uses_an_em_dash() -> None:
    note = go_signer().sign_note("hello\n")
    assert note.split("\n")[2].startswith("\u2014 PeterNeumann ")
    blob = base64.b64decode(note.split("\n")[2].split(" ")[2])
    assert blob[:4].hex() == "c74f20a3" and len(blob) == 4 + 64


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong key ID
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # upper-case hex
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # space in name
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",  # wrong length
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # unknown algorithm
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",  # bad base64
    ],
)
def test_bad_verifier_keys(vkey: str) -> None:
    with pytest.raises(InvalidNote):
        parse_verifier_key(vkey)


def test_every_single_byte_change_of_the_vkey_is_refused() -> None:
    for i in range(len(GO_VKEY)):
        mangled = GO_VKEY[:i] + chr(ord(GO_VKEY[i]) + 1) + GO_VKEY[i + 1 :]
        with pytest.raises(InvalidNote):
            parse_verifier_key(mangled)


def other_signer(name: str = "PeterNeumann") -> LogSigner:
    return LogSigner(Ed25519PrivateKey.generate(), name)


def test_unknown_signatures_are_ignored_but_not_enough() -> None:
    witness = other_signer("witness.example")
    cosigned = GO_NOTE + witness.sign_note(GO_TEXT).split("\n\n", 1)[1]
    text, by = open_note(cosigned, [GO_VKEY])
    assert text == GO_TEXT and [v.name for v in by] == ["PeterNeumann"]
    # Signed only by a key we do not know: rejected.
    with pytest.raises(InvalidNote, match="no valid signature by a known key"):
        open_note(witness.sign_note(GO_TEXT), [GO_VKEY])


def test_a_bad_signature_by_a_known_key_rejects_the_note() -> None:
    impostor = other_signer()  # same name, different key: a different key ID, so just unknown
    with pytest.raises(InvalidNote):
        open_note(impostor.sign_note(GO_TEXT), [GO_VKEY])
    # Right key ID, wrong signature bytes.
    blob = bytearray(base64.b64decode(GO_NOTE.rstrip("\n").rsplit(" ", 1)[1]))
    blob[10] ^= 1
    forged = GO_TEXT + "\n— PeterNeumann " + base64.b64encode(bytes(blob)).decode() + "\n"
    with pytest.raises(InvalidNote, match="does not verify"):
        open_note(forged, [GO_VKEY])
    # A valid signature over other text.
    with pytest.raises(InvalidNote, match="does not verify"):
        open_note(GO_NOTE.replace("answer", "Answer"), [GO_VKEY])


@pytest.mark.parametrize(
    "note",
    [
        "",
        GO_TEXT,  # no signatures
        GO_NOTE[:-1],  # no final newline
        GO_NOTE.replace("— ", "- "),  # hyphen instead of em dash
        GO_NOTE.replace("— PeterNeumann ", "— PeterNeumann"),  # no space before the signature
        GO_NOTE.replace("\n\n", "\n"),  # no blank line
        GO_NOTE + "\n",  # trailing blank line: empty signature block
        GO_NOTE.replace("problem,", "problem,\r"),  # control character
        GO_NOTE.replace("x08go", "x08go!"),  # not base64
        GO_TEXT + "\n— PeterNeumann AAAA\n",  # too short
    ],
)
def test_malformed_notes(note: str) -> None:
    with pytest.raises(InvalidNote):
        open_note(note, [GO_VKEY])


def test_text_may_hold_blank_lines_the_last_one_separates() -> None:
    signer = go_signer()
    text = "line one\n\nline three\n"
    assert open_note(signer.sign_note(text), [GO_VKEY])[0] == text


def test_checkpoint_format_and_round_trip() -> None:
    root = bytes(range(32))
    body = format_checkpoint("example.org/log", 42, root)
    assert body == "example.org/log\n42\n" + base64.b64encode(root).decode() + "\n"
    assert parse_checkpoint(body) == Checkpoint("example.org/log", 42, root)
    signer = other_signer("example.org/log")
    note = signer.sign_checkpoint(42, root)
    assert note.startswith(body + "\n— example.org/log ")
    assert verify_checkpoint(note, signer.verifier_key()) == Checkpoint("example.org/log", 42, root)
    with_ext = parse_checkpoint(body + "ext line\n")
    assert with_ext.extensions == ("ext line",)


@pytest.mark.parametrize(
    "body",
    [
        "origin\n42\n",  # no root
        "origin\n042\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",  # leading zero
        "origin\n-1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "origin\n42\nAAAA\n",  # not 32 bytes
        "origin\n42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",  # unpadded
        "\n42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",  # empty origin
        "origin\n42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # no final newline
    ],
)
def test_malformed_checkpoints(body: str) -> None:
    with pytest.raises(InvalidNote):
        parse_checkpoint(body)


def test_verify_checkpoint_checks_the_origin() -> None:
    signer = other_signer("example.org/log")
    other_origin = signer.sign_note(Checkpoint("example.org/other", 1, bytes(32)).body())
    with pytest.raises(InvalidNote, match="origin"):
        verify_checkpoint(other_origin, signer.verifier_key())
    assert verify_checkpoint(other_origin, signer.verifier_key(), origin="example.org/other").size == 1


def test_verify_checkpoint_refuses_another_key() -> None:
    signer = other_signer("example.org/log")
    with pytest.raises(InvalidNote):
        verify_checkpoint(
            signer.sign_checkpoint(1, bytes(32)), other_signer("example.org/log").verifier_key()
        )


def test_signer_refuses_bad_origins() -> None:
    for origin in ["", "has space", "has+plus", "new\nline"]:
        with pytest.raises(ValueError):
            LogSigner(Ed25519PrivateKey.generate(), origin)

"""The signing key: created once, private, reused."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from audit import (
    LogSigner,
    SigningKeyUnavailable,
    install_signing_key,
    load_or_create_signing_key,
    retire_verifier_key,
    retired_keys_path,
    retired_verifier_keys,
)


def test_created_with_mode_0600_as_pkcs8_pem_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-log.key"
    key = load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    again = load_or_create_signing_key(path)
    assert LogSigner(key, "o").verifier_key() == LogSigner(again, "o").verifier_key()
    assert [p.name for p in path.parent.iterdir()] == ["audit-log.key"]  # no temporary files left


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "audit-log.key"
    keys: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        keys.append(LogSigner(load_or_create_signing_key(path), "o").verifier_key())

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1


def test_a_non_ed25519_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ec.key"
    pem = generate_private_key(SECP256R1()).private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    path.write_bytes(pem)
    with pytest.raises(SigningKeyUnavailable, match="Ed25519"):
        load_or_create_signing_key(path)


def test_a_missing_key_is_not_created_when_creation_is_off(tmp_path: Path) -> None:
    path = tmp_path / "audit-log.key"
    with pytest.raises(SigningKeyUnavailable, match="missing"):
        load_or_create_signing_key(path, create=False)
    assert not path.exists()


@pytest.mark.parametrize("content", [b"", b"not a key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"])
def test_a_corrupt_key_file_is_refused_and_left_alone(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "audit-log.key"
    path.write_bytes(content)
    with pytest.raises(SigningKeyUnavailable):
        load_or_create_signing_key(path)
    assert path.read_bytes() == content  # never replaced by a fresh key


def test_an_unreadable_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit-log.key"
    load_or_create_signing_key(path)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as a user who can read any file (root)")
        with pytest.raises(SigningKeyUnavailable, match="cannot be read"):
            load_or_create_signing_key(path)
    finally:
        path.chmod(0o600)


def test_a_rotation_replaces_the_private_key_and_keeps_the_old_verifier_key(tmp_path: Path) -> None:
    path = tmp_path / "audit-log.key"
    old = LogSigner(load_or_create_signing_key(path), "o")
    retire_verifier_key(path, old.verifier)
    retire_verifier_key(path, old.verifier)  # idempotent
    install_signing_key(path, Ed25519PrivateKey.generate())
    new = LogSigner(load_or_create_signing_key(path, create=False), "o")
    assert new.verifier_key() != old.verifier_key()
    assert retired_verifier_keys(path) == [old.verifier]
    for p in (path, retired_keys_path(path)):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit-log.key", "audit-log.key.retired"]


def test_a_damaged_key_history_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit-log.key"
    retired_keys_path(path).write_text("o+00000000+garbage\n")
    with pytest.raises(SigningKeyUnavailable, match="line 1"):
        retired_verifier_keys(path)

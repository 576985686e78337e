"""The signing key: created once, private, reused."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from audit import LogSigner, load_or_create_signing_key


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
    with pytest.raises(ValueError, match="Ed25519"):
        load_or_create_signing_key(path)

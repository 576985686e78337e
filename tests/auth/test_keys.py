"""The token-signing key file: created once with mode 0600, then loaded; refused when unsafe."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from joserfc.jwk import ECKey, OKPKey

from gateway.auth import SigningKeyError, load_or_create_signing_key
from gateway.auth.keys import KEY_FILE_NAME


def test_first_start_creates_a_private_ed25519_key_with_mode_0600(tmp_path: Path) -> None:
    key = load_or_create_signing_key(tmp_path / "data")
    path = tmp_path / "data" / KEY_FILE_NAME
    assert path.stat().st_mode & 0o777 == 0o600
    stored = json.loads(path.read_text())
    assert (stored["kty"], stored["crv"]) == ("OKP", "Ed25519")
    assert "d" in stored
    assert key.kid == OKPKey.import_key(stored).thumbprint()
    assert [p.name for p in path.parent.iterdir()] == [KEY_FILE_NAME]  # no temporary file left


def test_later_starts_load_the_same_key(tmp_path: Path) -> None:
    first = load_or_create_signing_key(tmp_path)
    content = (tmp_path / KEY_FILE_NAME).read_bytes()
    second = load_or_create_signing_key(tmp_path)
    assert second.kid == first.kid
    assert second.key.as_dict(private=True) == first.key.as_dict(private=True)
    assert (tmp_path / KEY_FILE_NAME).read_bytes() == content


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    kids: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        kids.append(load_or_create_signing_key(tmp_path).kid)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(kids) == 8
    assert len(set(kids)) == 1


def test_the_jwks_carries_no_private_part(tmp_path: Path) -> None:
    key = load_or_create_signing_key(tmp_path)
    (jwk,) = key.jwks()["keys"]
    assert "d" not in jwk
    assert jwk["kid"] == key.kid


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_or_create_signing_key(tmp_path)
    (tmp_path / KEY_FILE_NAME).chmod(0o644)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        load_or_create_signing_key(tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps(ECKey.generate_key("P-256").as_dict(private=True)),
        json.dumps(OKPKey.generate_key("Ed25519").as_dict(private=False)),
        json.dumps({**OKPKey.generate_key("Ed25519").as_dict(private=True), "kid": "made-up"}),
    ],
    ids=["not-json", "p256", "ed25519-public", "made-up-kid"],  # stable ids: the keys are random
)
def test_a_key_file_that_is_not_a_private_ed25519_jwk_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / KEY_FILE_NAME
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(SigningKeyError):
        load_or_create_signing_key(tmp_path)

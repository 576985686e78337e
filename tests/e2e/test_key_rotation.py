"""Rotating a key keeps what the old key signed verifying, and what the new key signs verifying too.

Issue 12 item 5. One gateway over real HTTP for the token and delivery keys (the JWKS is read from its
socket, as an agency reads it); the rotations are the real ``gateway keys`` commands on its data
directory while it runs, so the gateway follows them the way a replica sharing the key files does.
The checkpoint key is rotated on a stopped gateway's directory, as docs/operations.md says.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from typer.testing import CliRunner

from audit import InvalidNote, parse_verifier_key, verify_checkpoint
from connectors.receiver import GatewayKeys
from connectors.signatures import SignatureVerifier
from gateway.app import create_app
from gateway.auth.keyring import RingSigner, key_path, retired_path, staged_path
from gateway.cli import app as cli
from tests.e2e.conftest import Gateway, start_gateway
from tests.live import serve

RUNNER = CliRunner()


def keys(*args: str, data_dir: Path) -> str:
    """``gateway keys ARGS --data-dir DIR``, in this process; its output, after checking it worked."""
    result = RUNNER.invoke(cli, ["keys", *args, "--data-dir", str(data_dir)])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    runtime, sock = start_gateway(tmp_path_factory.mktemp("rotation"))
    with serve(create_app(runtime=runtime), sock=sock) as base:
        g = Gateway(base=base, runtime=runtime)
        for n in range(4):
            g.register(f"om-{n}", "om", "agency_system")
        yield g
        g.http.close()
    runtime.close()


def header_kid(token: str) -> str:
    """The ``kid`` in a JWS header, unverified."""
    import base64

    head = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


def inbox_status(gw: Gateway, token: str) -> int:
    return gw.http.get(f"{gw.base}/v1/inbox", headers={"Authorization": f"Bearer {token}"}).status_code


def jwks(gw: Gateway) -> dict[str, Any]:
    r = gw.http.get(f"{gw.base}/oauth2/jwks")
    assert r.status_code == 200
    return {k["kid"]: k for k in r.json()["keys"]}


def rotation_entries(gw: Gateway, action: str) -> list[dict[str, object]]:
    return [e.entry for e in gw.runtime.audit.iter_entries() if e.entry.get("action") == action]


def test_a_rotated_token_key_keeps_its_tokens_valid_and_the_new_key_signs(gw: Gateway) -> None:
    data_dir = gw.runtime.settings.data_dir
    old_token = gw.token("om-0")  # not used before the rotation: no cache can vouch for it afterwards
    old_kid = header_kid(old_token)
    assert old_kid == gw.runtime.auth.signing_key.kid

    output = keys("rotate", "token", data_dir=data_dir)
    new_kid = gw.runtime.auth.signing_key.kid
    assert new_kid != old_kid and f"{new_kid} signs from now on" in output

    # The old token is still good at the running gateway, for the rest of its lifetime ...
    assert inbox_status(gw, old_token) == 200
    # ... the next token is signed by the new key, and is good too.
    new_token = gw.token("om-1")
    assert header_kid(new_token) == new_kid
    assert inbox_status(gw, new_token) == 200
    # The JWKS publishes both, and each token verifies against it (what a resource server would do).
    published = jwks(gw)
    assert {old_kid, new_kid} <= set(published)
    key_set = KeySet.import_key_set({"keys": list(published.values())})
    for token in (old_token, new_token):
        assert jwt.decode(token, key_set, algorithms=["Ed25519"]).claims["client_id"] in ("om-0", "om-1")

    path = key_path(gw.runtime.settings, "token")
    for file in (path, retired_path(path)):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert staged_path(path).read_bytes() == b""  # nothing staged
    assert "d" not in json.loads(retired_path(path).read_text())["retired"][0]["jwk"]  # public half only
    [entry] = rotation_entries(gw, "keys.rotate")
    fields = entry["keyRotation"]
    assert isinstance(fields, dict)
    assert (fields["key"], fields["oldKeyId"], fields["newKeyId"]) == ("token", old_kid, new_kid)
    assert str(fields["oldKeyValidUntil"]).endswith("Z")
    assert entry["type"] == "audit" and entry["outcome"] == "rotated"


def test_a_staged_token_key_is_accepted_before_it_signs_then_rotated_to(gw: Gateway) -> None:
    data_dir = gw.runtime.settings.data_dir
    current = gw.runtime.auth.signing_key.kid
    output = keys("stage", "token", data_dir=data_dir)
    staged = staged_path(key_path(gw.runtime.settings, "token"))
    staged_kid = gw.runtime.auth.token_keys.keys(force=True).staged_kid
    assert staged_kid is not None and staged_kid != current and staged_kid in output
    assert staged_kid in jwks(gw)  # published ...
    assert header_kid(gw.token("om-2")) == current  # ... but signing nothing yet
    assert stat.S_IMODE(staged.stat().st_mode) == 0o600

    keys("rotate", "token", data_dir=data_dir)
    assert gw.runtime.auth.signing_key.kid == staged_kid  # the staged key, not a fresh one
    assert header_kid(gw.token("om-2")) == staged_kid
    assert staged.read_bytes() == b""


def test_grace_zero_ends_the_old_token_key_at_once_and_retire_records_it(gw: Gateway) -> None:
    data_dir = gw.runtime.settings.data_dir
    doomed = gw.token("om-3")  # as if the key had leaked
    doomed_kid = header_kid(doomed)
    assert inbox_status(gw, doomed) == 200  # verified and cached: the cache must not outlive the key
    keys("rotate", "token", "--grace", "0", data_dir=data_dir)

    # A verifier looks at the key files once a second: poll (a busy machine gets a generous deadline).
    deadline = time.monotonic() + 60
    while (
        r := gw.http.get(f"{gw.base}/v1/inbox", headers={"Authorization": f"Bearer {doomed}"})
    ).status_code == 200:
        assert time.monotonic() < deadline, "a token of a key rotated out with --grace 0 is still accepted"
        time.sleep(0.05)
    assert r.status_code == 401
    assert "unknown key" in r.json()["detail"]
    assert doomed_kid not in jwks(gw)

    output = keys("retire", "token", data_dir=data_dir)
    assert doomed_kid in output
    history = json.loads(retired_path(key_path(gw.runtime.settings, "token")).read_text())["retired"]
    assert doomed_kid not in [k["jwk"]["kid"] for k in history]
    [entry] = rotation_entries(gw, "keys.retire")
    assert entry["keyRotation"]["removedKeyIds"] == [doomed_kid]  # type: ignore[index]
    assert "nothing to retire" in keys("retire", "token", data_dir=data_dir)


def test_deliveries_signed_before_and_after_a_delivery_key_rotation_verify_at_the_agency(
    gw: Gateway,
) -> None:
    signer = RingSigner(gw.runtime.delivery_keys)  # what the gateway's HTTP connectors sign with

    def delivery(n: int) -> httpx.Request:
        request = httpx.Request(
            "POST",
            "https://om.example/veilig-delen/deliveries",
            content=json.dumps({"messageId": f"m-{n}"}).encode(),
            headers={"Content-Type": "application/json", "Idempotency-Key": f"m-{n}"},
        )
        signer.sign(request)
        return request

    # An agency that read the JWKS before the rotation, and one that reads it only afterwards.
    early = GatewayKeys(gw.base, min_refetch=0)
    before = delivery(1)
    old_kid = gw.runtime.delivery_key.kid
    assert early.resolve(old_kid) is not None

    keys("rotate", "delivery", data_dir=gw.runtime.settings.data_dir)
    after = delivery(2)
    new_kid = gw.runtime.delivery_key.kid
    assert new_kid != old_kid and new_kid.startswith("delivery-")
    assert f'keyid="{new_kid}"' in after.headers["signature-input"]

    late = GatewayKeys(gw.base)
    for agency_keys in (early, late):
        verifier = SignatureVerifier(agency_keys.resolve)
        for request, kid in ((before, old_kid), (after, new_kid)):
            verified = verifier.verify(
                request.method,
                str(request.url),
                request.headers,
                request.content,
                require=["idempotency-key"],
            )
            assert verified.key_id == kid
    published = jwks(gw)
    assert {old_kid, new_kid} <= set(published)
    # A week by default: the delivery grace is not the token's few minutes.
    [*_, entry] = rotation_entries(gw, "keys.rotate")
    assert entry["keyRotation"]["key"] == "delivery"  # type: ignore[index]


def test_a_rotated_checkpoint_key_keeps_older_checkpoints_verifiable(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    runtime, sock = start_gateway(data_dir)
    sock.close()
    try:
        runtime.audit_append([{"type": "test", "action": "test.entry", "n": n} for n in range(3)])
        old_note = runtime.audit.checkpoint()
        old_vkey = runtime.signer.verifier_key()
    finally:
        runtime.close()
    kept = tmp_path / "witness-kept.checkpoint"  # as a witness keeps it, outside the database
    kept.write_text(old_note)

    output = keys("rotate", "checkpoint", data_dir=data_dir)
    new_vkey = output.split("new verifier key: ")[1].split()[0]
    assert parse_verifier_key(new_vkey) != parse_verifier_key(old_vkey)

    verify = RUNNER.invoke(cli, ["audit", "verify", "--data-dir", str(data_dir), "--checkpoint", str(kept)])
    assert verify.exit_code == 0, verify.output
    assert "1 kept outside" in verify.output
    # With only the keys an auditor pinned (old and new), not the data directory's history.
    pinned = ["audit", "verify", "--data-dir", str(data_dir), "--key", old_vkey, "--key", new_vkey]
    assert RUNNER.invoke(cli, pinned).exit_code == 0
    runtime, sock = start_gateway(data_dir)
    sock.close()
    try:
        assert runtime.signer.verifier_key() == new_vkey  # the restarted gateway signs with the new key
        new_note = runtime.audit.checkpoint()
    finally:
        runtime.close()
    assert verify_checkpoint(new_note, new_vkey).size > verify_checkpoint(old_note, old_vkey).size == 3
    with pytest.raises(InvalidNote):
        verify_checkpoint(old_note, new_vkey)  # the history, not the new key, keeps the old ones valid
    assert "kept for good" in keys("list", data_dir=data_dir)
    assert os.stat(data_dir / "audit-log.key.retired").st_mode & 0o077 == 0

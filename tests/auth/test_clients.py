"""The client registry over real SQLite: registration rules, key detection, revocation."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa
from sqlalchemy.orm import Session, sessionmaker

from gateway.auth import (
    ClientAlreadyRegistered,
    ClientError,
    ClientRegistry,
    InvalidClientRegistration,
    UnknownClient,
    generate_keypair,
)


def public_pem(private: object) -> bytes:
    return private.public_key().public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture
def registry(sessions: sessionmaker[Session]) -> ClientRegistry:
    return ClientRegistry(sessions)


@pytest.mark.parametrize("kind", ["Ed25519", "ES256", "RS256"])
def test_the_key_type_decides_the_algorithm(registry: ClientRegistry, kind: str) -> None:
    _, pem = generate_keypair(kind)  # type: ignore[arg-type]
    client = registry.register("c-1", "politie", "agency_system", pem)
    assert client.key_alg == kind
    stored = registry.get_active("c-1")
    assert stored is not None
    assert (stored.agency, stored.role, stored.key_alg) == ("politie", "agency_system", kind)
    assert stored.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert stored.created_at.tzinfo is not None


def test_a_pem_given_as_text_is_accepted(registry: ClientRegistry) -> None:
    _, pem = generate_keypair("Ed25519")
    assert registry.register("c-1", "om", "auditor", pem.decode()).key_alg == "Ed25519"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (public_pem(rsa.generate_private_key(65537, 1024)), "1024 bits is too short"),
        (public_pem(ec.generate_private_key(ec.SECP384R1())), "secp384r1 is not supported"),
        (public_pem(ed448.Ed448PrivateKey.generate()), "is not supported"),
        (public_pem(dsa.generate_private_key(2048)), "is not supported"),
        (generate_keypair("Ed25519")[0], "this is a private key"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a PEM public key"),
        (b"hello", "not a PEM public key"),
    ],
)
def test_other_keys_are_refused_clearly(registry: ClientRegistry, key: bytes, message: str) -> None:
    with pytest.raises(InvalidClientRegistration) as e:
        registry.register("c-1", "politie", "agency_system", key)
    assert message in e.value.detail
    assert e.value.status == 400
    assert e.value.errors is not None
    assert [error["field"] for error in e.value.errors] == ["publicKey"]
    assert message in e.value.errors[0]["message"]
    assert registry.list() == []


@pytest.mark.parametrize(
    ("client_id", "agency", "role", "field"),
    [
        ("c-1", "gemeente", "agency_system", "agency"),
        ("c-1", "politie", "admin", "role"),
        ("with:colon", "politie", "agency_system", "clientId"),
        ("", "politie", "agency_system", "clientId"),
        ("x" * 65, "politie", "agency_system", "clientId"),
    ],
)
def test_unknown_agencies_roles_and_odd_ids_are_refused(
    registry: ClientRegistry, client_id: str, agency: str, role: str, field: str
) -> None:
    _, pem = generate_keypair("Ed25519")
    with pytest.raises(InvalidClientRegistration) as e:
        registry.register(client_id, agency, role, pem)
    assert e.value.errors is not None
    assert e.value.errors[0]["field"] == field


def test_a_client_id_is_registered_once(registry: ClientRegistry) -> None:
    registry.register("c-1", "politie", "agency_system", generate_keypair("Ed25519")[1])
    with pytest.raises(ClientAlreadyRegistered) as e:
        registry.register("c-1", "om", "agency_system", generate_keypair("Ed25519")[1])
    assert e.value.status == 409
    assert isinstance(e.value, ClientError)


def test_revoke(registry: ClientRegistry) -> None:
    registry.register("c-1", "politie", "agency_system", generate_keypair("Ed25519")[1])
    revoked = registry.revoke("c-1")
    assert revoked.revoked_at is not None
    assert abs(revoked.revoked_at - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=10)
    assert registry.get_active("c-1") is None
    again = registry.revoke("c-1")
    assert again.revoked_at == revoked.revoked_at  # the first revocation time stays


def test_revoking_an_unknown_client_is_an_error(registry: ClientRegistry) -> None:
    with pytest.raises(UnknownClient) as e:
        registry.revoke("ghost")
    assert e.value.status == 404


def test_list_shows_every_client_by_id(registry: ClientRegistry) -> None:
    for client_id in ("b", "a", "c"):
        registry.register(client_id, "rvdk", "agency_system", generate_keypair("Ed25519")[1])
    registry.revoke("b")
    rows = registry.list()
    assert [c.client_id for c in rows] == ["a", "b", "c"]
    assert [c.revoked_at is not None for c in rows] == [False, True, False]
    assert registry.get_active("ghost") is None

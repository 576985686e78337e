"""The client registry: which agency systems may get tokens, with which role and which public key.

Every lookup reads the database, so that a client registered from the CLI while the gateway runs can
get a token at once, and a revoked one cannot.
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from sqlalchemy import Engine, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gateway.auth.roles import AGENCIES, ROLES
from gateway.db import transaction, utcnow
from gateway.errors import Conflict, GatewayError, InvalidInput, NotFound
from gateway.models import Client

#: Client ids: short, printable, and free of ':' (the replay store keys on ``client_id:jti``).
CLIENT_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

#: The assertion ``alg`` values accepted for each registered key algorithm. RFC 9864 names Ed25519
#: ``Ed25519``; the older polymorphic ``EdDSA`` is accepted too, for clients not yet updated.
ASSERTION_ALGORITHMS: Final[dict[str, tuple[str, ...]]] = {
    "Ed25519": ("Ed25519", "EdDSA"),
    "ES256": ("ES256",),
    "RS256": ("RS256",),
}

MIN_RSA_BITS: Final = 2048


class ClientError(GatewayError):
    """A registry operation refused; the subclasses carry the HTTP status of each case."""


class InvalidClientRegistration(ClientError, InvalidInput):
    """Bad client id, agency, role or public key (400, naming the field)."""


def _refused(field: str, message: str) -> InvalidClientRegistration:
    return InvalidClientRegistration(f"{field}: {message}", errors=[{"field": field, "message": message}])


class ClientAlreadyRegistered(ClientError, Conflict):
    """The client id is taken (409)."""


class UnknownClient(ClientError, NotFound):
    """No client with that id (404)."""


def key_alg_for_public_key(public_key_pem: str | bytes) -> str:
    """The JWS algorithm for a PEM public key: ``Ed25519``, ``ES256`` (P-256) or ``RS256`` (>= 2048 bits).

    Raises ``InvalidClientRegistration`` for a private key, an unreadable PEM or any other kind of key.
    """
    pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
    if b"PRIVATE KEY" in pem:
        raise _refused(
            "publicKey", "this is a private key; register the public key and keep the private key secret"
        )
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as e:
        raise _refused("publicKey", "not a PEM public key (SubjectPublicKeyInfo)") from e
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return "ES256"
        raise _refused("publicKey", f"EC curve {key.curve.name} is not supported; use P-256")
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size >= MIN_RSA_BITS:
            return "RS256"
        raise _refused(
            "publicKey", f"RSA key of {key.key_size} bits is too short; use at least {MIN_RSA_BITS}"
        )
    raise _refused(
        "publicKey", f"{type(key).__name__} is not supported; use Ed25519, EC P-256 or RSA >= 2048 bits"
    )


def _normalised_pem(public_key_pem: str | bytes) -> str:
    pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
    key = serialization.load_pem_public_key(pem)
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@dataclass(frozen=True)
class Registration:
    """What a request's token check needs of a client: its agency, its role, and whether it is revoked."""

    agency: str
    role: str
    revoked: bool


class ClientRegistry:
    """Register, list, revoke and look up clients, straight from the database."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._engine: Engine = sessions.kw["bind"]
        self._registration = select(Client.agency, Client.role, Client.revoked_at).where(
            Client.client_id == bindparam("client_id")
        )

    def register(self, client_id: str, agency: str, role: str, public_key_pem: str | bytes) -> Client:
        """Register a client with its public key; the key type decides the assertion algorithm."""
        if not CLIENT_ID_PATTERN.fullmatch(client_id):
            raise _refused(
                "clientId", "1 to 64 characters: letters, digits, '.', '_' or '-', starting alphanumeric"
            )
        if agency not in AGENCIES:
            raise _refused("agency", f"unknown agency; one of {', '.join(sorted(AGENCIES))}")
        if role not in ROLES:
            raise _refused("role", f"unknown role; one of {', '.join(sorted(ROLES))}")
        key_alg = key_alg_for_public_key(public_key_pem)
        client = Client(
            client_id=client_id,
            agency=agency,
            role=role,
            public_key_pem=_normalised_pem(public_key_pem),
            key_alg=key_alg,
            created_at=utcnow(),
        )
        try:
            with transaction(self._sessions) as session:
                if session.get(Client, client_id) is not None:
                    raise ClientAlreadyRegistered(f"client {client_id} is already registered")
                session.add(client)
        except IntegrityError as e:  # registered concurrently
            raise ClientAlreadyRegistered(f"client {client_id} is already registered") from e
        return client

    def list(self) -> builtins.list[Client]:
        """All clients, revoked ones included, by client id."""
        with self._sessions() as session:
            return builtins.list(session.scalars(select(Client).order_by(Client.client_id)))

    def revoke(self, client_id: str) -> Client:
        """Revoke a client: no new tokens, and its tokens already issued stop working at once."""
        with transaction(self._sessions) as session:
            client = session.get(Client, client_id)
            if client is None:
                raise UnknownClient(f"no client {client_id}")
            if client.revoked_at is None:
                client.revoked_at = utcnow()
            return client

    def get(self, client_id: str) -> Client | None:
        """The client, revoked or not, or ``None``."""
        with self._sessions() as session:
            return session.get(Client, client_id)

    def registration(self, client_id: str) -> Registration | None:
        """The client's agency, role and revocation, or ``None``: one indexed read on a plain
        connection (no ORM session or object), as every authenticated request makes it."""
        with self._engine.connect() as connection:
            row = connection.execute(self._registration, {"client_id": client_id}).first()
        if row is None:
            return None
        return Registration(agency=row.agency, role=row.role, revoked=row.revoked_at is not None)

    def get_active(self, client_id: str) -> Client | None:
        """The client if it is registered and not revoked, else ``None``."""
        client = self.get(client_id)
        if client is None or client.revoked_at is not None:
            return None
        return client

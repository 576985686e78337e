"""ORM models of the gateway's own state (the audit log has its own tables in ``audit``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from audit import UTCDateTime
from gateway.db import AgencyId, Base, Id, Timestamp


class Client(Base):
    """An agency system (or officer tool) allowed to get tokens with its registered public key."""

    __tablename__ = "clients"

    client_id: Mapped[Id]
    agency: Mapped[AgencyId]
    role: Mapped[str] = mapped_column(String(32))
    public_key_pem: Mapped[str] = mapped_column(Text)
    key_alg: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[Timestamp]
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)


class UsedAssertion(Base):
    """A client assertion ``jti`` already spent; kept until its ``exp`` to refuse replays."""

    __tablename__ = "used_assertions"

    jti_key: Mapped[str] = mapped_column(String(128), primary_key=True)  # client_id + ':' + jti
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Case(Base):
    """A case: which flow and step it is in, and which tracks are open."""

    __tablename__ = "cases"

    case_id: Mapped[Id]
    flow: Mapped[str] = mapped_column(String(32))
    step: Mapped[str] = mapped_column(String(64))
    zorg: Mapped[bool] = mapped_column(Boolean, default=False)
    straf: Mapped[bool] = mapped_column(Boolean, default=False)
    opened_by: Mapped[AgencyId]
    involved: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]
    identities_erased_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    """When the subjects' sealed identities (and the case key) were erased; None while they are kept."""

    subjects: Mapped[list[Subject]] = relationship(
        back_populates="case", cascade="all, delete-orphan", order_by="Subject.position", lazy="selectin"
    )


class Subject(Base):
    """A person in a case: a role and a keyed pseudonym of the BSN, never the BSN itself."""

    __tablename__ = "subjects"

    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id"), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    role: Mapped[str] = mapped_column(String(32))
    pseudonym: Mapped[str] = mapped_column(String(64), index=True)
    identity: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    """The BSN sealed (AES-256-GCM) with the case's key; None once erased. Never the BSN in clear."""

    case: Mapped[Case] = relationship(back_populates="subjects")


class Message(Base):
    """A minimised message waiting in (or acknowledged from) a recipient agency's inbox."""

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_recipient_acked", "recipient", "acked_at"),)

    message_id: Mapped[Id]
    share_id: Mapped[str] = mapped_column(String(64), index=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id"))
    recipient: Mapped[AgencyId]
    sender: Mapped[AgencyId]
    information_type: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(64))
    legal_basis: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """Legacy clear payload of messages stored before sealing (0004); None for every new message."""
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    """The delivered content (payload and subjects) sealed with AES-256-GCM; None once erased."""
    retain_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    """The end of the grant's retention term: the sweeper erases the content then, acknowledged or not."""
    erased_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    received_at: Mapped[Timestamp]
    acked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    based_on: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    """The received messages the sender shared this on from (its ``basedOn``), if any."""
    origin: Mapped[list[dict[str, str]] | None] = mapped_column(JSON, default=None)
    """Their lineage: ``{messageId, purpose, informationType, sender}`` of every message it derives from."""


class CaseKey(Base):
    """A case's data key, wrapped (AES-256-GCM) by the key-encryption key that lives outside the database.

    Deleting the row erases every identity sealed with it (crypto-shredding).
    """

    __tablename__ = "case_keys"

    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id"), primary_key=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[Timestamp]


class Share(Base):
    """One share as its sender sees it: every recipient with the decision, refused ones included."""

    __tablename__ = "shares"

    share_id: Mapped[Id]
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id"), index=True)
    sender: Mapped[AgencyId]
    information_type: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(64))
    recipients: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """``[{recipient, allowed, messageId?}]`` in the order the sender named them."""
    created_at: Mapped[Timestamp]


class OutboxItem(Base):
    """A message to push to its recipient's system, written in the share's own transaction."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next", "status", "next_attempt_at"),)

    message_id: Mapped[str] = mapped_column(ForeignKey("messages.message_id"), primary_key=True)
    share_id: Mapped[str] = mapped_column(String(64), index=True)
    recipient: Mapped[AgencyId]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    """``pending``, ``delivered`` or ``dead_letter``."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[Timestamp]
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    """A deliverer's lease: another process leaves the row alone until then."""
    last_error: Mapped[str | None] = mapped_column(String(200), default=None)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[Timestamp]


class PolicyRevision(Base):
    """A policy revision that was activated: its files, content-addressed by the revision (issue 11)."""

    __tablename__ = "policy_revisions"

    revision: Mapped[str] = mapped_column(String(80), primary_key=True)
    files: Mapped[str] = mapped_column(Text)
    """Canonical JSON ``{relative path: text}`` of the revision's ``.rego`` and ``.json`` files."""
    created_at: Mapped[Timestamp]
    activated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    """The latest activation (a start or a reload, on any replica): the newest is the active revision."""


class DecisionInput(Base):
    """One decision's policy input, under the SHA-256 of its canonical JSON (the entry's ``inputDigest``).

    Identifiers, pseudonyms and field names only: the policy input never holds a BSN or payload content.
    """

    __tablename__ = "decision_inputs"
    __table_args__ = (Index("ix_decision_inputs_created_at", "created_at"),)

    digest: Mapped[str] = mapped_column(String(80), primary_key=True)
    input: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[Timestamp]


@dataclass(frozen=True, slots=True)
class SubjectRecord:
    """A subject as the services read it: a role and a pseudonym."""

    position: int
    role: str
    pseudonym: str


@dataclass(frozen=True, slots=True)
class CaseRecord:
    """A case as the services read it (one query, no ORM identity): changes go through SQL, not this."""

    case_id: str
    flow: str
    step: str
    zorg: bool
    straf: bool
    opened_by: str
    involved: tuple[str, ...]
    created_at: dt.datetime
    updated_at: dt.datetime
    subjects: tuple[SubjectRecord, ...]

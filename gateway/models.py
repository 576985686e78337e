"""ORM models of the gateway's own state (the audit log has its own tables in ``audit``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text
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
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[Timestamp]
    acked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    based_on: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    """The received messages the sender shared this on from (its ``basedOn``), if any."""
    origin: Mapped[list[dict[str, str]] | None] = mapped_column(JSON, default=None)
    """Their lineage: ``{messageId, purpose, informationType, sender}`` of every message it derives from."""


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

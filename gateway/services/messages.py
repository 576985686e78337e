"""Stored messages opened for delivery: one place reads a message row into what its recipient receives.

The inbox (pull) and the deliverer (push, `gateway.services.outbox`) both go through `open_content`, so
the payload and the subjects a recipient receives are the same whichever way the message travels.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from connectors import Delivery, SubjectIdentity
from gateway.models import Message
from gateway.runtime import Runtime


def usage_restriction(purpose: str, legal_basis: str | None) -> str:
    """The restriction that travels with delivered data (purpose binding, baseline rule 4)."""
    return (
        f"Only for purpose '{purpose}' (basis: {legal_basis or 'n/a'}). "
        "Sharing it on is a new decision through the gateway."
    )


class Unopenable(Exception):
    """A stored message whose content cannot be opened: damaged, tampered with, or under another key."""


def open_content(rt: Runtime, m: Any) -> tuple[dict[str, Any], tuple[SubjectIdentity, ...]] | None:
    """The payload and subjects of message row ``m`` (any row with the `Message` columns), or None when
    its content was erased. Raises `Unopenable` when it cannot be opened."""
    if m.payload is not None:  # a row from before sealing (0004), until the start-up sweep seals it
        payload = m.payload
        if not isinstance(payload, dict):
            raise Unopenable("payload")
        return payload, ()
    return None


def stored_delivery(
    rt: Runtime, conn: Connection | Session, message_id: str, trace_parent: str
) -> Delivery | None:
    """The `Delivery` of a stored message, with the subjects its recipient may identify.

    None when there is no such message, or its content was erased (acknowledged, or past its retention
    term). Raises `Unopenable` when the row cannot be opened: the deliverer should not retry it.
    """
    m = conn.execute(select(Message.__table__).where(Message.message_id == message_id)).first()
    if m is None or m.erased_at is not None:
        return None
    content = open_content(rt, m)
    if content is None:
        return None
    payload, subjects = content
    return Delivery(
        message_id=m.message_id,
        case_id=m.case_id,
        sender=m.sender,
        recipient=m.recipient,
        information_type=m.information_type,
        purpose=m.purpose,
        legal_basis=m.legal_basis,
        payload=payload,
        usage_restriction=usage_restriction(m.purpose, m.legal_basis),
        trace_parent=trace_parent,
        subjects=subjects,
    )

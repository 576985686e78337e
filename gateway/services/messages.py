"""Stored messages: sealed when a share stores them, opened for their recipient, erased after.

The inbox (pull) and the deliverer (push, `gateway.services.outbox`) both open a row through
`open_content`, so the payload and the subjects a recipient receives are the same whichever way the
message travels. The content (``{payload, subjects}``) is sealed at rest (`gateway.sealing`); a row
whose content was erased (acknowledged, or past its grant's retention term) opens to nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from connectors import Delivery, SubjectIdentity
from gateway.models import Message
from gateway.runtime import Runtime
from gateway.sealing import Sealer, Unsealable
from gateway.services.policy_input import IDENTITY_PREFIX
from gateway.strictjson import strict_json

log = logging.getLogger("gateway.messages")


def usage_restriction(purpose: str, legal_basis: str | None) -> str:
    """The restriction that travels with delivered data (purpose binding, baseline rule 4)."""
    return (
        f"Only for purpose '{purpose}' (basis: {legal_basis or 'n/a'}). "
        "Sharing it on is a new decision through the gateway."
    )


__all__ = [
    "IDENTITY_PREFIX",
    "SealedIdentities",
    "Unopenable",
    "case_identities",
    "open_content",
    "stored_delivery",
]


class Unopenable(Exception):
    """A stored message whose content cannot be opened: damaged, tampered with, or under another key."""


def identity_fields(roles: Iterable[str]) -> list[str]:
    """The pseudo-fields (``bsn:<role>``) of subjects in ``roles``, as the policy input names them."""
    return [IDENTITY_PREFIX + r for r in sorted(set(roles))]


def identity_roles(fields: Iterable[str]) -> set[str]:
    """The roles whose identities ``fields`` (a decision's, narrowed) let through."""
    return {f[len(IDENTITY_PREFIX) :] for f in fields if f.startswith(IDENTITY_PREFIX)}


@dataclass(frozen=True)
class SealedIdentities:
    """A case's subjects' identities as stored, read with the case (`CaseService.load_sealed`): the
    wrapped case key (None once erased) and each subject's sealed BSN. Opened only when a recipient may
    identify someone."""

    case_id: str
    wrapped: bytes | None
    subjects: tuple[tuple[int, str, bytes], ...]
    """(position, role, sealed identity) in position order; erased identities are left out."""


def case_identities(sealer: Sealer, sealed: SealedIdentities) -> list[SubjectIdentity]:
    """The case's subjects with their BSN, in position order; none once the case key was erased.

    A subject whose sealed identity does not open (damaged) is left out and logged by position: a
    recipient then misses one identity rather than every message of the case.
    """
    case_id = sealed.case_id
    if sealed.wrapped is None:
        return []
    try:
        key = sealer.unwrap_case_key(case_id, sealed.wrapped)
    except Unsealable:
        log.error("the key of case %s does not open", case_id)
        return []
    out = []
    for position, role, identity in sealed.subjects:
        try:
            out.append(SubjectIdentity(role, sealer.open_identity(key, case_id, position, role, identity)))
        except Unsealable:
            log.error("the identity of subject %d of case %s does not open", position, case_id)
    return out


def seal_content(
    sealer: Sealer,
    message_id: str,
    recipient: str,
    payload: dict[str, Any],
    subjects: Iterable[SubjectIdentity],
) -> bytes:
    """What a message row stores: its payload and subjects, sealed for its recipient."""
    content = {"payload": payload, "subjects": [{"role": s.role, "bsn": s.bsn} for s in subjects]}
    return sealer.seal_message(message_id, recipient, content)


def open_content(rt: Runtime, m: Any) -> tuple[dict[str, Any], tuple[SubjectIdentity, ...]] | None:
    """The payload and subjects of message row ``m`` (any row with the `Message` columns), or None when
    its content was erased. Raises `Unopenable` when it cannot be opened (fail closed)."""
    if m.erased_at is not None:
        return None
    if m.sealed is not None:
        try:
            content = rt.sealer.open_message(m.message_id, m.recipient, m.sealed)
        except Unsealable as e:
            raise Unopenable("sealed") from e
        payload, subjects = content.get("payload"), content.get("subjects")
        if not isinstance(payload, dict) or not isinstance(subjects, list):
            raise Unopenable("shape")
        try:
            return payload, tuple(SubjectIdentity(str(s["role"]), str(s["bsn"])) for s in subjects)
        except (TypeError, KeyError) as e:
            raise Unopenable("subjects") from e
    # A row from before sealing (0004), until the start-up pass seals it; the inbox reads it as text.
    payload = strict_json(m.payload) if isinstance(m.payload, str) else m.payload
    if payload is None:
        return None
    if not isinstance(payload, dict):
        raise Unopenable("payload")
    return payload, ()


def stored_delivery(
    rt: Runtime, conn: Connection | Session, message_id: str, trace_parent: str
) -> Delivery | None:
    """The `Delivery` of a stored message, with the subjects its recipient may identify.

    None when there is no such message, or its content was erased (acknowledged, or past its retention
    term). Raises `Unopenable` when the row cannot be opened: the deliverer should not retry it.
    """
    m = conn.execute(select(Message.__table__).where(Message.message_id == message_id)).first()
    if m is None:
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

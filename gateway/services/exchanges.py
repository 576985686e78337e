"""Exchanges: shares (push), the inbox, requests (pull) and what-if decisions.

Order on every path: validate -> decide (one evaluation for all recipients) -> commit the audit entries
together with the exchange's own rows (the messages, the case's involvement) in one transaction -> only
then move data. A recipient the policy refuses receives nothing; a share answered 5xx stored nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import httpx
from pydantic import ValidationError
from sqlalchemy import Connection, Row, Text, cast, func, insert, null, select, update
from sqlalchemy.orm import defer

from connectors import (
    ConnectorError,
    ConnectorRejected,
    ConnectorTimeout,
    ConnectorUnavailable,
    Delivery,
    FetchRequest,
    SubjectIdentity,
)
from gateway.db import Base, utcnow
from gateway.errors import HOLDER_RETRY_AFTER, InvalidInput, NotFound, UpstreamFailed, UpstreamTimeout
from gateway.models import CaseRecord, Message, OutboxItem, Share
from gateway.policy import STRIP_FIELDS, USAGE_RESTRICTION, Decision, RecipientDecision
from gateway.runtime import Runtime
from gateway.schemas import DecisionIn, InboxMessage, RequestIn, ShareIn
from gateway.services import policy_input
from gateway.services.cases import CaseService, involve, refusal
from gateway.services.messages import (
    IDENTITY_PREFIX,
    Unopenable,
    case_identities,
    identity_roles,
    open_content,
    seal_content,
    usage_restriction,
)
from gateway.services.trail import CallContext, case_entry, make_entry, payload_digest
from gateway.strictjson import strict_json

log = logging.getLogger("gateway.exchanges")


def _restriction(part: RecipientDecision, purpose: str) -> str:
    """The usage restriction of one delivery, from the policy's ``usage_restriction`` obligation.

    Rule 4 holds whatever the policy returns: without the obligation the delivery is bound to the
    share's purpose all the same.
    """
    for o in part.obligations:
        if o.code == USAGE_RESTRICTION and isinstance(o.params.get("purpose"), str):
            return usage_restriction(str(o.params["purpose"]), part.legal_basis)
    return usage_restriction(part.purpose or purpose, part.legal_basis)


def _narrowed(part: RecipientDecision) -> set[str]:
    """The decision's fields, narrowed by its ``strip_fields`` obligations."""
    fields = set(part.fields)
    for o in part.obligations:
        if o.code == STRIP_FIELDS:
            fields &= set(o.fields)
    return fields


def _delivered_fields(part: RecipientDecision, available: Iterable[str]) -> list[str]:
    """The payload fields that reach a recipient: the decision's fields, narrowed by ``strip_fields``, of
    those ``available`` (a share's payload keys, or every field for a request's answer). An identity
    pseudo-field (``bsn:<role>``) is never a payload field, whatever a payload holds."""
    return sorted(f for f in _narrowed(part).intersection(available) if not f.startswith(IDENTITY_PREFIX))


def holder_error(e: ConnectorError, unconnected: bool = False) -> str:
    """The kind of a holder's failure, for the audit entry and the problem document (``error``).

    ``timeout`` (no answer within the deadline), ``refused`` (the system answered and refused),
    ``unreachable`` (no connection), ``no_connector`` (none configured) or ``unavailable`` (a 5xx, or
    an answer that is not a valid one). Never the system's own words.
    """
    if unconnected:
        return "no_connector"
    if isinstance(e, ConnectorTimeout):
        return "timeout"
    if isinstance(e, ConnectorRejected):
        return "refused"
    if isinstance(e.__cause__, (OSError, httpx.NetworkError)):
        return "unreachable"
    return "unavailable"


def _stored(text: str | None) -> Any:
    return None if text is None else strict_json(text)


def _shown(rt: Runtime, m: Row[*tuple[Any, ...]]) -> dict[str, Any]:
    """One inbox row as the API shows it, its content opened; ``InvalidInput``, ``ValidationError`` or
    ``Unopenable`` when it cannot be."""
    content = open_content(rt, m)
    if content is None:
        raise Unopenable("erased")
    payload, subjects = content
    shown = {
        "messageId": m.message_id,
        "caseId": m.case_id,
        "informationType": m.information_type,
        "purpose": m.purpose,
        "sender": m.sender,
        "legalBasis": m.legal_basis,
        "payload": payload,
        "subjects": [{"role": s.role, "bsn": s.bsn} for s in subjects],
        "receivedAt": m.received_at,
        "usageRestriction": usage_restriction(m.purpose, m.legal_basis),
        "basedOn": _stored(m.based_on),
        "origin": _stored(m.origin),
    }
    InboxMessage.model_validate(shown)  # the same check the response gets, but for this row alone
    return shown


# One multi-row insert per table, built once on the tables (not the ORM classes, whose statements go
# through the ORM's bulk machinery even on a plain connection).
_INSERT_SHARE = insert(Base.metadata.tables[Share.__tablename__])
_INSERT_MESSAGES = insert(Base.metadata.tables[Message.__tablename__])
_INSERT_OUTBOX = insert(Base.metadata.tables[OutboxItem.__tablename__])

_SHARE_ROW_KEYS = ("recipient", "allowed", "messageId", "identifies")
"""What the shares row keeps of each result, for ``GET /v1/shares/{shareId}``."""

NOT_RECEIVED = "not a message delivered to your agency in this case"


def _origin_of(m: Message) -> dict[str, str]:
    """A delivered message as an origin entry of the policy input."""
    return {
        "messageId": m.message_id,
        "purpose": m.purpose,
        "informationType": m.information_type,
        "sender": m.sender,
    }


class ExchangeService:
    """Shares, inbox, requests and what-if decisions on one runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.cases = CaseService(rt)

    def _check_identifiers(
        self, information_type: str | None, purpose: str | None, step: str | None = None
    ) -> None:
        facts = self.rt.process_facts()
        errors = []
        if step is not None and not any(step in facts.steps(f) for f in facts.flows()):
            errors.append({"field": "step", "message": "unknown step"})
        if information_type is not None and information_type not in facts.information_types():
            errors.append({"field": "informationType", "message": "unknown information type"})
        if purpose is not None and purpose not in facts.purposes():
            errors.append({"field": "purpose", "message": "unknown purpose"})
        if errors:
            raise InvalidInput("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)

    # -- shares ---------------------------------------------------------------------------------------

    def origin(self, ctx: CallContext, case: CaseRecord, based_on: list[str] | None) -> list[dict[str, str]]:
        """Where shared-on data came from: each message in ``based_on`` and, in turn, its own origin.

        Each must be a message delivered to the caller's agency in this case; otherwise a 404 naming
        the field that does not say whether the id exists elsewhere. The policy checks the new purpose
        against every purpose in the result (baseline rule 4: received data carries its purpose).
        """
        if not based_on:
            return []
        with self.rt.sessions() as s:
            query = select(Message).where(Message.message_id.in_(based_on))
            found = {m.message_id: m for m in s.scalars(query)}
        errors = []
        lineage: dict[str, dict[str, str]] = {}
        for i, message_id in enumerate(based_on):
            m = found.get(message_id)
            if m is None or m.recipient != ctx.principal.agency or m.case_id != case.case_id:
                errors.append({"field": f"basedOn[{i}]", "message": NOT_RECEIVED})
                continue
            for item in [_origin_of(m), *(m.origin or [])]:
                lineage.setdefault(item["messageId"], item)
        if errors:
            # A well-formed id that names nothing the caller received: not found, naming the field, and
            # the same answer whether the id exists elsewhere or not at all.
            raise NotFound("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)
        return list(lineage.values())

    def share(self, ctx: CallContext, case_id: str, body: ShareIn) -> dict[str, Any]:
        """Decide per recipient; commit the entries, messages and involvement at once; then push."""
        self._check_identifiers(body.information_type, body.purpose)
        if len(set(body.recipients)) != len(body.recipients):
            raise InvalidInput.field("recipients", "a recipient is listed twice")
        engine = self.rt.policy.current
        loaded, sealed = self.cases.load_sealed(case_id)
        case, failure = self.cases.visible(ctx, case_id, attempted="share", engine=engine, loaded=loaded)
        origin = self.origin(ctx, case, body.based_on)
        built = policy_input.share(
            ctx,
            case,
            self.rt.process_facts(),
            information_type=body.information_type,
            purpose=body.purpose,
            recipients=body.recipients,
            field_names=body.payload.keys(),
            origin=origin,
        )
        decision = self.cases.decide(built, failure, engine)
        share_id = str(uuid.uuid4())
        sender = ctx.principal.agency
        now = utcnow()
        entries: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        deliveries: list[Delivery] = []
        facts = self.rt.process_facts()
        identities: list[SubjectIdentity] | None = None  # opened once, when a recipient may identify someone
        for recipient in body.recipients:
            part = decision.recipient(recipient)
            result: dict[str, Any] = {
                "recipient": recipient,
                "allowed": part.allowed,
                "reasons": [r.to_json() for r in part.reasons],
                "legalBasis": part.legal_basis,
            }
            refs = {"shareId": share_id}
            minimised: dict[str, Any] = {}
            if part.allowed:
                fields = _delivered_fields(part, body.payload)
                minimised = {k: body.payload[k] for k in fields}
                roles = identity_roles(_narrowed(part))
                if roles and identities is None:
                    identities = case_identities(self.rt.sealer, sealed)
                subjects = tuple(i for i in identities or () if i.role in roles)
                message_id = str(uuid.uuid4())
                refs["messageId"] = message_id
                result.update(messageId=message_id, fields=fields, identifies=[i.role for i in subjects])
                messages.append(
                    {
                        "message_id": message_id,
                        "share_id": share_id,
                        "case_id": case.case_id,
                        "recipient": recipient,
                        "sender": sender,
                        "information_type": body.information_type,
                        "purpose": body.purpose,
                        "legal_basis": part.legal_basis or "",
                        "sealed": seal_content(self.rt.sealer, message_id, recipient, minimised, subjects),
                        "received_at": now,
                        "retain_until": now
                        + facts.message_retention(body.information_type, recipient, sender),
                        "based_on": list(body.based_on) if body.based_on else None,
                        "origin": origin or None,
                    }
                )
                deliveries.append(
                    Delivery(
                        message_id=message_id,
                        case_id=case.case_id,
                        sender=sender,
                        recipient=recipient,
                        information_type=body.information_type,
                        purpose=body.purpose,
                        legal_basis=part.legal_basis or "",
                        payload=minimised,
                        usage_restriction=_restriction(part, body.purpose),
                        trace_parent=ctx.trace.child().traceparent,
                        subjects=subjects,
                    )
                )
            if body.based_on:
                # The trail names what the data was shared on from (comma-separated message ids).
                refs["basedOn"] = ",".join(body.based_on)
            entries.append(
                case_entry(
                    ctx,
                    case,
                    type_="exchange",
                    action="share",
                    outcome="authorised" if part.allowed else "refused",
                    information_type=body.information_type,
                    purpose=body.purpose,
                    decision=decision,
                    recipient=recipient,
                    digest=payload_digest(minimised) if part.allowed else None,
                    refs=refs,
                )
            )
            results.append(result)

        share_row = {
            "share_id": share_id,
            "case_id": case.case_id,
            "sender": sender,
            "information_type": body.information_type,
            "purpose": body.purpose,
            "recipients": [{k: r[k] for k in _SHARE_ROW_KEYS if k in r} for r in results],
            "created_at": now,
        }
        # One outbox row per push recipient, born claimed by this request for the first attempt (none
        # while the recipient's circuit is open: the deliverer then takes the row when it may).
        deliverer = self.rt.deliverer
        leases = {
            m["message_id"]: deliverer.first_lease(m["recipient"])
            for m in messages
            if deliverer.pushes(m["recipient"])
        }
        outbox = [
            {
                "message_id": message_id,
                "share_id": share_id,
                "recipient": d.recipient,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "claimed_until": leases[message_id],
                "created_at": now,
            }
            for d in deliveries
            if (message_id := d.message_id) in leases
        ]

        def store(conn: Connection) -> None:
            conn.execute(_INSERT_SHARE, [share_row])
            if messages:
                conn.execute(_INSERT_MESSAGES, messages)
                involve(conn, case.case_id, [sender, *(m["recipient"] for m in messages)], case.involved)
            if outbox:
                conn.execute(_INSERT_OUTBOX, outbox)

        # No audit, no exchange: the entries commit with the share, its messages and its outbox rows,
        # or none of them does.
        self.rt.audit_append(entries, writes=store)
        # One attempt each, now; the deliverer retries what did not go. The answer never waits for that.
        pushed = deliverer.first_attempts(
            [(d, share_id, lease) for d in deliveries if (lease := leases.get(d.message_id)) is not None]
        )
        for result in results:
            if result["allowed"]:
                result["delivered"] = pushed.get(result["messageId"], False)
        return {"shareId": share_id, "policyRevision": decision.policy_revision, "results": results}

    # -- inbox ----------------------------------------------------------------------------------------

    def inbox(self, ctx: CallContext, limit: int = 100) -> dict[str, Any]:
        """Unacknowledged messages for the caller's agency, oldest first: ``{messages, unreadable}``.

        Stored JSON is read as text and parsed as strictly as a request body, one row at a time. A
        message that cannot be shown (a payload an older version let through, a damaged row) is listed
        under ``unreadable`` by id instead: it neither hides the others nor stays out of reach of an ack.
        """
        with self.rt.sessions() as s:
            rows = s.execute(
                select(
                    Message.message_id,
                    Message.case_id,
                    Message.information_type,
                    Message.purpose,
                    Message.sender,
                    Message.legal_basis,
                    Message.received_at,
                    Message.recipient,
                    Message.sealed,
                    Message.erased_at,
                    cast(Message.payload, Text).label("payload"),
                    cast(Message.based_on, Text).label("based_on"),
                    cast(Message.origin, Text).label("origin"),
                )
                .where(
                    Message.recipient == ctx.principal.agency,
                    Message.acked_at.is_(None),
                    Message.erased_at.is_(None),  # past its retention term: gone, the trail says when
                )
                .order_by(Message.received_at)
                .limit(limit)
            ).all()
        messages, unreadable = [], []
        for m in rows:
            try:
                messages.append(_shown(self.rt, m))
            except (InvalidInput, ValidationError, Unopenable) as e:
                # By id and kind only: the reason could quote the stored content.
                log.warning("inbox: message %s cannot be shown: %s", m.message_id, type(e).__name__)
                unreadable.append(
                    {
                        "messageId": m.message_id,
                        "caseId": m.case_id,
                        "sender": m.sender,
                        "receivedAt": m.received_at,
                    }
                )
        return {"messages": messages, "unreadable": unreadable}

    def ack(self, ctx: CallContext, message_id: str) -> None:
        """Acknowledge a message of the caller's agency; another agency's message is a 404."""
        with self.rt.sessions() as s:
            # Without the payload: a message the inbox cannot show must still be acknowledged.
            m = s.get(
                Message,
                message_id,
                options=[defer(Message.payload), defer(Message.sealed), defer(Message.origin)],
            )
            if m is None or m.recipient != ctx.principal.agency:
                raise NotFound("no such message")
            if m.acked_at is not None:
                return
            case_id, info_type, purpose, sender = m.case_id, m.information_type, m.purpose, m.sender
        entry = make_entry(
            ctx,
            type_="delivery",
            action="ack",
            outcome="acknowledged",
            case_id=case_id,
            counterpart=sender,
            information_type=info_type,
            purpose=purpose,
            refs={"messageId": message_id},
        )

        def mark(conn: Connection) -> None:
            now = utcnow()
            # Acknowledged is received: the content is erased in the same transaction (the ack's entry
            # says so), and SQLite's secure_delete overwrites the freed bytes.
            conn.execute(
                update(Message)
                .where(Message.message_id == message_id, Message.acked_at.is_(None))
                .ordered_values(
                    (Message.acked_at, now),
                    (Message.sealed, None),
                    (Message.payload, null()),
                    (Message.erased_at, func.coalesce(Message.erased_at, now)),
                )
            )

        # The entry and the acknowledgement (with the erasure) commit together: never one without the other.
        self.rt.audit_append([entry], writes=mark)

    # -- requests -------------------------------------------------------------------------------------

    def request(self, ctx: CallContext, case_id: str, body: RequestIn) -> dict[str, Any]:
        """Ask the holder's system for information; answered minimised, or 403 with reasons."""
        self._check_identifiers(body.information_type, body.purpose)
        case, failure = self.cases.visible(ctx, case_id, attempted="request")
        requester = ctx.principal.agency
        decision = self.cases.decide(
            policy_input.request(
                ctx, case, information_type=body.information_type, purpose=body.purpose, holder=body.holder
            ),
            failure,
        )
        part = decision.recipient(requester)
        request_id = str(uuid.uuid4())
        focus = requester if requester in decision.recipients else None

        def entry(
            type_: str, outcome: str, digest: str | None = None, refs: dict[str, str] | None = None
        ) -> dict[str, Any]:
            return case_entry(
                ctx,
                case,
                type_=type_,
                action="request",
                outcome=outcome,
                information_type=body.information_type,
                purpose=body.purpose,
                counterpart=body.holder,
                decision=decision,
                recipient=focus,
                digest=digest,
                refs={"requestId": request_id, **(refs or {})},
            )

        # The decision is committed before the holder is asked: no data moves without its entry.
        self.rt.audit_append([entry("decision", "authorised" if part.allowed else "refused")])
        if not part.allowed:
            raise refusal("request", part.reasons, decision, requestId=request_id)
        connector = self.rt.connectors.get(body.holder)
        try:
            if connector is None:
                raise ConnectorUnavailable(body.holder, "no connector")
            result = connector.fetch(
                FetchRequest(
                    request_id=request_id,
                    case_id=case.case_id,
                    requester=requester,
                    holder=body.holder,
                    information_type=body.information_type,
                    purpose=body.purpose,
                    subject_roles=[s.role for s in case.subjects],
                    subject_pseudonyms=[s.pseudonym for s in case.subjects],
                    trace_parent=ctx.trace.child().traceparent,
                )
            )
        except ConnectorError as e:
            raise self._holder_failed(entry, body.holder, e, connector is None) from None
        allowed_fields = set(_delivered_fields(part, part.fields))
        data = {k: v for k, v in (result.data if result.found else {}).items() if k in allowed_fields}

        def take_part(conn: Connection) -> None:
            involve(conn, case.case_id, [requester, body.holder], case.involved)

        # The answer is audited (with a digest of exactly what goes out) before the caller receives it.
        self.rt.audit_append(
            [entry("exchange", "answered" if result.found else "not_found", payload_digest(data))],
            writes=take_part,
        )
        return {
            "requestId": request_id,
            "allowed": True,
            "legalBasis": part.legal_basis or decision.legal_basis,
            "policyRevision": decision.policy_revision,
            "fields": sorted(data.keys()),
            "data": data,
        }

    def _holder_failed(
        self, entry: Callable[..., dict[str, Any]], holder: str, e: ConnectorError, unconnected: bool
    ) -> UpstreamFailed:
        """The 504 or 502 of a holder's system that timed out or failed, once its failure is audited.

        The entry and the answer name the kind of failure only: the connector's detail may quote what
        the holder's system said, which is not the gateway's to log or to pass on. Nothing of an answer
        reaches the caller. When the failure entry cannot be written, the audit fault (503) is raised.
        """
        kind = holder_error(e, unconnected)
        timed_out = kind == "timeout"
        outcome = "holder_timeout" if timed_out else "holder_failed"
        log.warning("request to %s failed: %s (%s)", holder, kind, type(e).__name__)
        self.rt.audit_append([entry("exchange", outcome, refs={"error": kind})])
        if timed_out:
            return UpstreamTimeout(
                f"the system of {holder} did not answer within the deadline",
                holder=holder,
                error=kind,
                retry_after=HOLDER_RETRY_AFTER,
            )
        return UpstreamFailed(
            f"the system of {holder} failed ({kind})",
            holder=holder,
            error=kind,
            retry_after=None if kind == "refused" else HOLDER_RETRY_AFTER,
        )

    # -- what-if --------------------------------------------------------------------------------------

    def what_if(self, ctx: CallContext, body: DecisionIn) -> tuple[Decision, dict[str, Any]]:
        """Evaluate a decision without changing anything (the evaluation itself is audited).

        The input is built by the same `policy_input` builder the real action uses.
        """
        self._check_identifiers(body.information_type, body.purpose, body.step)
        case, failure = self.cases.visible(ctx, body.case_id, attempted=f"what-if:{body.action}")
        origin = self.origin(ctx, case, body.based_on) if body.action == "share" else []
        built = policy_input.what_if(
            ctx,
            case,
            self.rt.process_facts(),
            action=body.action,
            information_type=body.information_type,
            purpose=body.purpose,
            recipient=body.recipient,
            holder=body.holder,
            field_names=body.payload_fields or [],
            origin=origin,
            flow=body.flow,
            step=body.step,
            track=body.track,
            is_open=body.open,
        )
        decision = self.cases.decide(built, failure)
        focus: str | None = body.recipient if body.action == "share" else None
        if body.action == "request":
            focus = ctx.principal.agency if ctx.principal.agency in decision.recipients else None
        self.rt.audit_append(
            [
                case_entry(
                    ctx,
                    case,
                    type_="decision",
                    action=f"what-if:{body.action}",
                    outcome="evaluated",
                    information_type=body.information_type,
                    purpose=body.purpose,
                    counterpart=body.recipient or body.holder,
                    decision=decision,
                    recipient=focus,
                    subjects=False,
                )
            ]
        )
        part = decision.recipient(focus) if focus else None
        out = {
            "allowed": part.allowed if part else decision.allowed,
            "reasons": [r.to_json() for r in (part.reasons if part else decision.reasons)],
            "legalBasis": part.legal_basis if part else decision.legal_basis,
            "obligations": [o.to_json() for o in decision.obligations],
            "policyRevision": decision.policy_revision,
            "recipients": {a: r.to_json() for a, r in decision.recipients.items()} or None,
        }
        return decision, out

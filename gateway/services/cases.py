"""Cases: open, read, move a step, open and close tracks. Every change is a policy decision first.

A change and its audit entry commit in one transaction (`Runtime.audit_append` with ``writes``): there is
no case change without its entry, and no "moved" entry for a move that did not happen.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Select, bindparam, insert, select, update

from gateway.db import Base, utcnow
from gateway.errors import Conflict, InvalidInput, NotFound, PolicyDenied
from gateway.models import Case, CaseKey, CaseRecord, Subject, SubjectRecord
from gateway.policy import Decision, PolicyEngine, Reason
from gateway.runtime import Runtime
from gateway.schemas import CaseCreate
from gateway.sealing import Sealer
from gateway.services import policy_input
from gateway.services.messages import SealedIdentities
from gateway.services.trail import CallContext, case_entry

ILLEGAL_TRANSITION = "illegal_transition"


def refusal(what: str, reasons: tuple[Reason, ...], decision: Decision, **extra: str) -> PolicyDenied:
    """The 403 of a refused action: its reason codes in the detail, the reasons and the revision."""
    return PolicyDenied(
        f"{what} refused by policy ({', '.join(r.code for r in reasons)})",
        reasons=[r.to_json() for r in reasons],
        extra={"policyRevision": decision.policy_revision, **extra},
    )


_CASES = Base.metadata.tables[Case.__tablename__]
_READ_INVOLVED = select(_CASES.c.involved).where(_CASES.c.case_id == bindparam("b_case_id"))
_WRITE_INVOLVED = (
    update(_CASES)
    .where(_CASES.c.case_id == bindparam("b_case_id"))
    .values(involved=bindparam("b_involved", type_=_CASES.c.involved.type))
)
# Built once: a statement made per call costs its construction and its cache key on every request.


def _case_query(*sealed: Any) -> Select[Any]:
    """The case and its subjects (with ``sealed``'s columns), by ``b_case_id``: one query, built once."""
    cases, subjects, keys = Case.__table__, Subject.__table__, CaseKey.__table__
    query = (
        select(cases, subjects.c.position, subjects.c.role, subjects.c.pseudonym, *sealed)
        .outerjoin(subjects, subjects.c.case_id == cases.c.case_id)
        .where(cases.c.case_id == bindparam("b_case_id"))
        .order_by(subjects.c.position)
    )
    if sealed:
        query = query.outerjoin(keys, keys.c.case_id == cases.c.case_id)
    return query


_LOAD = _case_query()
_LOAD_SEALED = _case_query(Subject.__table__.c.identity, CaseKey.__table__.c.wrapped)


def involve(conn: Connection, case_id: str, agencies: Iterable[str], known: Iterable[str] = ()) -> None:
    """Add ``agencies`` to the case's involved agencies, inside the caller's transaction.

    Read and written under the audit log's write lock (the writes of `Runtime.audit_append`), so two
    exchanges on one case, in any process, never lose each other's agencies. ``known`` are agencies the
    caller already saw involved (the case as it loaded it): the list only ever grows, so when they cover
    ``agencies`` there is nothing to read or write.
    """
    wanted = list(dict.fromkeys(agencies))
    if set(wanted) <= set(known):
        return
    involved = conn.execute(_READ_INVOLVED, {"b_case_id": case_id}).scalar_one_or_none()
    if involved is None:
        return
    merged = list(dict.fromkeys([*involved, *wanted]))
    if merged != involved:
        conn.execute(_WRITE_INVOLVED, {"b_case_id": case_id, "b_involved": merged})


class CaseService:
    """Case operations on one runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def load(self, case_id: str) -> CaseRecord:
        """The case with its subjects, or 404: one query (every route that names a case starts here)."""
        return self._load(_LOAD, case_id)[0]

    def load_sealed(self, case_id: str) -> tuple[CaseRecord, SealedIdentities]:
        """`load`, with the case key and the subjects' sealed identities in the same query (a share
        opens them when a recipient may identify someone)."""
        return self._load(_LOAD_SEALED, case_id)

    def _load(self, query: Select[Any], case_id: str) -> tuple[CaseRecord, SealedIdentities]:
        with self.rt.db.connect() as conn:
            rows = conn.execute(query, {"b_case_id": case_id}).all()
        if not rows:
            raise NotFound("no such case")
        first = rows[0]
        case = CaseRecord(
            case_id=first.case_id,
            flow=first.flow,
            step=first.step,
            zorg=bool(first.zorg),
            straf=bool(first.straf),
            opened_by=first.opened_by,
            involved=tuple(first.involved or ()),
            created_at=first.created_at,
            updated_at=first.updated_at,
            subjects=tuple(
                SubjectRecord(r.position, r.role, r.pseudonym) for r in rows if r.position is not None
            ),
        )
        sealed = SealedIdentities(
            case_id=case.case_id,
            wrapped=getattr(first, "wrapped", None),
            subjects=tuple(
                (r.position, r.role, r.identity)
                for r in rows
                if r.position is not None and getattr(r, "identity", None) is not None
            ),
        )
        return case, sealed

    def visible(
        self,
        ctx: CallContext,
        case_id: str,
        *,
        attempted: str,
        engine: PolicyEngine | None = None,
        loaded: CaseRecord | None = None,
    ) -> tuple[CaseRecord, str | None]:
        """The case, when the caller may read it (``case.read``); otherwise the 404 of a missing id.

        Every route that names a case checks this first, so a caller that may not read a case learns
        nothing about it: not its step from a refusal's reasons, not even that it exists (the 404 is the
        one ``load`` gives for an unknown id). The refused attempt is logged as a refused read.
        ``loaded`` is the case when the caller already read it (`load_sealed`).

        When the engine itself failed (fail closed), the caller may or may not read the case; the second
        value is then the failure's reason code, and the route decides its action as that same failure
        (`decide`) instead of asking the engine again: a deny whose reasons say nothing about the case.
        """
        case = loaded if loaded is not None else self.load(case_id)
        decision = self.rt.decide(policy_input.case_read(ctx, case), engine)
        if decision.allowed:
            return case, None
        if decision.engine_failure:
            return case, decision.codes[0]
        self.rt.audit_append(
            [
                case_entry(
                    ctx,
                    case,
                    type_="access",
                    action="case.read",
                    outcome="refused",
                    decision=decision,
                    refs={"attempted": attempted},
                )
            ]
        )
        raise NotFound("no such case")

    def decide(
        self, built: policy_input.PolicyInput, failure: str | None, engine: PolicyEngine | None = None
    ) -> Decision:
        """Decide ``built``, or deny it with ``failure`` when the visibility check failed closed."""
        if failure is not None:
            revision = (engine or self.rt.policy.current).revision
            return Decision.fail_closed(failure, revision, built)
        return self.rt.decide(built, engine)

    def open(self, ctx: CallContext, body: CaseCreate) -> CaseRecord:
        """Open a case when the policy allows the caller to (baseline rule 7)."""
        steps = self.rt.process_facts().steps(body.flow)
        step = body.step or steps[0]
        if step not in steps:
            raise InvalidInput.field("step", f"not a step of flow {body.flow}")
        now = utcnow()
        case = CaseRecord(
            case_id=str(uuid.uuid4()),
            flow=body.flow,
            step=step,
            zorg=False,
            straf=False,
            opened_by=ctx.principal.agency,
            involved=(),
            created_at=now,
            updated_at=now,
            subjects=tuple(
                SubjectRecord(i, sub.role, self.rt.pseudonymizer.pseudonym(sub.bsn))
                for i, sub in enumerate(body.subjects)
            ),
        )
        decision = self.rt.decide(policy_input.case_open(ctx, case))
        entry = case_entry(
            ctx,
            case,
            type_="case",
            action="case.open",
            outcome="opened" if decision.allowed else "refused",
            decision=decision,
        )
        if not decision.allowed:
            self.rt.audit_append([entry])
            raise refusal("opening the case", decision.reasons, decision)

        # The BSNs are sealed with a new key of this case, wrapped by the key outside the database; the
        # BSN itself is never stored (docs/data-at-rest.md). Sealed here, outside the log's write lock.
        case_key, wrapped = self.rt.sealer.new_case_key(case.case_id)
        identities = [
            Sealer.seal_identity(case_key, case.case_id, s.position, s.role, sub.bsn)
            for s, sub in zip(case.subjects, body.subjects, strict=True)
        ]

        def store(conn: Connection) -> None:
            conn.execute(
                insert(Case).values(
                    case_id=case.case_id,
                    flow=case.flow,
                    step=case.step,
                    zorg=False,
                    straf=False,
                    opened_by=case.opened_by,
                    involved=[ctx.principal.agency],
                    created_at=now,
                    updated_at=now,
                )
            )
            conn.execute(
                insert(Subject),
                [
                    {
                        "case_id": case.case_id,
                        "position": s.position,
                        "role": s.role,
                        "pseudonym": s.pseudonym,
                        "identity": identity,
                    }
                    for s, identity in zip(case.subjects, identities, strict=True)
                ],
            )
            conn.execute(insert(CaseKey).values(case_id=case.case_id, wrapped=wrapped, created_at=now))

        self.rt.audit_append([entry], writes=store)
        # What was committed, not a read back: a read failing now would answer 503 for an opened case,
        # and the opener's retry would open it twice.
        return replace(case, involved=(ctx.principal.agency,))

    def _change(
        self,
        ctx: CallContext,
        case: CaseRecord,
        built: policy_input.PolicyInput,
        *,
        outcome: str,
        refs: dict[str, str],
        failure: str | None,
        values: dict[str, object],
    ) -> tuple[Decision, CaseRecord]:
        """Decide a change of ``case``; when allowed, commit ``values`` with the entry in one transaction.

        The acting agency takes part in the case from then on. A refusal commits its entry alone.
        Returns the decision and the case as committed (``case`` itself when refused): not read back,
        since a read failing after the commit would answer 503 for a change that was made.
        """
        decision = self.decide(built, failure)
        action = str(built["action"])
        entry = case_entry(
            ctx,
            case,
            type_="case",
            action=action,
            outcome=outcome if decision.allowed else "refused",
            decision=decision,
            refs=refs,
        )
        if not decision.allowed:
            self.rt.audit_append([entry])
            return decision, case
        stamped = {**values, "updated_at": utcnow()}

        def change(conn: Connection) -> None:
            conn.execute(update(Case).where(Case.case_id == case.case_id).values(**stamped))
            involve(conn, case.case_id, [ctx.principal.agency], known=case.involved)

        self.rt.audit_append([entry], writes=change)
        involved = tuple(dict.fromkeys([*case.involved, ctx.principal.agency]))
        return decision, replace(case, **stamped, involved=involved)  # type: ignore[arg-type]

    def read(self, ctx: CallContext, case_id: str) -> CaseRecord:
        """The case, to agencies that take part in it; others get a 404 so they learn nothing."""
        case = self.load(case_id)
        decision = self.rt.decide(policy_input.case_read(ctx, case))
        self.rt.audit_append(
            [
                case_entry(
                    ctx,
                    case,
                    type_="access",
                    action="case.read",
                    outcome="read" if decision.allowed else "refused",
                    decision=decision,
                )
            ]
        )
        if not decision.allowed:
            raise NotFound("no such case")
        return case

    def transition(self, ctx: CallContext, case_id: str, flow: str | None, step: str) -> CaseRecord:
        """Move the case to another step (or flow); 409 when the process does not allow that move."""
        case, failure = self.visible(ctx, case_id, attempted="case.transition")
        target_flow = flow or case.flow
        facts = self.rt.process_facts()
        if target_flow not in facts.flows():
            raise InvalidInput.field("flow", "unknown flow")
        if step not in facts.steps(target_flow):
            if flow is None and any(step in facts.steps(f) for f in facts.flows()):
                # A well-formed step of another flow: whether it fits depends on the case, so a conflict
                # with its state (409), not malformed input; naming the flow moves between flows.
                raise Conflict(f"{step} is not a step of the case's flow {case.flow}; name the flow to move")
            raise InvalidInput.field("step", f"not a step of flow {target_flow}")
        decision, changed = self._change(
            ctx,
            case,
            policy_input.case_transition(ctx, case, target_flow, step),
            outcome="moved",
            refs={"fromFlow": case.flow, "fromStep": case.step, "toFlow": target_flow, "toStep": step},
            failure=failure,
            values={"flow": target_flow, "step": step},
        )
        if not decision.allowed:
            if ILLEGAL_TRANSITION in decision.codes:
                raise Conflict(
                    f"{case.flow}/{case.step} -> {target_flow}/{step} is not a move of the process",
                    reasons=[r.to_json() for r in decision.reasons],
                    extra={"policyRevision": decision.policy_revision},
                )
            raise refusal("moving the case", decision.reasons, decision)
        return changed

    def set_track(self, ctx: CallContext, case_id: str, track: str, is_open: bool) -> CaseRecord:
        """Open or close the zorg or straf track."""
        case, failure = self.visible(ctx, case_id, attempted="case.track")
        decision, changed = self._change(
            ctx,
            case,
            policy_input.case_track(ctx, case, track, is_open),
            outcome="opened" if is_open else "closed",
            refs={"track": track},
            failure=failure,
            values={track: is_open},
        )
        if not decision.allowed:
            raise refusal(f"changing the {track} track", decision.reasons, decision)
        return changed

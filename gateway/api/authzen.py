"""The OpenID AuthZEN Authorization API 1.0: the gateway as a policy decision point in the open standard.

``POST /access/v1/evaluation`` and ``POST /access/v1/evaluations`` answer the same decisions as
``POST /v1/decisions`` (DESIGN.md §7): each evaluation is translated into a `DecisionIn` and decided by
`ExchangeService.what_if`, the one path that builds the policy input of a what-if (so the two cannot
drift) and audits it as an ``evaluated`` decision entry. The mapping:

- subject ``{type: "agency", id: <agency>}``: the caller's own agency (another id is a 403: an agency
  system may ask what *it* may do, not what another agency may);
- action ``{name: share|request|case.read|case.transition|case.track}`` (``case.open`` has no case to
  decide on yet: a 400 naming ``action.name``);
- resource ``{type: <informationType> | "case", id: <caseId>}``;
- context ``{purpose, recipient | holder, step, flow, track, open, payloadFields, basedOn}``;
- the answer ``{decision, context: {reasons, legalBasis, obligations, policyRevision}}``; a deny is a 200.

Evaluations take top-level ``subject``/``action``/``resource``/``context`` as defaults for each item
(an item's own value wins; contexts are merged key by key) and ``options.evaluations_semantic``:
``execute_all`` (default), ``deny_on_first_deny`` or ``permit_on_first_permit``, which stop after the
first deny or permit and answer the evaluated prefix. Every item is validated before any is decided: a
bad one is a 400 naming ``evaluations[i]....``. ``X-Request-ID`` is echoed, as the spec asks.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.api.deps import ExchangeCaller, RuntimeDep
from gateway.errors import Forbidden, InvalidInput
from gateway.schemas import DecisionIn
from gateway.services.exchanges import ExchangeService
from gateway.services.trail import CallContext

router = APIRouter(tags=["authzen"])

ACTIONS = ("share", "request", "case.read", "case.transition", "case.track")
"""The action names an evaluation may ask about: those of ``POST /v1/decisions``."""
MAX_EVALUATIONS = 50
"""Items in one ``evaluations`` request; each is a decision and an audit entry."""
SEMANTICS = ("execute_all", "deny_on_first_deny", "permit_on_first_permit")


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Subject(_Part):
    type: str = Field(min_length=1, max_length=64, description="Always `agency`.")
    id: str = Field(min_length=1, max_length=64, description="The caller's own agency.")
    properties: dict[str, Any] | None = Field(default=None, description="Ignored by this PDP.")


class Action(_Part):
    name: str = Field(min_length=1, max_length=64, description="share, request, case.read, ...")
    properties: dict[str, Any] | None = Field(default=None, description="Ignored by this PDP.")


class Resource(_Part):
    type: str = Field(min_length=1, max_length=64, description="An information type, or `case`.")
    id: str = Field(min_length=1, max_length=64, description="The case id.")
    properties: dict[str, Any] | None = Field(default=None, description="Ignored by this PDP.")


class EvaluationIn(_Part):
    subject: Subject = Field(description="Who asks: the calling agency.")
    action: Action = Field(description="What it would do.")
    resource: Resource = Field(description="On what: an information type of a case, or the case.")
    context: dict[str, Any] | None = Field(
        default=None,
        description="purpose, recipient or holder, step, flow, track, open, payloadFields, basedOn.",
    )


class EvaluationItem(_Part):
    subject: Subject | None = Field(default=None, description="Overrides the request's subject.")
    action: Action | None = Field(default=None, description="Overrides the request's action.")
    resource: Resource | None = Field(default=None, description="Overrides the request's resource.")
    context: dict[str, Any] | None = Field(default=None, description="Merged over the request's context.")


class Options(_Part):
    evaluations_semantic: Literal["execute_all", "deny_on_first_deny", "permit_on_first_permit"] = Field(
        default="execute_all", description="Decide all items, or stop at the first deny or permit."
    )


class EvaluationsIn(_Part):
    subject: Subject | None = Field(default=None, description="The default subject of every item.")
    action: Action | None = Field(default=None, description="The default action of every item.")
    resource: Resource | None = Field(default=None, description="The default resource of every item.")
    context: dict[str, Any] | None = Field(default=None, description="The default context of every item.")
    evaluations: list[EvaluationItem] = Field(
        min_length=1, max_length=MAX_EVALUATIONS, description="The evaluations, decided in order."
    )
    options: Options | None = Field(default=None, description="`evaluations_semantic`.")


class DecisionContext(BaseModel):
    reasons: list[dict[str, Any]] = Field(description="Reason codes with their sentences, as /v1/decisions.")
    legalBasis: str | None = Field(description="The legal basis of an allowed decision.")
    obligations: list[dict[str, Any]] = Field(description="What the recipient must do with the data.")
    policyRevision: str = Field(description="The policy revision that decided.")


class EvaluationOut(BaseModel):
    decision: bool = Field(description="true: permit; false: deny (a deny is a 200).")
    context: DecisionContext = Field(description="Why: reasons, legal basis, obligations, revision.")


class EvaluationsOut(BaseModel):
    evaluations: list[EvaluationOut] = Field(description="One answer per evaluated item, in order.")


class Configuration(BaseModel):
    policy_decision_point: str = Field(description="This PDP's base URL.")
    access_evaluation_endpoint: str = Field(description="The evaluation endpoint.")
    access_evaluations_endpoint: str = Field(description="The evaluations (boxcar) endpoint.")


_CONTEXT_KEYS = {
    "purpose": "purpose",
    "recipient": "recipient",
    "holder": "holder",
    "step": "step",
    "flow": "flow",
    "track": "track",
    "open": "open",
    "payloadFields": "payloadFields",
    "basedOn": "basedOn",
}


def _decision_in(ctx: CallContext, ev: EvaluationIn, where: str) -> DecisionIn:
    """The `DecisionIn` of one evaluation, or a 400/403 naming the field under ``where``."""
    if ev.subject.type != "agency":
        raise InvalidInput.field(f"{where}subject.type", "must be 'agency'")
    if ev.subject.id != ctx.principal.agency:
        raise Forbidden(
            f"{where}subject.id: an agency system may only ask what its own agency may do",
            errors=[{"field": f"{where}subject.id", "message": "not the calling agency"}],
        )
    name = ev.action.name
    if name not in ACTIONS:
        message = (
            "case.open cannot be evaluated: there is no case yet"
            if name == "case.open"
            else f"unknown action; one of {', '.join(ACTIONS)}"
        )
        raise InvalidInput.field(f"{where}action.name", message)
    on_case = name.startswith("case.")
    if on_case and ev.resource.type != "case":
        raise InvalidInput.field(f"{where}resource.type", f"must be 'case' for {name}")
    if not on_case and ev.resource.type == "case":
        raise InvalidInput.field(f"{where}resource.type", f"must be an information type for {name}")
    data: dict[str, Any] = {"action": name, "caseId": ev.resource.id}
    if not on_case:
        data["informationType"] = ev.resource.type
    for key, value in (ev.context or {}).items():
        if key not in _CONTEXT_KEYS:
            raise InvalidInput.field(f"{where}context.{key}", "unknown context key")
        data[_CONTEXT_KEYS[key]] = value
    if name == "share" and "recipient" not in data:
        raise InvalidInput.field(f"{where}context.recipient", "a share needs a recipient")
    if name == "request" and "holder" not in data:
        raise InvalidInput.field(f"{where}context.holder", "a request needs a holder")
    try:
        return DecisionIn.model_validate(data)
    except ValidationError as e:
        errors = []
        for err in e.errors():
            path = _where(".".join(str(p) for p in err["loc"]), where)
            errors.append({"field": path, "message": err["msg"]})
        raise InvalidInput(f"{errors[0]['field']}: {errors[0]['message']}", errors=errors) from None


def _where(field: str, where: str) -> str:
    """A field of `DecisionIn` as the AuthZEN request names it."""
    if field == "caseId":
        return f"{where}resource.id"
    if field == "informationType":
        return f"{where}resource.type"
    return f"{where}context.{field}"


def _decide(
    service: ExchangeService, ctx: CallContext, decision_in: DecisionIn, where: str
) -> dict[str, Any]:
    """`ExchangeService.what_if`, its 400s naming the AuthZEN field (``context.purpose``, ...)."""
    try:
        _, out = service.what_if(ctx, decision_in)
    except InvalidInput as e:
        errors = [{**err, "field": _where(err.get("field", ""), where)} for err in e.errors or []]
        detail = f"{errors[0]['field']}: {errors[0]['message']}" if errors else e.detail
        raise InvalidInput(detail, errors=errors) from None
    return out


def _answer(out: dict[str, Any]) -> EvaluationOut:
    return EvaluationOut(
        decision=out["allowed"],
        context=DecisionContext(
            reasons=out["reasons"],
            legalBasis=out["legalBasis"],
            obligations=out["obligations"],
            policyRevision=out["policyRevision"],
        ),
    )


def _echo(request: Request, response: Response) -> None:
    request_id = request.headers.get("x-request-id")
    if request_id and len(request_id) <= 128 and request_id.isprintable():
        response.headers["X-Request-ID"] = request_id


@router.post("/access/v1/evaluation", response_model=EvaluationOut)
def access_evaluation(
    body: EvaluationIn, ctx: ExchangeCaller, rt: RuntimeDep, request: Request, response: Response
) -> EvaluationOut:
    """AuthZEN Access Evaluation: may this agency do this action on this resource? A deny is a 200."""
    _echo(request, response)
    decision_in = _decision_in(ctx, body, "")
    return _answer(_decide(ExchangeService(rt), ctx, decision_in, ""))


@router.post("/access/v1/evaluations", response_model=EvaluationsOut)
def access_evaluations(
    body: EvaluationsIn, ctx: ExchangeCaller, rt: RuntimeDep, request: Request, response: Response
) -> EvaluationsOut:
    """AuthZEN Access Evaluations: several decisions in one call, with an evaluation semantic."""
    _echo(request, response)
    semantic = body.options.evaluations_semantic if body.options else "execute_all"
    items: list[DecisionIn] = []
    for i, item in enumerate(body.evaluations):
        where = f"evaluations[{i}]."
        subject, action, resource = (
            item.subject or body.subject,
            item.action or body.action,
            item.resource or body.resource,
        )
        for name, part in (("subject", subject), ("action", action), ("resource", resource)):
            if part is None:
                raise InvalidInput.field(f"{where}{name}", "missing, and no default at the top level")
        assert subject is not None and action is not None and resource is not None
        context = {**(body.context or {}), **(item.context or {})}
        ev = EvaluationIn(subject=subject, action=action, resource=resource, context=context)
        items.append(_decision_in(ctx, ev, where))
    service = ExchangeService(rt)
    answers: list[EvaluationOut] = []
    for i, decision_in in enumerate(items):
        out = _decide(service, ctx, decision_in, f"evaluations[{i}].")
        answers.append(_answer(out))
        if semantic == "deny_on_first_deny" and not out["allowed"]:
            break
        if semantic == "permit_on_first_permit" and out["allowed"]:
            break
    return EvaluationsOut(evaluations=answers)


@router.get("/.well-known/authzen-configuration", response_model=Configuration)
def authzen_configuration(rt: RuntimeDep, request: Request) -> Configuration:
    """AuthZEN PDP metadata: where the evaluation endpoints are (no search endpoints: not implemented)."""
    base = (rt.settings.public_url or str(request.base_url)).rstrip("/")
    return Configuration(
        policy_decision_point=base,
        access_evaluation_endpoint=f"{base}/access/v1/evaluation",
        access_evaluations_endpoint=f"{base}/access/v1/evaluations",
    )

"""ExchangeCaller routes: shares, inbox, requests and what-if decisions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Query, Response

from gateway.api.deps import ExchangeCall, RuntimeDep
from gateway.schemas import (
    DecisionIn,
    DecisionOut,
    Inbox,
    RequestIn,
    RequestOut,
    ShareIn,
    ShareOut,
    ShareStatus,
)
from gateway.services.exchanges import ExchangeService
from gateway.services.outbox import share_status

router = APIRouter(prefix="/v1", tags=["exchanges"])
CaseId = Path(min_length=1, max_length=64)


@router.post("/cases/{caseId}/shares", response_model=ShareOut, response_model_by_alias=True)
def share(body: ShareIn, call: ExchangeCall, rt: RuntimeDep, caseId: str = CaseId) -> Any:
    """Share information with recipients; each recipient is decided on its own."""
    ctx = call.confirm()  # the client's registration first, in this thread
    return ExchangeService(rt).share(ctx, caseId, body)


@router.get(
    "/shares/{shareId}",
    response_model=ShareStatus,
    response_model_by_alias=True,
    response_model_exclude_none=True,
)
def share_delivery(
    call: ExchangeCall, rt: RuntimeDep, shareId: str = Path(min_length=1, max_length=64)
) -> Any:
    """Where a share's messages are: each recipient's delivery status (the sender's agency only)."""
    ctx = call.confirm()  # the client's registration first, in this thread
    return share_status(rt, ctx.principal.agency, shareId)


@router.get("/inbox", response_model=Inbox, response_model_by_alias=True)
def inbox(call: ExchangeCall, rt: RuntimeDep, limit: int = Query(100, ge=1, le=1000)) -> Any:
    """Messages for the caller's agency that it has not acknowledged yet."""
    ctx = call.confirm()  # the client's registration first, in this thread
    return ExchangeService(rt).inbox(ctx, limit)


@router.post("/inbox/{messageId}/ack", status_code=204)
def ack(call: ExchangeCall, rt: RuntimeDep, messageId: str = Path(min_length=1, max_length=64)) -> Response:
    """Acknowledge a message."""
    ctx = call.confirm()  # the client's registration first, in this thread
    ExchangeService(rt).ack(ctx, messageId)
    return Response(status_code=204)


@router.post("/cases/{caseId}/requests", response_model=RequestOut, response_model_by_alias=True)
def request_information(body: RequestIn, call: ExchangeCall, rt: RuntimeDep, caseId: str = CaseId) -> Any:
    """Ask the holder's system for information; answered minimised, or refused with reasons."""
    ctx = call.confirm()  # the client's registration first, in this thread
    return ExchangeService(rt).request(ctx, caseId, body)


@router.post("/decisions", response_model=DecisionOut, response_model_by_alias=True)
def what_if(body: DecisionIn, call: ExchangeCall, rt: RuntimeDep) -> Any:
    """What would the policy decide? Changes nothing."""
    ctx = call.confirm()  # the client's registration first, in this thread
    _, out = ExchangeService(rt).what_if(ctx, body)
    return out

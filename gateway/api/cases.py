"""Case routes: open, read, move a step, open and close tracks."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Path

from gateway.api.deps import ExchangeCall, RuntimeDep
from gateway.models import CaseRecord
from gateway.schemas import CaseCreate, CaseOut, SubjectOut, TrackIn, Tracks, TransitionIn
from gateway.services.cases import CaseService

router = APIRouter(prefix="/v1/cases", tags=["cases"])
CaseId = Path(min_length=1, max_length=64)


def case_out(case: CaseRecord) -> CaseOut:
    """The case as the API shows it: roles and pseudonyms, never a BSN."""
    return CaseOut(
        case_id=case.case_id,
        flow=case.flow,
        step=case.step,
        tracks=Tracks(zorg=case.zorg, straf=case.straf),
        opened_by=case.opened_by,
        subjects=[SubjectOut(role=s.role, pseudonym=s.pseudonym) for s in case.subjects],
        created_at=case.created_at,
        updated_at=case.updated_at,
    )


@router.post("", status_code=201, response_model=CaseOut, response_model_by_alias=True)
def open_case(body: CaseCreate, call: ExchangeCall, rt: RuntimeDep) -> CaseOut:
    """Open a case (politie or veilig_thuis)."""
    ctx = call.confirm()  # the client's registration first, in this thread
    return case_out(CaseService(rt).open(ctx, body))


@router.get("/{caseId}", response_model=CaseOut, response_model_by_alias=True)
def read_case(call: ExchangeCall, rt: RuntimeDep, caseId: str = CaseId) -> CaseOut:
    """The case, to agencies that take part in it."""
    ctx = call.confirm()  # the client's registration first, in this thread
    return case_out(CaseService(rt).read(ctx, caseId))


@router.post("/{caseId}/transitions", response_model=CaseOut, response_model_by_alias=True)
def move_case(body: TransitionIn, call: ExchangeCall, rt: RuntimeDep, caseId: str = CaseId) -> CaseOut:
    """Move the case to another step; 409 when the process does not allow the move."""
    ctx = call.confirm()  # the client's registration first, in this thread
    return case_out(CaseService(rt).transition(ctx, caseId, body.flow, body.step))


@router.put("/{caseId}/tracks/{track}", response_model=CaseOut, response_model_by_alias=True)
def set_track(
    track: Literal["zorg", "straf"],
    body: TrackIn,
    call: ExchangeCall,
    rt: RuntimeDep,
    caseId: str = CaseId,
) -> CaseOut:
    """Open or close the zorg or straf track."""
    ctx = call.confirm()  # the client's registration first, in this thread
    return case_out(CaseService(rt).set_track(ctx, caseId, track, body.open))

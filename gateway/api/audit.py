"""Audit routes for privacy officers and auditors: entries, search by BSN, checkpoint, proofs, export."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, StreamingResponse

from audit import LogEntry, report_row, verify_checkpoint
from gateway.api.deps import AuditReader, RuntimeDep
from gateway.errors import Forbidden, InvalidInput, NotFound
from gateway.runtime import Runtime
from gateway.schemas import (
    AuditFilters,
    AuditItem,
    AuditPage,
    AuditSearchIn,
    ConsistencyOut,
    ProofOut,
    SubjectReport,
)
from gateway.trail import CallContext, make_entry

router = APIRouter(prefix="/v1/audit", tags=["audit"])


def item(index: int, leaf_data: bytes) -> dict[str, Any]:
    """One entry as the API shows it: the exact hashed bytes, and the same bytes parsed."""
    return {"index": index, "leafData": base64.b64encode(leaf_data).decode(), "entry": json.loads(leaf_data)}


def scoped_filters(ctx: CallContext, filters: AuditFilters, pseudonym: str | None = None) -> dict[str, Any]:
    """The store's filters; a privacy officer (scope ``audit``) sees only entries naming their agency."""
    if filters.from_ and filters.to and filters.from_ > filters.to:
        raise InvalidInput.field("from", "must not be after 'to'")
    out: dict[str, Any] = {
        "case_id": filters.case_id,
        "agency": filters.agency,
        "visible_to": None if "audit:all" in ctx.principal.scopes else ctx.principal.agency,
        "purpose": filters.purpose,
        "type": filters.type,
        "information_type": filters.information_type,
        "time_from": _iso(filters.from_),
        "time_to": _iso(filters.to),
        "subject": pseudonym,
    }
    return {k: v for k, v in out.items() if v is not None}


def _iso(t: dt.datetime | None) -> str | None:
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _search(
    rt: Runtime, filters: dict[str, Any], limit: int, cursor: str | None
) -> tuple[list[LogEntry], str | None]:
    try:
        return rt.audit.search(filters, limit=limit, cursor=cursor)
    except ValueError as e:
        raise InvalidInput.field("cursor", "not a cursor this gateway issued") from e


def page(rt: Runtime, filters: dict[str, Any], limit: int, cursor: str | None) -> dict[str, Any]:
    """One page of matching entries."""
    items, next_cursor = _search(rt, filters, limit, cursor)
    return {"entries": [item(i.index, i.leaf_data) for i in items], "next": next_cursor}


@router.get("/entries", response_model=AuditPage, response_model_by_alias=True)
def entries(ctx: AuditReader, rt: RuntimeDep, filters: Annotated[AuditFilters, Query()]) -> Any:
    """Entries matching the filters, oldest first, with a cursor for the next page."""
    return page(rt, scoped_filters(ctx, filters), filters.limit, filters.cursor)


@router.post("/search", response_model=AuditPage, response_model_by_alias=True)
def search(body: AuditSearchIn, ctx: AuditReader, rt: RuntimeDep) -> Any:
    """Entries about one person; the BSN travels in the body and is pseudonymised at once."""
    pseudonym = rt.pseudonymizer.pseudonym(body.bsn)
    return page(rt, scoped_filters(ctx, body, pseudonym), body.limit, body.cursor)


@router.post("/subject-report", response_model=SubjectReport, response_model_by_alias=True)
def subject_report(body: AuditSearchIn, ctx: AuditReader, rt: RuntimeDep) -> Any:
    """Every logged exchange about one person (AVG art. 15): when, which agencies, what, why, on which basis.

    The BSN travels in the body and is pseudonymised at once. A privacy officer sees the entries that
    name their own agency. The lookup is itself logged (a report about a person is a processing of
    their data), then a checkpoint is signed and the rows are taken from the tree it covers, so each
    row can be proven with ``/proofs/inclusion?index=..&treeSize=<treeSize>``.
    """
    pseudonym = rt.pseudonymizer.pseudonym(body.bsn)
    filters = scoped_filters(ctx, body, pseudonym)
    if body.cursor is None:
        rt.audit_append(
            [
                make_entry(
                    ctx,
                    type_="audit",
                    action="audit.subject_report",
                    outcome="reported",
                    subjects=[pseudonym],
                    case_id=body.case_id,
                    purpose=body.purpose,
                )
            ]
        )
    note = rt.audit.checkpoint()
    size = verify_checkpoint(note, rt.signer.verifier).size
    found, next_cursor = _search(rt, filters, body.limit, body.cursor)
    covered = [i for i in found if i.index < size]
    return {
        "checkpoint": note,
        "treeSize": size,
        "entries": [report_row(i).as_json() for i in covered],
        # Entries appended after the checkpoint belong to a later report.
        "next": next_cursor if len(covered) == len(found) else None,
    }


@router.get("/entries/{index}", response_model=AuditItem, response_model_by_alias=True)
def entry(index: int, ctx: AuditReader, rt: RuntimeDep) -> Any:
    """One entry by index."""
    if index < 0:
        raise InvalidInput.field("index", "must be >= 0")
    found = rt.audit.entry(index)
    if found is None:
        raise NotFound("no entry at that index")
    parsed = item(found.index, found.leaf_data)
    if "audit:all" not in ctx.principal.scopes and ctx.principal.agency not in _agencies(parsed["entry"]):
        raise NotFound("no entry at that index")
    return parsed


def _agencies(e: dict[str, Any]) -> set[str]:
    named = {e.get("actor", {}).get("agency"), e.get("counterpart")}
    return {a for a in named if isinstance(a, str)}


@router.get("/checkpoint", response_class=PlainTextResponse)
def checkpoint(_ctx: AuditReader, rt: RuntimeDep) -> PlainTextResponse:
    """A signed checkpoint covering every entry committed before this request arrived."""
    return PlainTextResponse(rt.audit.checkpoint())


@router.get("/verifier-key", response_class=PlainTextResponse)
def verifier_key(_ctx: AuditReader, rt: RuntimeDep) -> PlainTextResponse:
    """The note verifier key of the log (``name+keyhash+base64key``)."""
    return PlainTextResponse(rt.signer.verifier_key() + "\n")


@router.get("/proofs/inclusion", response_model=ProofOut, response_model_by_alias=True)
def inclusion(
    _ctx: AuditReader,
    rt: RuntimeDep,
    index: int = Query(ge=0),
    tree_size: int = Query(alias="treeSize", ge=1),
) -> Any:
    """RFC 9162 inclusion proof of entry ``index`` in the tree of ``treeSize`` entries."""
    if index >= tree_size:
        raise InvalidInput.field("index", "must be smaller than treeSize")
    if tree_size > rt.audit.size():
        raise InvalidInput.field("treeSize", "larger than the log")
    hashes = rt.audit.inclusion_proof(index, tree_size)
    return {"index": index, "treeSize": tree_size, "hashes": [base64.b64encode(h).decode() for h in hashes]}


@router.get("/proofs/consistency", response_model=ConsistencyOut, response_model_by_alias=True)
def consistency(
    _ctx: AuditReader,
    rt: RuntimeDep,
    from_: int = Query(alias="from", ge=1),
    to: int = Query(ge=1),
) -> Any:
    """RFC 9162 consistency proof between two tree sizes."""
    if from_ > to:
        raise InvalidInput.field("from", "must not be larger than 'to'")
    if to > rt.audit.size():
        raise InvalidInput.field("to", "larger than the log")
    hashes = rt.audit.consistency_proof(from_, to)
    return {"from": from_, "to": to, "hashes": [base64.b64encode(h).decode() for h in hashes]}


def _export_lines(rt: Runtime, start: int, end: int) -> Iterator[bytes]:
    for e in rt.audit.iter_entries(start, end):
        yield (
            json.dumps({"index": e.index, "leafData": base64.b64encode(e.leaf_data).decode()}).encode()
            + b"\n"
        )


@router.get("/export")
def export(
    ctx: AuditReader,
    rt: RuntimeDep,
    start: int = Query(0, ge=0),
    end: int | None = Query(None, ge=0),
) -> StreamingResponse:
    """Entries as NDJSON ``{index, leafData}`` for offline verification (scope ``audit:all``)."""
    if "audit:all" not in ctx.principal.scopes:
        # An export is the whole log: it would show other agencies' entries.
        raise Forbidden("exporting the log needs scope audit:all")
    size = rt.audit.size()
    stop = size if end is None else min(end, size)
    return StreamingResponse(_export_lines(rt, start, stop), media_type="application/x-ndjson")

"""Audit routes for privacy officers and auditors: entries, search by BSN, checkpoint, proofs, export."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse, StreamingResponse

from audit import LogEntry, report_row, verify_checkpoint
from gateway.api.deps import AuditReader, RuntimeDep
from gateway.errors import Forbidden, InvalidInput, NotFound
from gateway.models import Case
from gateway.runtime import Runtime
from gateway.schemas import (
    MAX_INDEX,
    AuditFilters,
    AuditItem,
    AuditPage,
    AuditSearchIn,
    ConsistencyOut,
    ProofOut,
    SubjectReport,
)
from gateway.services.trail import CallContext, lookup_entry

router = APIRouter(prefix="/v1/audit", tags=["audit"])


def item(index: int, leaf_data: bytes) -> dict[str, Any]:
    """One entry as the API shows it: the exact hashed bytes, and the same bytes parsed."""
    return {"index": index, "leafData": base64.b64encode(leaf_data).decode(), "entry": json.loads(leaf_data)}


def scoped_filters(
    ctx: CallContext, rt: Runtime, filters: AuditFilters, pseudonym: str | None = None
) -> dict[str, Any]:
    """The store's filters; a privacy officer (scope ``audit``) sees only entries naming their agency.

    The schema has checked the shape of every filter; here the identifiers are checked against the
    loaded facts, so an unknown purpose or information type is a 400 rather than an empty page.
    """
    # A time range that ends before it starts is valid and matches nothing (the store answers empty).
    facts = rt.process_facts()
    if filters.purpose is not None and filters.purpose not in facts.purposes():
        raise InvalidInput.field("purpose", "not a purpose of the loaded policy")
    if filters.information_type is not None and filters.information_type not in facts.information_types():
        raise InvalidInput.field("informationType", "not an information type of the loaded policy")
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


def _position(rt: Runtime, cursor: str | None) -> tuple[int, int | None]:
    """Where a page starts and, after a lookup's first page, the log size it is bound to.

    The schema has checked the form (``start`` or ``start-end``, each in 0..2^63-1). A position past
    the end of the log names no page (this gateway never issued it): 404, before anything is logged.
    """
    if cursor is None:
        return 0, None
    start, _, end = cursor.partition("-")
    bound = int(end) if end else None
    if max(int(start), bound or 0) > rt.audit.size():
        raise _beyond("cursor")
    return int(start), bound


def _beyond(field: str) -> NotFound:
    """A position or tree size the log has not reached: nothing there, like an index past the end."""
    message = "beyond the log"
    return NotFound(f"{field}: {message}", errors=[{"field": field, "message": message}])


def _search(
    rt: Runtime, filters: dict[str, Any], limit: int, start: int, bound: int | None = None
) -> tuple[list[LogEntry], str | None]:
    """One page from ``start``; with a ``bound``, only entries below it and a cursor that keeps it."""
    if bound is not None and start >= bound:
        return [], None
    try:
        found, next_cursor = rt.audit.search(filters, limit=limit, cursor=start)
    except ValueError as e:
        raise InvalidInput.field("cursor", "not a cursor this gateway issued") from e
    if bound is None:
        return found, next_cursor
    covered = [i for i in found if i.index < bound]
    # Entries appended after the bound (this lookup's own entry among them) belong to a later lookup.
    if next_cursor is None or len(covered) < len(found) or int(next_cursor) >= bound:
        return covered, None
    return covered, f"{next_cursor}-{bound}"


def page(rt: Runtime, filters: dict[str, Any], limit: int, cursor: str | None) -> dict[str, Any]:
    """One page of matching entries."""
    start, _ = _position(rt, cursor)
    items, next_cursor = _search(rt, filters, limit, start)
    return {"entries": [item(i.index, i.leaf_data) for i in items], "next": next_cursor}


def _log_lookup(
    ctx: CallContext, rt: Runtime, action: str, pseudonym: str, body: AuditSearchIn, start: int
) -> int:
    """Log one page of a lookup of a person before anything is read; no audit, no answer (503).

    Only validated values reach the entry: identifiers the schema and the facts checked, times as
    the gateway writes them, numbers; a case id only when it names a case (a made-up one that merely
    looks like an id could still carry someone's BSN).
    """
    query: dict[str, str | int] = {
        k: v
        for k, v in {
            "agency": body.agency,
            "type": body.type,
            "purpose": body.purpose,
            "informationType": body.information_type,
            "from": _iso(body.from_),
            "to": _iso(body.to),
        }.items()
        if v is not None
    }
    query |= {"cursor": start, "limit": body.limit}
    case_id = body.case_id if body.case_id is not None and _is_case(rt, body.case_id) else None
    entry = lookup_entry(ctx, action=action, pseudonym=pseudonym, case_id=case_id, query=query)
    return rt.audit_append([entry])[0]


def _is_case(rt: Runtime, case_id: str) -> bool:
    with rt.sessions() as s:
        return s.get(Case, case_id) is not None


@router.get("/entries", response_model=AuditPage, response_model_by_alias=True)
def entries(ctx: AuditReader, rt: RuntimeDep, filters: Annotated[AuditFilters, Query()]) -> Any:
    """Entries matching the filters, oldest first, with a cursor for the next page."""
    return page(rt, scoped_filters(ctx, rt, filters), filters.limit, filters.cursor)


@router.post("/search", response_model=AuditPage, response_model_by_alias=True)
def search(body: AuditSearchIn, ctx: AuditReader, rt: RuntimeDep) -> Any:
    """Entries about one person; the BSN travels in the body and is pseudonymised at once.

    Every page is a lookup of that person and is logged before it is answered (``audit.search``).
    Pages after the first stay within the log as the first page saw it.
    """
    pseudonym = rt.pseudonymizer.pseudonym(body.bsn)
    filters = scoped_filters(ctx, rt, body, pseudonym)
    start, bound = _position(rt, body.cursor)
    logged = _log_lookup(ctx, rt, "audit.search", pseudonym, body, start)
    found, next_cursor = _search(rt, filters, body.limit, start, logged + 1 if bound is None else bound)
    return {"entries": [item(i.index, i.leaf_data) for i in found], "next": next_cursor}


@router.post("/subject-report", response_model=SubjectReport, response_model_by_alias=True)
def subject_report(body: AuditSearchIn, ctx: AuditReader, rt: RuntimeDep) -> Any:
    """Every logged exchange about one person (AVG art. 15): when, which agencies, what, why, on which basis.

    The BSN travels in the body and is pseudonymised at once. A privacy officer sees the entries that
    name their own agency. Every page of the lookup is itself logged (a report about a person is a
    processing of their data), then a checkpoint is signed and the rows are taken from the tree it
    covers, so each row can be proven with ``/proofs/inclusion?index=..&treeSize=<treeSize>``. Pages
    after the first stay within the log as the first page saw it.
    """
    pseudonym = rt.pseudonymizer.pseudonym(body.bsn)
    filters = scoped_filters(ctx, rt, body, pseudonym)
    start, bound = _position(rt, body.cursor)
    _log_lookup(ctx, rt, "audit.subject_report", pseudonym, body, start)
    note = rt.audit.checkpoint()
    size = verify_checkpoint(note, rt.signer.verifier).size
    found, next_cursor = _search(rt, filters, body.limit, start, size if bound is None else min(bound, size))
    return {
        "checkpoint": note,
        "treeSize": size,
        "entries": [report_row(i).as_json() for i in found],
        "next": next_cursor,
    }


@router.get("/entries/{index}", response_model=AuditItem, response_model_by_alias=True)
def entry(
    ctx: AuditReader,
    rt: RuntimeDep,
    index: Annotated[int, Path(ge=0, le=MAX_INDEX, description="The entry's index, from 0.")],
) -> Any:
    """One entry by index."""
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
    index: int = Query(ge=0, le=MAX_INDEX, description="The entry's index, from 0."),
    tree_size: int = Query(alias="treeSize", ge=1, le=MAX_INDEX, description="The size of the tree."),
) -> Any:
    """RFC 9162 inclusion proof of entry ``index`` in the tree of ``treeSize`` entries."""
    if index >= tree_size:
        # Well-formed, but that tree has no such leaf: nothing there, as for an index past the log.
        raise NotFound(
            "index: not in a tree of that size",
            errors=[{"field": "index", "message": "not in a tree of that size"}],
        )
    if tree_size > rt.audit.size():
        raise _beyond("treeSize")
    hashes = rt.audit.inclusion_proof(index, tree_size)
    return {"index": index, "treeSize": tree_size, "hashes": [base64.b64encode(h).decode() for h in hashes]}


@router.get("/proofs/consistency", response_model=ConsistencyOut, response_model_by_alias=True)
def consistency(
    _ctx: AuditReader,
    rt: RuntimeDep,
    from_: int = Query(alias="from", ge=1, le=MAX_INDEX, description="The smaller tree size."),
    to: int = Query(ge=1, le=MAX_INDEX, description="The larger tree size."),
) -> Any:
    """RFC 9162 consistency proof between two tree sizes."""
    if to > rt.audit.size():
        raise _beyond("to")
    if from_ > to:
        # Well-formed, but no tree is a prefix of a smaller one: there is no such proof.
        raise NotFound("from: larger than 'to'", errors=[{"field": "from", "message": "larger than 'to'"}])
    hashes = rt.audit.consistency_proof(from_, to)
    return {"from": from_, "to": to, "hashes": [base64.b64encode(h).decode() for h in hashes]}


EXPORT_FIRST_BATCH = 1000
"""Export lines read before the response starts."""


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
    start: int = Query(0, ge=0, le=MAX_INDEX, description="The first index to export."),
    end: int | None = Query(None, ge=0, le=MAX_INDEX, description="Export up to this index (exclusive)."),
) -> StreamingResponse:
    """Entries as NDJSON ``{index, leafData}`` for offline verification (scope ``audit:all``)."""
    if "audit:all" not in ctx.principal.scopes:
        # An export is the whole log: it would show other agencies' entries.
        raise Forbidden("exporting the log needs scope audit:all")
    size = rt.audit.size()
    stop = size if end is None else min(end, size)
    lines = _export_lines(rt, start, stop)
    # The first batch is read before the answer starts, so garbage there is still a 503 problem; past
    # it the stream can only break off, which `gateway audit verify-export` then reports.
    first = list(itertools.islice(lines, EXPORT_FIRST_BATCH))
    return StreamingResponse(itertools.chain(first, lines), media_type="application/x-ndjson")

"""Audit routes for privacy officers and auditors: entries, search by BSN, checkpoint, proofs, export."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from audit import MAX_PAGE, LogEntry, report_row, verify_checkpoint
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
    CaseReportIn,
    ConsistencyOut,
    ProofOut,
    SubjectReport,
)
from gateway.services.reports import MAX_ROWS, Words, reasons_of
from gateway.services.trail import CallContext, lookup_entry

if TYPE_CHECKING:
    from gateway.services.reports import Report

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


ReportFormat = Literal["json", "pdf", "csv"]
_REPORT_MEDIA: dict[str, ReportFormat] = {
    "application/json": "json",
    "application/pdf": "pdf",
    "text/csv": "csv",
    "*/*": "json",
    "application/*": "json",
    "text/*": "csv",
}


def wanted_format(accept: str | None) -> ReportFormat:
    """The report format the Accept header prefers (highest q, then first named); JSON by default."""
    best: tuple[float, int, ReportFormat] | None = None
    for position, part in enumerate((accept or "").split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        fmt = _REPORT_MEDIA.get(media.lower())
        if fmt is None:
            continue
        q = 1.0
        for p in params:
            name, _, value = p.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and (best is None or (q, -position) > (best[0], -best[1])):
            best = (q, position, fmt)
    return "json" if best is None else best[2]


def report_response(report: Report, fmt: ReportFormat) -> Response:
    """A built report as a download: PDF bytes or CSV text, never cached on the way."""
    from gateway.services.reports import render_csv, render_pdf

    if fmt == "pdf":
        body, media = render_pdf(report), "application/pdf"
    else:
        body, media = render_csv(report).encode("utf-8"), "text/csv; charset=utf-8"
    name = report.filename(fmt)
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


Language = Annotated[Literal["nl", "en"], Query(description="The report's language (PDF and CSV).")]
Technical = Annotated[
    bool,
    Query(description="Add each entry's log index, leaf hash, trace id and the pseudonym (PDF and CSV)."),
]
Accept = Annotated[
    str | None,
    Header(description="application/json (default), application/pdf or text/csv", include_in_schema=False),
]


@router.post("/subject-report", response_model=SubjectReport, response_model_by_alias=True)
def subject_report(
    body: AuditSearchIn,
    ctx: AuditReader,
    rt: RuntimeDep,
    accept: Accept = None,
    lang: Language = "nl",
    technical: Technical = False,
) -> Any:
    """Every logged exchange about one person (AVG art. 15): when, which agencies, what, why, on which basis.

    The BSN travels in the body and is pseudonymised at once. A privacy officer sees the entries that
    name their own agency. Every page of the lookup is itself logged (a report about a person is a
    processing of their data), then a checkpoint is signed and the rows are taken from the tree it
    covers, so each row can be proven with ``/proofs/inclusion?index=..&treeSize=<treeSize>``. Pages
    after the first stay within the log as the first page saw it.

    With ``Accept: application/pdf`` or ``text/csv`` the whole report (filters apply, paging does not)
    comes as a file for the person, in Dutch (``lang=en`` for English): plain words, refusals with their
    reasons, no hashes or ids unless ``technical=true``; each entry's inclusion checked.
    """
    from gateway.services.reports import build_subject_report

    pseudonym = rt.pseudonymizer.pseudonym(body.bsn)
    filters = scoped_filters(ctx, rt, body, pseudonym)
    fmt = wanted_format(accept)
    start, bound = _position(rt, body.cursor)
    if fmt != "json":
        _log_lookup(ctx, rt, "audit.subject_report", pseudonym, body, 0)
        narrowing = {k: v for k, v in filters.items() if k not in ("subject", "visible_to")}
        report = build_subject_report(
            rt.audit,
            pseudonym,
            facts=rt.policy.current.facts(),
            requested_by=ctx.principal,
            visible_to=filters.get("visible_to"),
            lang=lang,
            technical=technical,
            filters=narrowing,
        )
        return report_response(report, fmt)
    _log_lookup(ctx, rt, "audit.subject_report", pseudonym, body, start)
    note = rt.audit.checkpoint()
    size = verify_checkpoint(note, rt.signer.verifier).size
    found, next_cursor = _search(rt, filters, body.limit, start, size if bound is None else min(bound, size))
    words = Words(rt.policy.current.facts(), "nl")
    return {
        "checkpoint": note,
        "treeSize": size,
        "entries": [_json_row(i, words) for i in found],
        "next": next_cursor,
    }


def _json_row(found: LogEntry, words: Words) -> dict[str, Any]:
    """A report row as the JSON contract has it, with the decision's reasons (also in Dutch)."""
    row = report_row(found).as_json()
    try:
        entry = found.entry
    except ValueError:
        entry = {}
    row["reasons"] = [
        {"code": r.get("code"), "message": r.get("message"), "messageNl": words.reason(r)}
        for r in reasons_of(entry)
    ]
    return row


@router.post("/case-report", response_model=SubjectReport, response_model_by_alias=True)
def case_report(
    body: CaseReportIn,
    ctx: AuditReader,
    rt: RuntimeDep,
    accept: Accept = None,
    lang: Language = "nl",
    technical: Technical = False,
) -> Any:
    """Every logged entry about one case: its steps, what was shared and refused, who looked at it.

    A privacy officer sees the entries that name their own agency, an auditor all. The lookup is logged
    first (``audit.case_report``, naming the case's subjects); an unknown case is a 404 and is not
    logged. JSON by default (the subject report's shape, one page of up to 1000 rows), or the whole
    report as a file with ``Accept: application/pdf`` or ``text/csv``.
    """
    from gateway.services.reports import build_case_report, case_subjects

    subjects = case_subjects(rt.db, body.case_id)
    if subjects is None:
        raise NotFound("caseId: no such case", errors=[{"field": "caseId", "message": "no such case"}])
    fmt = wanted_format(accept)
    visible_to = None if "audit:all" in ctx.principal.scopes else ctx.principal.agency
    query: dict[str, str | int] = {"format": fmt}
    rt.audit_append(
        [lookup_entry(ctx, action="audit.case_report", subjects=subjects, case_id=body.case_id, query=query)]
    )
    if fmt != "json":
        report = build_case_report(
            rt.audit,
            body.case_id,
            facts=rt.policy.current.facts(),
            requested_by=ctx.principal,
            visible_to=visible_to,
            lang=lang,
            technical=technical,
        )
        return report_response(report, fmt)
    note = rt.audit.checkpoint()
    size = verify_checkpoint(note, rt.signer.verifier).size
    filters: dict[str, Any] = {"case_id": body.case_id}
    if visible_to is not None:
        filters["visible_to"] = visible_to
    found: list[LogEntry] = []
    cursor: int | None = 0
    while cursor is not None and len(found) < MAX_ROWS:
        page_items, next_cursor = _search(rt, filters, MAX_PAGE, cursor)
        # Entries past the checkpoint (this lookup's own among them) belong to a later report.
        found += [i for i in page_items if i.index < size]
        ended = next_cursor is None or any(i.index >= size for i in page_items)
        cursor = None if ended or next_cursor is None else int(next_cursor)
    words = Words(rt.policy.current.facts(), "nl")
    return {
        "checkpoint": note,
        "treeSize": size,
        "entries": [_json_row(i, words) for i in found[:MAX_ROWS]],
        "next": None,
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


@router.get("/entries/{index}/explanation")
def explanation(
    ctx: AuditReader,
    rt: RuntimeDep,
    index: Annotated[int, Path(ge=0, le=MAX_INDEX, description="The entry's index, from 0.")],
) -> dict[str, Any]:
    """The entry's decision decided again on its archived input and revision, and what differs
    (``status`` same, differs or cannot, as ``gateway audit explain``); 404 like the entry itself."""
    from gateway.services.explain import explain

    found = rt.audit.entry(index)
    if found is None:
        raise NotFound("no entry at that index")
    parsed = found.entry
    if "audit:all" not in ctx.principal.scopes and ctx.principal.agency not in _agencies(parsed):
        raise NotFound("no entry at that index")
    return explain(rt.db, index, parsed).to_json()


def _agencies(e: dict[str, Any]) -> set[str]:
    named = {e.get("actor", {}).get("agency"), e.get("counterpart")}
    return {a for a in named if isinstance(a, str)}


@router.get("/checkpoint", response_class=PlainTextResponse)
def checkpoint(_ctx: AuditReader, rt: RuntimeDep) -> PlainTextResponse:
    """A signed checkpoint covering every entry committed before this request arrived, with the
    witnesses' cosignatures kept for it as extra signature lines (C2SP tlog-cosignature)."""
    from gateway.services.witnessing import configured, cosigned_note

    return PlainTextResponse(cosigned_note(rt.db, configured(rt.settings), rt.audit.checkpoint()))


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

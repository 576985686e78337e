"""The console's reports page: a subject-access report (AVG art. 15) by BSN and a case report, as files.

Both forms are POSTs with the session's CSRF field; the BSN travels only in the body, is pseudonymised
at once and is never put back on a page (a refused form comes back empty). Each report is made by the
same functions as ``POST /v1/audit/subject-report`` / ``case-report`` (`make_subject_report`,
`make_case_report`), which log the lookup before anything is read, in the console user's view: an
officer's report holds the entries naming its agency, an auditor's all. The answer is a download
(``Content-Disposition: attachment`` with the report's own file name, which holds no personal data;
``Cache-Control: no-store``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from gateway.bsn import is_valid_bsn
from gateway.console.messages import LANGUAGES, translate
from gateway.console.presenting import Presenter
from gateway.console.routes import (
    FormRefused,
    User,
    _context,
    _is_case,
    language,
    page,
    runtime,
)
from gateway.console.sessions import ConsoleUser, csrf_ok
from gateway.errors import NotFound
from gateway.services.report_formats import render_csv, render_pdf
from gateway.services.reports import Report, make_case_report, make_subject_report

router = APIRouter()

Format = Literal["pdf", "csv"]
CASE_ID_MAX = 64
"""A case id is a UUID; anything much longer is not one (and is never looked up)."""


def _lang(asked: str, request: Request) -> Literal["nl", "en"]:
    """The report's language: the form's choice, else the console's."""
    chosen = asked if asked in LANGUAGES else language(request)
    return "en" if chosen == "en" else "nl"


def _format(asked: str) -> Format | None:
    return "csv" if asked == "csv" else "pdf" if asked == "pdf" else None


def download(report: Report, fmt: Format) -> Response:
    """The report as a file: PDF bytes or CSV (UTF-8 with BOM, for Dutch Excel), never cached."""
    if fmt == "pdf":
        body, media = render_pdf(report), "application/pdf"
    else:
        body, media = render_csv(report).encode("utf-8"), "text/csv; charset=utf-8"
    return Response(
        body,
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="{report.filename(fmt)}"',
            "Cache-Control": "no-store",
        },
    )


def _reports_page(
    request: Request,
    user: ConsoleUser,
    *,
    case_id: str = "",
    errors: list[str] | None = None,
    failed: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    names = Presenter(runtime(request), language(request)).names
    context = {"user": user, "case_id": case_id, "errors": errors or [], "failed": failed}
    return page(request, "reports.html", {**context, "agency_name": names.agency(user.agency)}, status=status)


@router.get("/rapportages", response_class=HTMLResponse, name="reports")
def reports(request: Request, user: User, case_id: Annotated[str, Query(alias="caseId")] = "") -> Response:
    """The two report forms; ``?caseId=`` (from a case page) fills in the case form when the case exists."""
    known = case_id if 0 < len(case_id) <= CASE_ID_MAX and _is_case(runtime(request), case_id) else ""
    return _reports_page(request, user, case_id=known)


@router.post("/rapportages/inzage")
def subject_report(
    request: Request,
    user: User,
    csrf: Annotated[str | None, Form()] = None,
    bsn: Annotated[str, Form(max_length=20)] = "",
    format: Annotated[str, Form()] = "pdf",
    lang: Annotated[str, Form()] = "",
    technical: Annotated[str | None, Form()] = None,
) -> Response:
    """A subject-access report for one BSN, logged as ``audit.subject_report`` before it is made."""
    if not csrf_ok(request, csrf):
        raise FormRefused
    rt = runtime(request)
    console_lang = language(request)
    fmt = _format(format)
    number = bsn.strip().replace(" ", "").replace(".", "")
    if fmt is None:
        return _reports_page(
            request, user, errors=[translate(console_lang, "rep.format.bad")], failed="subject", status=400
        )
    if not is_valid_bsn(number):
        return _reports_page(
            request, user, errors=[translate(console_lang, "field.bsn")], failed="subject", status=400
        )
    pseudonym = rt.pseudonymizer.pseudonym(number)
    del number, bsn
    report = make_subject_report(
        rt,
        _context(request, user),
        pseudonym,
        lang=_lang(lang, request),
        technical=technical is not None,
        query={"format": fmt, "via": "console"},
    )
    return download(report, fmt)


@router.post("/rapportages/zaak")
def case_report(
    request: Request,
    user: User,
    csrf: Annotated[str | None, Form()] = None,
    case_id: Annotated[str, Form(alias="caseId", max_length=200)] = "",
    format: Annotated[str, Form()] = "pdf",
    lang: Annotated[str, Form()] = "",
    technical: Annotated[str | None, Form()] = None,
) -> Response:
    """A case report, logged as ``audit.case_report`` (naming the case's subjects) before it is made."""
    if not csrf_ok(request, csrf):
        raise FormRefused
    rt = runtime(request)
    console_lang = language(request)
    fmt = _format(format)
    case_id = case_id.strip()
    if fmt is None:
        return _reports_page(
            request, user, errors=[translate(console_lang, "rep.format.bad")], failed="case", status=400
        )
    if not case_id or len(case_id) > CASE_ID_MAX:
        return _reports_page(
            request, user, errors=[translate(console_lang, "field.caseId")], failed="case", status=400
        )
    try:
        report = make_case_report(
            rt,
            _context(request, user),
            case_id,
            lang=_lang(lang, request),
            technical=technical is not None,
            query={"format": fmt, "via": "console"},
        )
    except NotFound:
        # Not echoed: an id that names no case could be anything typed, a BSN among them.
        return _reports_page(
            request, user, errors=[translate(console_lang, "rep.case.unknown")], failed="case", status=404
        )
    return download(report, fmt)


__all__ = ["download", "router"]

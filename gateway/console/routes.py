"""The console's pages: login, search, entry, case, integrity; errors as Dutch pages, never a traceback.

Every page reads the trail through the same functions as ``/v1/audit`` (`scoped_filters` for what a
privacy officer may see, the store's indexed search for paging), under a principal built like an API
token of the same role. Every page about a person or a case is itself an audit entry.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from audit import LogEntry, StoredCheckpoint
from gateway.api.audit import scoped_filters
from gateway.bsn import is_valid_bsn
from gateway.console.integrity import Verifications
from gateway.console.messages import DEFAULT_LANGUAGE, LANGUAGES, translate
from gateway.console.oidc import OidcLogin, OidcRefused, OidcUnavailable
from gateway.console.picture import Arrow, case_svg
from gateway.console.presenting import Presenter, Row, check_inclusion, show_time
from gateway.console.sessions import (
    ConsoleUser,
    LinkRefused,
    csrf_ok,
    csrf_token,
    current_user,
    end_session,
    spend_login_token,
    start_session,
)
from gateway.errors import InvalidInput
from gateway.models import Case
from gateway.runtime import Runtime
from gateway.schemas import AuditFilters
from gateway.services.trail import CallContext, lookup_entry, make_entry
from gateway.tracing import TraceContext, from_header

log = logging.getLogger("gateway.console")

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
PAGE = 50
"""Rows per page of results."""
SCAN_PAGES = 5
"""Store pages read at most to fill one page when filtering on the decision (which has no index)."""
CASE_LIMIT = 1000
"""Entries of one case shown at most (the store's largest page)."""

router = APIRouter()


class LoginRequired(Exception):
    """No session, or it has expired: the login page."""


class FormRefused(Exception):
    """A POST whose CSRF field does not match the session's."""


class PageError(Exception):
    """A Dutch error page: ``status`` and message keys."""

    def __init__(self, status: int, title: str, messages: list[str]) -> None:
        super().__init__(title)
        self.status, self.title, self.messages = status, title, messages


def runtime(request: Request) -> Runtime:
    """The gateway's runtime."""
    rt: Runtime = request.app.state.runtime
    return rt


def language(request: Request) -> str:
    """``?lang=`` (remembered in the session), else the session's choice, else Dutch."""
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        request.session["lang"] = asked
        return asked
    kept = request.session.get("lang")
    return kept if kept in LANGUAGES else DEFAULT_LANGUAGE


def signed_in(request: Request) -> ConsoleUser:
    """The logged-in user; the login page otherwise."""
    user = current_user(request)
    if user is None:
        raise LoginRequired
    return user


User = Annotated[ConsoleUser, Depends(signed_in)]


def trace(request: Request) -> TraceContext:
    """The trace the gateway's middleware started for this request."""
    t = getattr(request.state, "trace", None)
    return t if isinstance(t, TraceContext) else from_header(None)


def page(request: Request, name: str, context: Mapping[str, Any], status: int = 200) -> HTMLResponse:
    """Render one template with what every page needs: language, sentences, user, CSRF token."""
    lang = language(request)
    user = current_user(request) if "user" not in context else context["user"]

    def t(key: str, **args: object) -> str:
        return translate(lang, key, **args)

    other = "en" if lang == "nl" else "nl"
    base = {
        "request": request,
        "lang": lang,
        "t": t,
        "user": user,
        "csrf": csrf_token(request) if user is not None else "",
        "switch_url": str(request.url.include_query_params(lang=other).path)
        + "?"
        + str(request.url.include_query_params(lang=other).query),
        "root": _root(request),
        "oidc": _oidc(request) is not None,
    }
    return TEMPLATES.TemplateResponse(request, name, {**base, **context}, status_code=status)


def _root(request: Request) -> str:
    """Where the console is mounted (``/console``)."""
    return str(request.scope.get("root_path", "") or "/console")


def _url(request: Request, path: str, **params: str) -> str:
    """A console path with a query, relative to the host (the redirect stays on this site)."""
    query = urlencode(params)
    return f"{_root(request)}{path}" + (f"?{query}" if query else "")


def _context(request: Request, user: ConsoleUser) -> CallContext:
    return CallContext(principal=user.principal, trace=trace(request))


def _log_view(
    rt: Runtime, ctx: CallContext, action: str, case_id: str | None, subjects: list[str], **refs: str
) -> None:
    """Log a page view about a person or a case before it is shown: no log, no page (503)."""
    entry = make_entry(
        ctx,
        type_="audit",
        action=action,
        outcome="viewed",
        case_id=case_id,
        subjects=subjects or None,
        refs=refs or None,
    )
    rt.audit_append([entry])


def _subjects(entry: Mapping[str, Any]) -> list[str]:
    value = entry.get("subjects")
    return [s for s in value if isinstance(s, str)] if isinstance(value, list) else []


def _visible(user: ConsoleUser, entry: Mapping[str, Any]) -> bool:
    """The API's rule for one entry: an officer sees entries whose actor or counterpart is its agency."""
    if user.sees_all:
        return True
    actor = entry.get("actor")
    named = {actor.get("agency") if isinstance(actor, Mapping) else None, entry.get("counterpart")}
    return user.agency in named


# -- login ----------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login(request: Request, token: str | None = None) -> Response:
    """Spend a one-time link and start a session; the token leaves the address bar by the redirect."""
    rt = runtime(request)
    if not token:
        return page(request, "login.html", {"user": None}, status=401)
    if len(token) > 100:
        return page(request, "login.html", {"user": None, "refused": "unknown"}, status=400)
    try:
        user = spend_login_token(rt.db, token)
    except LinkRefused as e:
        log.info("console login link refused (%s)", e.reason)
        status = 400 if e.reason == "unknown" else 410
        return page(request, "login.html", {"user": None, "refused": e.reason}, status=status)
    log.info("console login link used (role %s, agency %s)", user.role, user.agency)
    start_session(request, user.agency, user.role, user.subject)
    return RedirectResponse(_url(request, "/"), status_code=303)


def _oidc(request: Request) -> OidcLogin | None:
    """The OpenID Connect login, when it is configured (``GATEWAY_CONSOLE_OIDC_*``)."""
    oidc: OidcLogin | None = getattr(request.app.state, "oidc", None)
    return oidc


@router.get("/login/oidc")
async def login_oidc(request: Request) -> Response:
    """Go to the identity provider (authorization code + PKCE); 404 when none is configured."""
    oidc = _oidc(request)
    if oidc is None:
        raise PageError(404, "err.404.title", ["err.404"])
    try:
        return await oidc.start(request)
    except OidcUnavailable:
        return page(request, "login.html", {"user": None, "refused": "oidc.unavailable"}, status=503)


@router.get("/login/oidc/callback")
async def login_oidc_callback(request: Request) -> Response:
    """Back from the provider: check state, code and ID token, start a session, move on to the console."""
    oidc = _oidc(request)
    if oidc is None:
        raise PageError(404, "err.404.title", ["err.404"])
    try:
        who = await oidc.finish(request)
    except OidcRefused as e:
        status = 403 if e.reason in ("agency", "role", "denied") else 400
        response = page(request, "login.html", {"user": None, "refused": f"oidc.{e.reason}"}, status=status)
    except OidcUnavailable:
        response = page(request, "login.html", {"user": None, "refused": "oidc.unavailable"}, status=503)
    else:
        start_session(request, who.agency, who.role, who.subject)
        request.session["via"] = "oidc"
        log.info("console oidc login (role %s, agency %s)", who.role, who.agency)
        response = page(request, "moving_on.html", {"user": None, "to": _url(request, "/")})
    oidc.forget(response)
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str | None, Form()] = None) -> Response:
    """End the session (and offer to log out at the identity provider too, for an OIDC session)."""
    if not csrf_ok(request, csrf):
        raise FormRefused
    oidc = _oidc(request)
    provider_logout = oidc.end_session_url() if oidc and request.session.get("via") == "oidc" else None
    end_session(request)
    return page(request, "login.html", {"user": None, "logged_out": True, "provider_logout": provider_logout})


# -- search ---------------------------------------------------------------------------------------


@dataclass
class Query:
    """The search form as given, for filling it in again (never the BSN)."""

    case_id: str = ""
    agency: str = ""
    purpose: str = ""
    information_type: str = ""
    decision: str = ""
    time_from: str = ""
    time_to: str = ""

    def params(self) -> dict[str, str]:
        """The query string of a GET search (the BSN is never in it)."""
        out = {
            "caseId": self.case_id,
            "agency": self.agency,
            "purpose": self.purpose,
            "informationType": self.information_type,
            "decision": self.decision,
            "from": self.time_from,
            "to": self.time_to,
        }
        return {k: v for k, v in out.items() if v}


def _aware(text: str, field: str) -> str | None:
    """A ``datetime-local`` value (Dutch local time) as RFC 3339; 400 naming the field when it is not."""
    if not text:
        return None
    try:
        local = dt.datetime.fromisoformat(text.strip().replace(" ", "T"))
    except ValueError as e:
        raise InvalidInput.field(field, "not a date and time") from e
    if local.tzinfo is None:
        from gateway.console.presenting import _amsterdam

        local = local.replace(tzinfo=_amsterdam())
    return local.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _filters(q: Query, cursor: str | None) -> AuditFilters:
    """The API's filter schema, so the console accepts exactly what ``/v1/audit/entries`` accepts."""
    if q.decision and q.decision not in ("toegestaan", "geweigerd"):
        raise InvalidInput.field("decision", "toegestaan or geweigerd")
    raw = {
        "caseId": q.case_id.strip() or None,
        "agency": q.agency or None,
        "purpose": q.purpose or None,
        "informationType": q.information_type or None,
        "from": _aware(q.time_from, "from"),
        "to": _aware(q.time_to, "to"),
        "cursor": cursor or None,
        "limit": PAGE,
    }
    try:
        return AuditFilters.model_validate({k: v for k, v in raw.items() if v is not None})
    except ValidationError as e:
        first = e.errors(include_input=False)[0]
        field = str(first["loc"][0]) if first["loc"] else "body"
        raise InvalidInput.field(field, "invalid") from e


def _scan(
    rt: Runtime, filters: dict[str, Any], start: int, decision: str, bound: int | None
) -> tuple[list[LogEntry], str | None, bool]:
    """A page from ``start``: the store's indexed search; the decision is checked on the rows read.

    Returns the entries, the next cursor and whether the scan stopped before filling the page.
    """
    wanted = None if not decision else decision == "toegestaan"
    found: list[LogEntry] = []
    cursor: str | None = str(start)
    for _ in range(SCAN_PAGES):
        batch, cursor = rt.audit.search(filters, limit=PAGE, cursor=cursor)
        if bound is not None:
            inside = [e for e in batch if e.index < bound]
            if len(inside) < len(batch) or (cursor is not None and int(cursor) >= bound):
                cursor = None
            batch = inside
        for item in batch:
            d = item.entry.get("decision")
            allowed = d.get("allowed") if isinstance(d, Mapping) else None
            if wanted is None or allowed is wanted:
                found.append(item)
                if wanted is not None and len(found) == PAGE:
                    # A full page: the next one starts right after this entry (the store's cursor is the
                    # index a page starts at), not after the rest of the batch, which would skip those.
                    return found, str(item.index + 1), False
        if cursor is None or len(found) >= PAGE or wanted is None:
            return found, cursor, False
    return found, cursor, True


def _search_page(
    request: Request,
    user: ConsoleUser,
    q: Query,
    rows: list[Row] | None,
    next_cursor: str | None,
    *,
    by_bsn: bool = False,
    partial: bool = False,
    errors: list[str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    presenter = Presenter(runtime(request), language(request))
    next_url = None
    if next_cursor is not None and not by_bsn:
        next_url = _url(request, "/", **q.params(), cursor=next_cursor)
    return page(
        request,
        "search.html",
        {
            "user": user,
            "q": q,
            "rows": rows,
            "next_url": next_url,
            "next_cursor": next_cursor if by_bsn else None,
            "by_bsn": by_bsn,
            "partial": partial,
            "errors": errors or [],
            "agencies": presenter.names.options("agencies"),
            "purposes": presenter.names.options("purposes"),
            "types": presenter.names.options("informationTypes"),
            "agency_name": presenter.names.agency(user.agency),
        },
        status=status,
    )


def _field_messages(lang: str, e: InvalidInput) -> list[str]:
    out = []
    for err in e.errors or [{"field": "body"}]:
        key = f"field.{err.get('field')}"
        text = translate(lang, key)
        out.append(text if text != key else translate(lang, "field.other", field=err.get("field")))
    return out


@router.get("/", response_class=HTMLResponse, name="search")
def search(
    request: Request,
    user: User,
    agency: str = "",
    purpose: str = "",
    decision: str = "",
    cursor: str | None = None,
) -> Response:
    """The search page; with any filter in the query, its first (or ``cursor``'s) page of results."""
    params = request.query_params
    q = Query(
        case_id=params.get("caseId", ""),
        agency=agency,
        purpose=purpose,
        information_type=params.get("informationType", ""),
        decision=decision,
        time_from=params.get("from", ""),
        time_to=params.get("to", ""),
    )
    if not q.params() and cursor is None:
        return _search_page(request, user, q, None, None)
    return _run_search(request, user, q, cursor, None)


def _run_search(
    request: Request,
    user: ConsoleUser,
    q: Query,
    cursor: str | None,
    pseudonym: str | None,
    bound: int | None = None,
) -> HTMLResponse:
    rt = runtime(request)
    ctx = _context(request, user)
    lang = language(request)
    try:
        filters = _filters(q, cursor)
        store_filters = scoped_filters(ctx, rt, filters, pseudonym)
    except InvalidInput as e:
        return _search_page(request, user, q, None, None, errors=_field_messages(lang, e), status=400)
    start = int(filters.cursor or 0)
    if start > rt.audit.size():
        return _search_page(
            request, user, q, None, None, errors=[translate(lang, "field.cursor")], status=404
        )
    if pseudonym is not None and bound is None:
        # A lookup of a person is logged before anything is read, as /v1/audit/search does.
        query: dict[str, str | int] = {k: v for k, v in q.params().items() if k != "caseId"}
        query |= {"cursor": start, "limit": PAGE}
        case_id = filters.case_id if filters.case_id and _is_case(rt, filters.case_id) else None
        entry = lookup_entry(ctx, action="audit.search", pseudonym=pseudonym, case_id=case_id, query=query)
        bound = rt.audit_append([entry])[0] + 1
        request.session["bsn_search"] = {"p": pseudonym, "q": q.params(), "bound": bound}
    elif pseudonym is not None:
        query = {"cursor": start, "limit": PAGE}
        rt.audit_append([lookup_entry(ctx, action="audit.search", pseudonym=pseudonym, query=query)])
    found, next_cursor, partial = _scan(rt, store_filters, start, q.decision, bound)
    presenter = Presenter(rt, lang)
    rows = [presenter.row(e) for e in found]
    return _search_page(
        request,
        user,
        q,
        rows,
        next_cursor,
        by_bsn=pseudonym is not None,
        partial=partial and bool(next_cursor),
    )


def _is_case(rt: Runtime, case_id: str) -> bool:
    with rt.sessions() as s:
        return s.get(Case, case_id) is not None


@router.post("/zoeken", response_class=HTMLResponse)
def search_form(
    request: Request,
    user: User,
    csrf: Annotated[str | None, Form()] = None,
    bsn: Annotated[str, Form()] = "",
    case_id: Annotated[str, Form(alias="caseId")] = "",
    agency: Annotated[str, Form()] = "",
    purpose: Annotated[str, Form()] = "",
    information_type: Annotated[str, Form(alias="informationType")] = "",
    decision: Annotated[str, Form()] = "",
    time_from: Annotated[str, Form(alias="from")] = "",
    time_to: Annotated[str, Form(alias="to")] = "",
    cursor: Annotated[str | None, Form()] = None,
    more: Annotated[str | None, Form()] = None,
) -> Response:
    """The search form; with a BSN it is a lookup of a person, answered here (never in a URL)."""
    if not csrf_ok(request, csrf):
        raise FormRefused
    rt = runtime(request)
    if more:
        kept = request.session.get("bsn_search")
        if not isinstance(kept, dict) or not isinstance(kept.get("p"), str):
            return RedirectResponse(_url(request, "/"), status_code=303)
        kq = kept.get("q", {})
        q = Query(
            case_id=kq.get("caseId", ""),
            agency=kq.get("agency", ""),
            purpose=kq.get("purpose", ""),
            information_type=kq.get("informationType", ""),
            decision=kq.get("decision", ""),
            time_from=kq.get("from", ""),
            time_to=kq.get("to", ""),
        )
        return _run_search(request, user, q, cursor, kept["p"], int(kept.get("bound", 0)))
    q = Query(case_id, agency, purpose, information_type, decision, time_from, time_to)
    bsn = bsn.strip().replace(" ", "").replace(".", "")
    if not bsn:
        request.session.pop("bsn_search", None)
        return RedirectResponse(_url(request, "/", **q.params()), status_code=303)
    if not is_valid_bsn(bsn):
        lang = language(request)
        return _search_page(request, user, q, None, None, errors=[translate(lang, "field.bsn")], status=400)
    pseudonym = rt.pseudonymizer.pseudonym(bsn)
    del bsn
    return _run_search(request, user, q, None, pseudonym)


# -- entry and case -------------------------------------------------------------------------------


def _entry_or_404(rt: Runtime, user: ConsoleUser, index: int) -> LogEntry:
    found = rt.audit.entry(index) if 0 <= index < 2**63 else None
    if found is None or not _visible(user, found.entry):
        raise PageError(404, "err.404.title", ["err.404"])
    return found


@router.get("/entries/{index}", response_class=HTMLResponse, name="entry")
def entry_page(request: Request, user: User, index: int) -> Response:
    """One entry: decision, reasons, legal basis, purpose, revision and its inclusion proof checked."""
    rt = runtime(request)
    found = _entry_or_404(rt, user, index)
    _log_view(
        rt,
        _context(request, user),
        "console.entry",
        found.entry.get("caseId"),
        _subjects(found.entry),
        entry=str(index),
    )
    presenter = Presenter(rt, language(request))
    row = presenter.row(found)
    proof = check_inclusion(rt, found)
    decision = found.entry.get("decision") if isinstance(found.entry.get("decision"), Mapping) else {}
    return page(
        request,
        "entry.html",
        {
            "user": user,
            "row": row,
            "entry": found.entry,
            "decision": decision,
            "verified_basis": presenter.basis_verified(row.raw),
            "proof": proof,
            "proof_time": show_time(proof.time.isoformat() if proof.time else None, presenter.lang),
            "names": presenter.names,
            "subjects": len(_subjects(found.entry)),
            "shown_time": show_time(row.raw.time, presenter.lang),
        },
    )


@router.get("/cases/{case_id}", response_class=HTMLResponse, name="case")
def case_page(request: Request, user: User, case_id: str) -> Response:
    """One case: the timeline of its steps and exchanges and a picture of who sent what to whom."""
    rt = runtime(request)
    ctx = _context(request, user)
    try:
        filters = AuditFilters.model_validate({"caseId": case_id})
    except ValidationError as e:
        raise PageError(404, "err.404.title", ["err.404"]) from e
    store_filters = scoped_filters(ctx, rt, filters)
    found, _ = rt.audit.search(store_filters, limit=CASE_LIMIT)
    if not found or not _is_case(rt, case_id):
        raise PageError(404, "err.404.title", ["err.404"])
    subjects = next((_subjects(e.entry) for e in found if _subjects(e.entry)), [])
    _log_view(rt, ctx, "console.case", case_id, subjects)
    presenter = Presenter(rt, language(request))
    rows = [
        presenter.row(e)
        for e in found
        if not str(e.entry.get("action", "")).startswith(("console.", "audit."))
    ]
    first: dict[tuple[object, ...], Row] = {}
    for r in rows:
        if r.raw.from_agency and r.raw.to_agency:
            first.setdefault(_exchange_key(r), r)
    exchanges = list(first.values())  # in the order of the log
    order = list(dict.fromkeys(a for r in exchanges for a in (r.raw.from_agency, r.raw.to_agency) if a))
    arrows = [
        Arrow(
            str(r.raw.from_agency),
            str(r.raw.to_agency),
            presenter.names.information_type(r.raw.information_type),
            r.allowed is not False,
        )
        for r in exchanges
    ]
    svg = case_svg(
        [(a, presenter.names.agency(a)) for a in order],
        arrows,
        presenter.t("case.picture"),
        presenter.t("case.picture.desc"),
        presenter.t("case.refused.label"),
    )
    return page(
        request,
        "case.html",
        {"user": user, "case_id": case_id, "rows": rows, "svg": svg, "exchanges": exchanges},
    )


def _exchange_key(r: Row) -> tuple[object, ...]:
    """One exchange logged in several entries (authorised, then delivered) is one arrow: its first."""
    found = r.entry.get("refs")
    refs: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    ref = refs.get("shareId") or refs.get("requestId") or r.index
    return (ref, r.raw.to_agency)  # a delivery (push) of a share names the share and its recipient


# -- integrity ------------------------------------------------------------------------------------


def verifications(request: Request) -> Verifications:
    """The console's verification runner (one per app)."""
    v: Verifications = request.app.state.verifications
    return v


@router.get("/integriteit", response_class=HTMLResponse, name="integrity")
def integrity(request: Request, user: User) -> Response:
    """The latest checkpoint, its cosignatures, the last full verification, and a button to run one."""
    rt = runtime(request)
    latest = rt.audit.latest_checkpoint()
    lang = language(request)
    v = verifications(request)
    running = v.running()
    last = v.last()
    return page(
        request,
        "integrity.html",
        {
            "user": user,
            "latest": latest,
            "latest_time": show_time(latest.created_at.isoformat(), lang) if latest else None,
            "root_hash": latest.root.hex() if latest else None,
            "witnessing": _witnessing(rt, latest, lang),
            "running": running,
            "last": last,
            "last_time": show_time(last.get("time"), lang) if last else None,
            "notice": request.query_params.get("notice"),
        },
    )


def _witnessing(rt: Runtime, latest: StoredCheckpoint | None, lang: str) -> dict[str, Any] | None:
    """The witnesses' section of the integrity page: the latest checkpoint's cosignatures, the quorum."""
    from audit import Checkpoint
    from gateway.services.witnessing import witness_status

    if not rt.settings.witnesses or latest is None:
        return None
    status = witness_status(rt, Checkpoint(rt.signer.origin, latest.size, latest.root))
    views = [{**c.to_json(), "shown": show_time(c.to_json()["time"], lang)} for c in status.cosignatures]
    return {
        "witnessed": status.witnessed,
        "valid": len({c.witness for c in status.cosignatures if c.valid}),
        "quorum": status.quorum,
        "configured": len(status.witnesses),
        "cosignatures": views,
        "latest": status.latest_witnessed.size if status.latest_witnessed else None,
    }


@router.post("/integriteit/controle")
def start_verification(request: Request, user: User, csrf: Annotated[str | None, Form()] = None) -> Response:
    """Start a full verification in the background; the integrity page shows its progress."""
    if not csrf_ok(request, csrf):
        raise FormRefused
    started = verifications(request).start(user.principal.client_id)
    notice = "started" if started else "busy"
    return RedirectResponse(_url(request, "/integriteit", notice=notice), status_code=303)


__all__ = ["FormRefused", "LoginRequired", "PageError", "router"]

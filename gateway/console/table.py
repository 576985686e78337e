"""The console's decision table (issue 11 item 6): ``/console/beslistabel``, its PDF, and the diff of two
revisions, for privacy officers and auditors alike (the table is policy, not personal data: nothing is
logged and no view is scoped to an agency).

The active revision's table comes from its archived files (`gateway.services.policy_archive`, checked
against the revision) when they are there, else from the engine's policy directory while it still holds
that revision, else from the engine's facts alone (then no row can be marked verified: the tests are not
at hand). Any archived revision can be shown (``?revisie=``) and compared with another
(``/beslistabel/verschil?van=&naar=``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from gateway.console.presenting import show_time
from gateway.console.routes import PageError, User, language, page, runtime
from gateway.policy._lawtable import LawTable, diff_tables, law_table
from gateway.runtime import Runtime

router = APIRouter()

REVISION_RE = re.compile(r"sha256:[0-9a-f]{64}")
"""What a revision looks like (`gateway.policy._source.policy_revision`)."""


@dataclass(frozen=True)
class RevisionOption:
    """One revision in the diff's choice lists."""

    revision: str
    label: str
    activated_at: dt.datetime | None


def _archived(rt: Runtime, revision: str) -> LawTable | None:
    """The table of an archived revision (its files checked against the revision), or None."""
    from gateway.services.policy_archive import RevisionNotArchived, RevisionTampered, load_revision

    try:
        source = load_revision(rt.db, revision)
    except (RevisionNotArchived, RevisionTampered):
        return None
    return law_table(source.facts, source.test_modules, revision)


def active_table(rt: Runtime) -> LawTable:
    """The table of the revision the engine decides with now."""
    engine = rt.policy.current
    revision = engine.revision
    archived = _archived(rt, revision)
    if archived is not None:
        return archived
    directory = getattr(engine, "policy_dir", None)
    if directory is not None:
        from gateway.policy._source import PolicyCompileError, read_policy

        try:
            source = read_policy(directory)
        except (PolicyCompileError, OSError):
            source = None
        if source is not None and source.revision == revision:
            return law_table(source.facts, source.test_modules, revision)
    return law_table(engine.facts(), None, revision)


def table_of(rt: Runtime, revision: str | None) -> LawTable:
    """The active table (``revision`` None or the active one), else an archived one; 404 when unknown."""
    if revision is None or revision == rt.policy.current.revision:
        return active_table(rt)
    archived = _archived(rt, revision)
    if archived is None:
        raise PageError(404, "err.404.title", ["err.404"])
    return archived


def revision_options(rt: Runtime, lang: str) -> list[RevisionOption]:
    """The active revision first, then the archived ones, newest activation first."""
    from gateway.services.policy_archive import list_revisions

    active = rt.policy.current.revision
    archived = list_revisions(rt.db)  # the newest activation first
    options = []
    when = {r.revision: r.activated_at for r in archived}
    for revision in [active] + [r.revision for r in archived if r.revision != active]:
        activated = when.get(revision)
        label = revision[:19] + "…"
        if revision == active:
            label += " (actief)" if lang == "nl" else " (active)"
        elif activated is not None:
            word = " geactiveerd " if lang == "nl" else " activated "
            label += word + show_time(activated.isoformat(), lang)
        options.append(RevisionOption(revision, label, activated))
    return options


class BadRevision(Exception):
    """A ``revisie``, ``van`` or ``naar`` that is no revision."""


def _revision(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not REVISION_RE.fullmatch(value):
        raise BadRevision
    return value


def _refused(request: Request) -> HTMLResponse:
    """The Dutch 400 page for a bad revision, whose language link does not carry what was typed (it
    could be anything, a BSN among them)."""
    other = "en" if language(request) == "nl" else "nl"
    context = {
        "status": 400,
        "title_key": "err.400.title",
        "messages": ["field.revision"],
        "switch_url": f"{request.url.path}?lang={other}",
    }
    return page(request, "error.html", context, status=400)


Revision = Annotated[str | None, Query(alias="revisie", max_length=80)]


@router.get("/beslistabel", response_class=HTMLResponse, name="decision_table")
def decision_table(request: Request, user: User, revisie: Revision = None) -> Response:
    """The active revision's table (or ``?revisie=`` an archived one), with a PDF link and the diff form."""
    rt = runtime(request)
    lang = language(request)
    try:
        table = table_of(rt, _revision(revisie))
    except BadRevision:
        return _refused(request)
    options = revision_options(rt, lang)
    active = options[0].revision
    activated = next((o.activated_at for o in options if o.revision == table.revision), None)
    older = next((o.revision for o in options if o.revision != table.revision), table.revision)
    context = {
        "user": user,
        "table": table,
        "diff": None,
        "is_active": table.revision == active,
        "activated": show_time(activated.isoformat(), lang) if activated else "",
        "revisions": options,
        "van": older,
        "naar": table.revision,
    }
    return page(request, "beslistabel.html", context)


@router.get("/beslistabel.pdf", name="decision_table_pdf")
def decision_table_pdf(request: Request, user: User, revisie: Revision = None) -> Response:
    """The same table as an A4 PDF in Dutch (a download, never cached)."""
    from gateway.policy._lawtable_formats import render_pdf

    rt = runtime(request)
    try:
        table = table_of(rt, _revision(revisie))
    except BadRevision:
        return _refused(request)
    options = revision_options(rt, "nl")
    activated = next((o.activated_at for o in options if o.revision == table.revision), None)
    body = render_pdf(
        table,
        made=dt.datetime.now(dt.UTC).astimezone(_local()),
        activated=show_time(activated.isoformat(), "nl") if activated else "",
    )
    name = f"beslistabel-{table.revision.removeprefix('sha256:')[:12]}.pdf"
    return Response(
        body,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


@router.get("/beslistabel/verschil", response_class=HTMLResponse, name="decision_table_diff")
def decision_table_diff(
    request: Request,
    user: User,
    van: Annotated[str, Query(max_length=80)] = "",
    naar: Annotated[str, Query(max_length=80)] = "",
) -> Response:
    """Rows added, removed and changed (with the changed columns marked) from revision ``van`` to ``naar``."""
    rt = runtime(request)
    try:
        old, new = _revision(van), _revision(naar)
    except BadRevision:
        return _refused(request)
    if old is None or new is None:
        return _refused(request)
    diff = diff_tables(table_of(rt, old), table_of(rt, new))
    context = {
        "user": user,
        "table": diff.new,
        "diff": diff,
        "revisions": revision_options(rt, language(request)),
        "van": old,
        "naar": new,
    }
    return page(request, "beslistabel.html", context)


def _local() -> dt.tzinfo:
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo("Europe/Amsterdam")
    except Exception:  # no tz database: UTC, and the date says so
        return dt.UTC


__all__ = ["active_table", "revision_options", "router", "table_of"]

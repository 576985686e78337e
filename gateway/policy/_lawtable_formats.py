"""The lawyers' decision table (`gateway.policy._lawtable`) as HTML, PDF and Markdown, in Dutch.

The HTML is the console's own markup (``gateway/console/templates/_beslistabel.html``), so the page at
``/console/beslistabel`` and ``gateway policy table --format html`` show the same rows with the same
words; the file version inlines the console's style sheets. The PDF uses the gateway's shared page
set-up (`gateway.services.pdf_pages`): title, revision, date, one block per grant with its legal basis
written out and its verification mark, page numbers in the footer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.policy._lawtable import COLUMNS, ChangedRow, LawRow, LawTable, TableDiff

if TYPE_CHECKING:
    from jinja2 import Environment

    from gateway.services.pdf_pages import PdfPages

CONSOLE = Path(__file__).resolve().parents[1] / "console"
TEMPLATES = CONSOLE / "templates"
STYLES = (CONSOLE / "static" / "console.css", CONSOLE / "static" / "beslistabel.css")

TITLE = "Beslistabel Veilig Delen"
DIFF_TITLE = "Verschil in de beslistabel"
MONTHS = ("januari februari maart april mei juni juli augustus september oktober november december").split()

VERIFIED_NOTE = (
    "Geverifieerd: de rijtest van deze revisie (rows_test.rego, gemaakt door gateway policy row-tests) "
    "toetst de rij in beide richtingen: waar zij toestaat, met precies deze grondslag en gegevens, en "
    "waar zij weigert."
)
BASIS_NOTE = (
    "Grondslag nagegaan: een jurist heeft de grondslag zelf nagelezen. Niet nagegaan betekent: de regel "
    "werkt zoals beschreven, maar of de wet dit toestaat is nog open."
)


def dutch_date(when: dt.datetime) -> str:
    """ "2 december 2026, 14:05" in the time zone ``when`` carries."""
    return f"{when.day} {MONTHS[when.month - 1]} {when.year}, {when:%H:%M}"


def _environment() -> Environment:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))


def render_html(
    table: LawTable | None = None,
    diff: TableDiff | None = None,
    *,
    made: dt.datetime,
    old_source: str = "",
    new_source: str = "",
) -> str:
    """One self-contained HTML file: the table, or (``diff``) the difference of two."""
    css = "\n".join(p.read_text(encoding="utf-8") for p in STYLES)
    template = _environment().get_template("beslistabel_document.html")
    return template.render(
        title=DIFF_TITLE if diff is not None else TITLE,
        table=table,
        diff=diff,
        css=css,
        made=dutch_date(made),
        old_source=old_source,
        new_source=new_source,
    )


def column_text(row: LawRow, column: str) -> str:
    """One column of a row as plain Dutch text (the PDF's and Markdown's cell)."""
    if column == "legal_basis":
        checked = "grondslag nagegaan" if row.legal_basis_checked else "grondslag niet nagegaan"
        return f"{row.legal_basis_written_out} ({checked})"
    if column == "purposes":
        return ", ".join(row.purpose_names)
    if column == "fields":
        parts = [", ".join(row.fields) or "geen gegevensvelden"]
        if row.identities:
            parts.append(", ".join(row.identity_labels))
        return "; ".join(parts)
    if column == "retention_days":
        return f"{row.retention_days} dagen"
    if column == "steps":
        return "; ".join(row.step_labels) or "geen stap"
    if column == "verified":
        v = row.verification
        return v.label + (f" ({v.reason})" if v.reason else "")
    raise KeyError(column)


def _who(row: LawRow) -> str:
    return f"{row.information_type_name}: {row.sender_name} → {row.receiver_name}"


# -- PDF ------------------------------------------------------------------------------------------------

_GREEN, _AMBER, _RED, _GREY, _BLACK = (11, 107, 47), (122, 74, 0), (163, 0, 27), (80, 80, 80), (0, 0, 0)
_LABEL_W = 34.0
_BLOCK_MAX = 110.0


def _facts(pages: PdfPages, facts: list[tuple[str, str]]) -> None:
    pdf = pages.pdf
    for label, value in facts:
        pdf.set_font(pages.family, "B", 9.5)
        y = pdf.get_y()
        pdf.multi_cell(_LABEL_W, 5, pages.text(label), align="L")
        after = pdf.get_y()
        pdf.set_xy(pdf.l_margin + _LABEL_W, y)
        # A revision (sha256: and 64 hex digits) fits one line at 9 pt.
        pdf.set_font(pages.family, "", 9 if value.startswith("sha256:") else 9.5)
        pages.para(pdf.epw - _LABEL_W, 5, value)
        pdf.set_y(max(pdf.get_y(), after))


def _rule(pages: PdfPages) -> None:
    pdf = pages.pdf
    pdf.ln(2)
    pdf.set_draw_color(160, 160, 160)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + pdf.epw, pdf.get_y())
    pdf.ln(3)


def _details(pages: PdfPages, details: list[tuple[str, str, tuple[int, int, int]]]) -> None:
    pdf = pages.pdf
    pdf.set_font(pages.family, "", 8.8)
    for key, value, colour in details:
        y = pdf.get_y()
        pdf.set_x(pdf.l_margin + 4)
        pdf.set_text_color(*_GREY)
        pdf.multi_cell(_LABEL_W - 4, 4.4, pages.text(key), align="L")
        after = pdf.get_y()
        pdf.set_xy(pdf.l_margin + _LABEL_W, y)
        pdf.set_text_color(*colour)
        pages.para(pdf.epw - _LABEL_W, 4.4, value)
        pdf.set_y(max(pdf.get_y(), after))
    pdf.set_text_color(*_BLACK)


def _row_block(pages: PdfPages, row: LawRow, heading: str | None = None) -> None:
    pdf = pages.pdf
    pdf.set_font(pages.family, "B", 10.5)
    pages.para(pdf.epw, 5.5, heading or f"{row.sender_name} → {row.receiver_name}")
    v = row.verification
    mark = ("geverifieerd", _GREEN) if v.verified else (f"niet geverifieerd: {v.reason}", _AMBER)
    checked = "grondslag nagegaan" if row.legal_basis_checked else "grondslag niet nagegaan"
    details = [
        ("Verificatie", mark[0], mark[1]),
        ("Grondslag", row.legal_basis_written_out, _BLACK),
        ("", f"In het beleid: {row.legal_basis} ({checked})", _GREY),
        ("Doelen", ", ".join(row.purpose_names), _BLACK),
        ("Gegevens", ", ".join(row.fields) or "geen gegevensvelden", _BLACK),
        ("Identiteiten", ", ".join(row.identity_labels) or "geen", _BLACK),
        ("Bewaartermijn", f"{row.retention_days} dagen", _BLACK),
    ]
    if row.conditions:
        details.append(("Voorwaarden", "; ".join(row.conditions), _BLACK))
    details.append(("Stappen", "\n".join(row.step_labels) or "geen stap", _BLACK))
    _details(pages, details)
    pdf.ln(3)


def _together(pages: PdfPages, draw: Callable[[], None]) -> None:
    """Draw a block on one page: on the next one when a dry run of it would break the page (tried only
    near the page's end: a block is at most ~100 mm, and a dry run costs as much as drawing)."""
    if pages.pdf.will_page_break(_BLOCK_MAX):
        with pages.pdf.offset_rendering() as dry:
            draw()
        if dry.page_break_triggered:
            pages.pdf.add_page()
    draw()


def _heading(pages: PdfPages, text: str) -> None:
    pages.pdf.set_font(pages.family, "B", 12.5)
    pages.para(pages.pdf.epw, 7, text)
    pages.pdf.ln(1)


def _start(title: str, facts: list[tuple[str, str]], notes: list[str]) -> PdfPages:
    from gateway.services.pdf_pages import start_pdf

    pages = start_pdf(title, "nl")
    pdf = pages.pdf
    pdf.set_font(pages.family, "B", 15)
    pages.para(pdf.epw, 7, title)
    pdf.ln(3)
    _facts(pages, facts)
    if notes:
        pdf.ln(2)
        pdf.set_font(pages.family, "", 8.5)
        for note in notes:
            pages.para(pdf.epw, 4.2, note)
            pdf.ln(1)
    _rule(pages)
    return pages


def render_pdf(table: LawTable, *, made: dt.datetime, activated: str = "") -> bytes:
    """The table as an A4 PDF: one heading per information type, one block per grant."""
    facts = [("Revisie", table.revision)]
    if activated:
        facts.append(("Actief sinds", activated))
    facts += [
        ("Datum", dutch_date(made)),
        ("Geverifieerd", f"{table.verified_count} van de {len(table.rows)} rijen"),
    ]
    pages = _start(TITLE, facts, [VERIFIED_NOTE, BASIS_NOTE])
    current = None
    for row in table.rows:
        first = row.information_type != current
        current = row.information_type

        def draw(row: LawRow = row, first: bool = first) -> None:
            if first:  # an information type's heading stays with its first row
                _heading(pages, row.information_type_name)
            _row_block(pages, row)

        _together(pages, draw)
    return bytes(pages.pdf.output())


def render_diff_pdf(diff: TableDiff, *, made: dt.datetime) -> bytes:
    """The difference of two tables as an A4 PDF: changed rows (was / wordt per column), added, removed."""
    facts = [
        ("Van revisie", diff.old.revision),
        ("Naar revisie", diff.new.revision),
        ("Datum", dutch_date(made)),
        ("Samenvatting", diff_summary(diff)),
    ]
    pages = _start(DIFF_TITLE, facts, [])

    def changed(ch: ChangedRow) -> None:
        pages.pdf.set_font(pages.family, "B", 10.5)
        pages.para(pages.pdf.epw, 5.5, f"{_who(ch.new)} (gewijzigd: {', '.join(ch.column_names)})")
        details = []
        for c in ch.columns:
            details.append((COLUMNS[c].capitalize() + ", was", column_text(ch.old, c), _RED))
            details.append(("wordt", column_text(ch.new, c), _GREEN))
        _details(pages, details)
        pages.pdf.ln(3)

    def whole(row: LawRow) -> None:
        _row_block(pages, row, _who(row))

    sections: list[tuple[str, list[Callable[[], None]]]] = [
        ("Gewijzigd", [partial(changed, ch) for ch in diff.changed]),
        ("Toegevoegd", [partial(whole, r) for r in diff.added]),
        ("Vervallen", [partial(whole, r) for r in diff.removed]),
    ]
    for title, blocks in sections:
        for i, block in enumerate(blocks):

            def draw(block: Callable[[], None] = block, first: bool = i == 0, title: str = title) -> None:
                if first:
                    _heading(pages, title)
                block()

            _together(pages, draw)
    return bytes(pages.pdf.output())


# -- Markdown (the diff; the table itself stays `_table.decision_table`) ---------------------------------


def diff_summary(diff: TableDiff) -> str:
    """ "2 rijen gewijzigd, 1 toegevoegd, 0 vervallen", or that nothing differs."""
    if diff.empty:
        return "Geen verschil: beide revisies geven dezelfde rijen."
    n = len(diff.changed)
    rows = "rij" if n == 1 else "rijen"
    return f"{n} {rows} gewijzigd, {len(diff.added)} toegevoegd, {len(diff.removed)} vervallen."


def render_diff_markdown(diff: TableDiff) -> str:
    """The difference as Markdown: one bullet per row, was / wordt per changed column."""
    lines = [
        f"## {DIFF_TITLE}",
        "",
        f"Van revisie `{diff.old.revision}` naar `{diff.new.revision}`: {diff_summary(diff)}",
    ]
    if diff.changed:
        lines += ["", "### Gewijzigd", ""]
        for ch in diff.changed:
            lines.append(f"- **{_who(ch.new)}** (gewijzigd: {', '.join(ch.column_names)})")
            for c in ch.columns:
                lines.append(f"  - {COLUMNS[c]}: was {column_text(ch.old, c)}")
                lines.append(f"    wordt {column_text(ch.new, c)}")
    for title, found in (("Toegevoegd", diff.added), ("Vervallen", diff.removed)):
        if found:
            lines += ["", f"### {title}", ""]
            for row in found:
                lines.append(f"- **{_who(row)}**: {column_text(row, 'legal_basis')}")
    return "\n".join(lines) + "\n"


__all__ = [
    "column_text",
    "diff_summary",
    "dutch_date",
    "render_diff_markdown",
    "render_diff_pdf",
    "render_html",
    "render_pdf",
]

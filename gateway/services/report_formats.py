"""A `Report` as text, CSV or PDF. Every string comes from the report: nothing here is in one language.

CSV is what Dutch Excel opens without an import dialog: UTF-8 with a byte order mark, ``;`` between
fields, CRLF line ends, the headings in the report's language. PDF is made with fpdf2 on the gateway's
shared page set-up (`gateway.services.pdf_pages`: A4, DejaVu Sans, page numbers).
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.services.reports import Report, ReportRow

_BOM = "\ufeff"


def render_text(report: Report) -> str:
    """The report as plain text lines: header, one block per row, the summary and the checkpoint."""
    from gateway.services.reports import phrase

    lang = report.lang
    width = max((len(label) for label, _ in report.header), default=0) + 2
    lines = [report.title, "=" * len(report.title), ""]
    lines += [f"{label + ':':<{width}}{value}" for label, value in report.header]
    lines.append("")
    if not report.rows:
        lines += [phrase("no.rows", lang), ""]
    for row in report.rows:
        mark = "" if row.proof_ok else f"  [{row.proof}]"
        lines.append(f"{row.when}  {row.what}{mark}")
        lines.append(f"    {row.sentence}")
        for key, value in _details(report, row):
            lines.append(f"    {phrase(key, lang)}: {value}")
        if row.technical is not None:
            t = row.technical
            lines.append(
                f"    {phrase('c.index', lang)} {t.index}, {phrase('c.leaf', lang)} {t.leaf_hash}, "
                f"{phrase('c.trace', lang)} {t.trace_id}, {phrase('c.revision', lang)} {t.policy_revision}, "
                f"{phrase('c.case_id', lang)} {t.case_id}"
            )
        lines.append("")
    label, value = report.summary
    lines += [f"{label}: {value}", "", phrase("note.verify", lang)]
    if report.technical:
        lines += ["", report.checkpoint.rstrip("\n")]
    return "\n".join(lines) + "\n"


def _details(report: Report, row: ReportRow) -> list[tuple[str, str]]:
    """The labelled lines under a row's sentence; reasons only where something was refused."""
    out = [("c.case", row.case)] if report.kind == "subject" else []
    if row.moves_information:
        out.append(("c.basis", row.legal_basis))
    out.append(("c.decision", row.decision))
    if row.reasons:
        out.append(("c.reasons", "; ".join(row.reasons)))
    return out


def render_csv(report: Report) -> str:
    """One line per row under the report's headings; UTF-8 BOM, ``;``-separated, for Dutch Excel."""
    from gateway.services.reports import cell

    buf = io.StringIO()
    buf.write(_BOM)
    writer = csv.writer(buf, delimiter=";", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    columns = report.columns()
    writer.writerow([heading for _, heading in columns])
    for row in report.rows:
        writer.writerow([_csv_safe(cell(row, attr, report.lang)) for attr, _ in columns])
    return buf.getvalue()


def _csv_safe(value: str) -> str:
    """No formula injection: a field Excel would run (``=``, ``+``, ``-``, ``@``) starts with a quote."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def render_pdf(report: Report) -> bytes:
    """The report as an A4 PDF: the header, one block per row (failed checks in red), the summary."""
    from gateway.services.pdf_pages import start_pdf
    from gateway.services.reports import phrase

    lang = report.lang
    pages = start_pdf(report.title, lang)
    pdf, family, _t, para = pages.pdf, pages.family, pages.text, pages.para
    full = pdf.epw

    pdf.set_font(family, "B", 15)
    para(full, 7, report.title)
    pdf.ln(3)
    label_w = 38
    for label, value in report.header:
        warn = value.startswith(("LET OP", "WARNING"))
        pdf.set_font(family, "B", 9.5)
        y = pdf.get_y()
        pdf.multi_cell(label_w, 5, _t(label), align="L")
        after_label = pdf.get_y()
        pdf.set_xy(pdf.l_margin + label_w, y)
        pdf.set_font(family, "", 9.5)
        if warn:
            pdf.set_text_color(170, 0, 0)
        para(full - label_w, 5, value)
        pdf.set_text_color(0, 0, 0)
        pdf.set_y(max(pdf.get_y(), after_label))
        pdf.ln(0.8)
    pdf.ln(2)
    pdf.set_font(family, "B", 10)
    label, value = report.summary
    para(full, 5.5, f"{label}: ")
    pdf.set_font(family, "", 10)
    para(full, 5.5, value)
    pdf.ln(2)
    pdf.set_draw_color(160, 160, 160)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + full, pdf.get_y())
    pdf.ln(3)

    if not report.rows:
        pdf.set_font(family, "", 10)
        para(full, 5.5, phrase("no.rows", lang))
    for row in report.rows:
        if pdf.will_page_break(24):
            pdf.add_page()
        pdf.set_font(family, "B", 10.5)
        heading = f"{row.when} — {row.what}"
        if row.allowed is False:
            pdf.set_text_color(150, 60, 0)
        para(full, 5.5, heading)
        pdf.set_text_color(0, 0, 0)
        pdf.set_font(family, "", 10)
        para(full, 5, row.sentence)
        details = [(phrase(k, lang), v) for k, v in _details(report, row) if k != "c.reasons"]
        if row.reasons:
            # One reason a line: a refusal often has two, and each is a sentence of its own.
            details.append((phrase("c.reasons", lang), "\n".join(f"• {r}" for r in row.reasons)))
        if row.moves_information:
            details.insert(0, (phrase("c.information", lang), row.information))
            details.insert(1, (phrase("c.purpose", lang), row.purpose))
        details.append((phrase("c.proof", lang), row.proof))
        if row.technical is not None:
            t = row.technical
            details += [
                (phrase("c.index", lang), str(t.index)),
                (phrase("c.leaf", lang), t.leaf_hash),
                (phrase("c.trace", lang), t.trace_id),
                (phrase("c.revision", lang), t.policy_revision),
                (phrase("c.case_id", lang), t.case_id),
            ]
        pdf.set_font(family, "", 8.8)
        for key, value in details:
            y = pdf.get_y()
            pdf.set_x(pdf.l_margin + 4)
            pdf.set_text_color(80, 80, 80)
            pdf.multi_cell(34, 4.4, _t(key), align="L")
            after = pdf.get_y()
            pdf.set_xy(pdf.l_margin + 38, y)
            failed = key == phrase("c.proof", lang) and not row.proof_ok
            pdf.set_text_color(170, 0, 0) if failed else pdf.set_text_color(0, 0, 0)
            para(full - 38, 4.4, value)
            pdf.set_y(max(pdf.get_y(), after))
        pdf.set_text_color(0, 0, 0)
        pdf.ln(3)

    pdf.ln(2)
    pdf.set_font(family, "", 8.5)
    para(full, 4.4, phrase("note.verify", lang))
    if report.technical:
        pdf.ln(1)
        pdf.set_font(family, "", 7.5)
        para(full, 3.8, report.checkpoint.rstrip("\n"))
    return bytes(pdf.output())

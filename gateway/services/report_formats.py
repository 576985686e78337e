"""A `Report` as text, CSV or PDF. Every string comes from the report: nothing here is in one language.

CSV is what Dutch Excel opens without an import dialog: UTF-8 with a byte order mark, ``;`` between
fields, CRLF line ends, the headings in the report's language. PDF is made with fpdf2 (pure Python) in
DejaVu Sans, the font Debian ships (``fonts-dejavu-core``), so every character of a name prints; without
it, the built-in Helvetica (Latin-1) with the characters it lacks replaced.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.services.reports import Report, ReportRow

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"),)
"""Where DejaVu Sans is looked for (Debian's fonts-dejavu-core)."""

_BOM = "\ufeff"
_PLAIN = str.maketrans({"—": "-", "–": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "•": "-", "…": "..."})


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


def _font_files() -> tuple[Path, Path] | None:
    for directory in FONT_DIRS:
        regular, bold = directory / "DejaVuSans.ttf", directory / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return regular, bold
    return None


def render_pdf(report: Report) -> bytes:
    """The report as an A4 PDF: the header, one block per row (failed checks in red), the summary."""
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    from gateway.services.reports import phrase

    lang = report.lang
    fonts = _font_files()

    class _Pdf(FPDF):
        def footer(self) -> None:
            self.set_y(-12)
            self.set_font(family, "", 8)
            self.set_text_color(90, 90, 90)
            page = "pagina" if lang == "nl" else "page"
            self.cell(0, 6, _t(f"{report.title} — {page} {self.page_no()}/{{nb}}"), align="C")

    pdf = _Pdf(format="A4")
    if fonts is not None:
        pdf.add_font("DejaVu", "", str(fonts[0]))
        pdf.add_font("DejaVu", "B", str(fonts[1]))
        family = "DejaVu"

        def _t(text: str) -> str:
            return text

    else:
        family = "Helvetica"

        def _t(text: str) -> str:
            # The core fonts know Latin-1 only: typographic marks become their plain forms, anything
            # else '?', rather than failing the report.
            return text.translate(_PLAIN).encode("latin-1", "replace").decode("latin-1")

    pdf.set_title(_t(report.title))
    pdf.set_lang("nl-NL" if lang == "nl" else "en-GB")
    pdf.set_creator("Veilig Delen")
    pdf.set_auto_page_break(True, margin=16)
    pdf.set_margins(16, 16, 16)
    pdf.add_page()
    full = pdf.epw

    def para(width: float, height: float, text: str) -> None:
        """A wrapped paragraph, then back to the left margin on the next line."""
        pdf.multi_cell(width, height, _t(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

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

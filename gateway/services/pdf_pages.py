"""The page set-up every PDF of the gateway shares: A4, DejaVu Sans, margins, a footer with page numbers.

fpdf2 (pure Python) writes the file. DejaVu Sans is the font Debian ships (``fonts-dejavu-core``), so
every character of a name prints; without it, the built-in Helvetica (Latin-1) with the characters it
lacks replaced rather than failing the document. Used by the reports (`report_formats.render_pdf`) and
the decision table (`gateway.policy._lawtable_formats`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from fpdf import FPDF

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"),)
"""Where DejaVu Sans is looked for (Debian's fonts-dejavu-core)."""

_PLAIN = str.maketrans({"—": "-", "–": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "•": "-", "…": "..."})


def font_files() -> tuple[Path, Path] | None:
    """DejaVu Sans regular and bold, when installed."""
    for directory in FONT_DIRS:
        regular, bold = directory / "DejaVuSans.ttf", directory / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return regular, bold
    return None


@dataclass
class PdfPages:
    """A started document: the `FPDF`, its font family and how text must be passed to it."""

    pdf: FPDF
    family: str
    text: Callable[[str], str]
    """Text as the font can print it (identity with DejaVu; Latin-1 with Helvetica)."""

    def para(self, width: float, height: float, text: str) -> None:
        """A wrapped paragraph, then back to the left margin on the next line."""
        from fpdf.enums import XPos, YPos

        self.pdf.multi_cell(width, height, self.text(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def start_pdf(
    title: str, lang: Literal["nl", "en"], *, orientation: Literal["P", "L"] = "P", margin: float = 16
) -> PdfPages:
    """An A4 document with its metadata, fonts, margins, and a footer "title — pagina n/N"; one page added."""
    from fpdf import FPDF

    fonts = font_files()
    family = "DejaVu" if fonts is not None else "Helvetica"

    def plain(text: str) -> str:
        # The core fonts know Latin-1 only: typographic marks become their plain forms, anything else '?'.
        return text.translate(_PLAIN).encode("latin-1", "replace").decode("latin-1")

    def same(text: str) -> str:
        return text

    text = same if fonts is not None else plain

    class _Pdf(FPDF):
        def footer(self) -> None:
            self.set_y(-12)
            self.set_font(family, "", 8)
            self.set_text_color(90, 90, 90)
            page = "pagina" if lang == "nl" else "page"
            self.cell(0, 6, text(f"{title} — {page} {self.page_no()}/{{nb}}"), align="C")

    pdf = _Pdf(orientation=orientation, format="A4")
    if fonts is not None:
        pdf.add_font("DejaVu", "", str(fonts[0]))
        pdf.add_font("DejaVu", "B", str(fonts[1]))
    pdf.set_title(text(title))
    pdf.set_lang("nl-NL" if lang == "nl" else "en-GB")
    pdf.set_creator("Veilig Delen")
    pdf.set_auto_page_break(True, margin=margin)
    pdf.set_margins(margin, margin, margin)
    pdf.add_page()
    return PdfPages(pdf, family, text)


__all__ = ["FONT_DIRS", "PdfPages", "font_files", "start_pdf"]

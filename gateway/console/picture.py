"""The picture of one case: which agency sent what to whom, as inline SVG made on the server.

Agencies are columns; every exchange is an arrow from sender to recipient, one row per exchange in the
order of the log. A refused exchange is drawn dashed in red AND labelled (colour is never the only
sign); the SVG carries ``<title>`` and ``<desc>`` for screen readers, and the table beside it says the
same in words.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

COLUMN = 220
ROW = 46
TOP = 70
SIDE = 30


@dataclass(frozen=True)
class Arrow:
    """One exchange: from, to, what (already a name), and whether it was let through."""

    sender: str
    recipient: str
    label: str
    allowed: bool


def case_svg(
    agencies: list[tuple[str, str]], arrows: list[Arrow], title: str, desc: str, refused_label: str
) -> str:
    """The SVG text; ``agencies`` are ``(identifier, name)`` in column order."""
    columns = {ident: i for i, (ident, _) in enumerate(agencies)}
    width = SIDE * 2 + COLUMN * max(len(agencies), 1)
    height = TOP + ROW * max(len(arrows), 1) + 30
    x = {ident: SIDE + COLUMN * i + COLUMN // 2 for ident, i in columns.items()}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="case-svg-title case-svg-desc" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" class="case-picture">',
        f'<title id="case-svg-title">{escape(title)}</title>',
        f'<desc id="case-svg-desc">{escape(desc)}</desc>',
        "<defs>",
        '<marker id="arrow-ok" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#1d4f91"/></marker>',
        '<marker id="arrow-refused" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#b00020"/></marker>',
        "</defs>",
    ]
    for ident, name in agencies:
        cx = x[ident]
        out.append(
            f'<g class="agency"><rect x="{cx - COLUMN // 2 + 8}" y="10" width="{COLUMN - 16}" height="34" '
            f'rx="4" fill="#f1f4f8" stroke="#44546a"/>'
            f'<text x="{cx}" y="32" text-anchor="middle" font-size="12" font-weight="bold" '
            f'fill="#1b1b1b">{_name_lines(name, cx)}</text>'
            f'<line x1="{cx}" y1="44" x2="{cx}" y2="{height - 10}" stroke="#9aa5b1" stroke-width="1"/></g>'
        )
    for i, a in enumerate(arrows):
        if a.sender not in x or a.recipient not in x:
            continue
        y = TOP + ROW * i + 10
        x1, x2 = x[a.sender], x[a.recipient]
        if x1 == x2:
            continue
        toward = 1 if x2 > x1 else -1
        x1 += 6 * toward
        x2 -= 6 * toward
        label = escape(a.label if a.allowed else f"{refused_label}: {a.label}")
        if a.allowed:
            line = (
                f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="#1d4f91" stroke-width="2.5" '
                'marker-end="url(#arrow-ok)"/>'
            )
            text_fill, cls = "#1b1b1b", "exchange allowed"
        else:
            line = (
                f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="#b00020" stroke-width="2.5" '
                'stroke-dasharray="7 5" marker-end="url(#arrow-refused)"/>'
            )
            text_fill, cls = "#8a0018", "exchange refused"
        mid = (x1 + x2) // 2
        out.append(
            f'<g class="{cls}">{line}<text x="{mid}" y="{y - 7}" text-anchor="middle" font-size="12" '
            f'fill="{text_fill}">{label}</text></g>'
        )
    out.append("</svg>")
    return "\n".join(out)


NAME_FIT = 24
"""Characters of a bold 12px name that fit in an agency's box on one line; longer names take two."""


def _name_lines(name: str, cx: int) -> str:
    """The name as SVG text content: itself, or two centred lines split at the space nearest the middle."""
    if len(name) <= NAME_FIT or " " not in name:
        return escape(name)
    spaces = [i for i, c in enumerate(name) if c == " "]
    cut = min(spaces, key=lambda i: abs(i - len(name) / 2))
    first, second = escape(name[:cut]), escape(name[cut + 1 :])
    return f'<tspan x="{cx}" y="24">{first}</tspan><tspan x="{cx}" y="39">{second}</tspan>'

"""Self-contained HTML reports: one file, figures embedded as PNG, tables as HTML, provenance at the end.

A :class:`Report` collects sections in order; :meth:`Report.write` renders them with a jinja2
template (``templates/report.html.j2``). Nothing is fetched: no CDN, no external fonts or scripts.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from carpet import __version__
from carpet.report import format as fmt
from carpet.report.style import figure_png_bytes
from carpet.report.wide_tables import column_groups, part_label


# characters after which a browser may break a line inside a word
_BREAKS_INSIDE = re.compile(r"\S*[-–—/‐]\S*")


def _cell_html(text: str) -> str:
    """A table cell's text as HTML that wraps only at spaces.

    Browsers also break lines after hyphens, dashes and slashes, which splits identifiers ("SIM-MMPET-" /
    "0048"), intervals ("(2.7–" / "8.3)") and counts ("4/" / "8"): every word holding such a character is
    kept whole.
    """
    return _BREAKS_INSIDE.sub(lambda m: f'<span class="nw">{m.group(0)}</span>', html.escape(text))


#: the width a table may take (the page's 1040 px column, less a margin for font differences)
TABLE_WIDTH_PX = 1000.0
_FONT_PX, _PAD_PX = 14 * 0.86, 17.0  # the template's table font and cell padding (+ rounding)


def _narrowest_px(cells: pd.DataFrame) -> list[float]:
    """The narrowest each column of ``cells`` can be laid out, in CSS px: its longest word (bold in the
    header), as :func:`_cell_html` lets it wrap only at spaces."""
    from carpet.report.pdf import text_width_pt  # Agg-measured DejaVu Sans, the template's font

    def need(text: str, header: bool) -> float:
        return max((text_width_pt(w, _FONT_PX, bold=header) for w in text.split()), default=0.0) + _PAD_PX

    return [max([need(str(c), True), *(need(str(v), False) for v in cells.iloc[:, j])])
            for j, c in enumerate(cells.columns)]


@dataclass
class Section:
    title: str
    blocks: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Report:
    """An HTML report built section by section.

    Examples
    --------
    >>> r = Report("Demo")
    >>> _ = r.section("Cohort").text("106 simulated patients.")
    """

    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    def section(self, title: str) -> "Report":
        self.sections.append(Section(title))
        return self

    def _add(self, block: dict[str, Any]) -> "Report":
        if not self.sections:
            self.section("")
        self.sections[-1].blocks.append(block)
        return self

    def text(self, text: str) -> "Report":
        return self._add({"kind": "text", "html": html.escape(text)})

    def note(self, text: str) -> "Report":
        return self._add({"kind": "note", "html": html.escape(text)})

    def figure(self, fig, caption: str = "") -> "Report":
        """Embed a matplotlib figure (it is closed after rendering)."""
        return self.image(figure_png_bytes(fig), caption)

    def image(self, png: bytes, caption: str = "") -> "Report":
        """Embed an already rendered PNG."""
        data = base64.b64encode(png).decode("ascii")
        return self._add({"kind": "figure", "src": f"data:image/png;base64,{data}", "caption": caption})

    def table(self, df: pd.DataFrame, caption: str = "", index: bool = False, float_format: str | None = None,
              na_rep: str = fmt.NA) -> "Report":
        """Embed a table; cells as :func:`carpet.report.format.cell` prints them (missing as ``na_rep``)."""
        shown = fmt.cells(df.reset_index() if index else df, float_format, na_rep)
        parts = column_groups(_narrowest_px(shown), TABLE_WIDTH_PX, key=1)
        for k, cols in enumerate(parts, 1):
            part = shown.iloc[:, cols]
            part = part.map(_cell_html).set_axis([_cell_html(str(c)) for c in part.columns], axis=1)
            table_html = part.to_html(index=False, border=0, classes="tbl", escape=False)
            self._add({"kind": "table", "html": table_html, "caption": caption if len(parts) == 1 else
                       f"{caption} — {part_label(k, len(parts), shown.columns[cols])}"})
        return self

    def files(self, paths: list[tuple[str, str]]) -> "Report":
        """A list of (relative link, description) for files written beside the report."""
        return self._add({"kind": "files", "items": paths})

    def render(self) -> str:
        env = Environment(loader=PackageLoader("carpet.report", "templates"),
                          autoescape=select_autoescape(["html", "j2"]))
        template = env.get_template("report.html.j2")
        return template.render(report=self, version=__version__)

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render(), encoding="utf-8")
        return path

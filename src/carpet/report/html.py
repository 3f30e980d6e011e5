"""Self-contained HTML reports: one file, figures embedded (SVG or PNG), tables as HTML, provenance at the end.

A :class:`Report` collects sections in order; :meth:`Report.write` renders them with a jinja2
template (``templates/report.html.j2``). Nothing is fetched: no CDN, no external fonts or scripts.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import matplotlib.pyplot as plt
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from carpet import __version__
from carpet.report import format as fmt
from carpet.report.style import PRINT_DPI
from carpet.report.wide_tables import column_groups, key_columns, part_caption


# characters after which a browser may break a line inside a word
_BREAKS_INSIDE = re.compile(r"\S*[-–—/‐]\S*")


def _cell_html(text: str) -> str:
    """A table cell's text as HTML that wraps only at spaces.

    Browsers also break lines after hyphens, dashes and slashes, which splits identifiers ("SIM-MMPET-" /
    "0048"), intervals ("(2.7–" / "8.3)") and counts ("4/" / "8"): every word holding such a character is
    kept whole.
    """
    return _BREAKS_INSIDE.sub(lambda m: f'<span class="nw">{m.group(0)}</span>', html.escape(text))


#: figures are drawn at print size (points); a screen shows them this much larger (CSS px are 1/96 inch)
SCREEN_SCALE = 1.5
#: an SVG is embedded while it is at most this many times the size of the base64 PNG it replaces
SVG_SIZE_RATIO = 1.5


def figure_src(fig, png: bytes | None = None) -> tuple[str, float]:
    """The ``src`` data URI and CSS width (px) of a figure embedded in a self-contained page.

    Vector SVG (text drawn as paths, so it looks the same without carpet's font and prints sharp at any size)
    unless the figure holds raster images (a MIP: the PNG keeps its pixels exact) or the SVG would be more
    than ``SVG_SIZE_RATIO`` times the base64 300 dpi PNG (figures of thousands of marks); then that PNG,
    sized so that it prints at 300 dpi.
    """
    if png is None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=PRINT_DPI, bbox_inches="tight")
        png = buf.getvalue()
    png_uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    if not any(ax.get_images() for ax in fig.axes):
        buf = io.BytesIO()
        with plt.rc_context({"svg.fonttype": "path", "svg.hashsalt": "carpet"}):
            fig.savefig(buf, format="svg", bbox_inches="tight")
        svg = buf.getvalue().decode("utf-8")
        # ':' and '/' percent-encoded too: no URL in the page, not even the SVG's namespaces
        svg_uri = "data:image/svg+xml," + quote(svg, safe=" =;,.-_()'")
        if len(svg_uri) <= SVG_SIZE_RATIO * len(png_uri):
            width_pt = float(re.search(r'<svg[^>]*\bwidth="([\d.]+)pt"', svg).group(1))
            return svg_uri, round(width_pt / 72 * 96 * SCREEN_SCALE, 1)
    return png_uri, _png_width_px(png)


def _png_width_px(png: bytes) -> float | None:
    """CSS width of a PNG shown at its print size × ``SCREEN_SCALE`` (None when it records no dpi)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        dpi = im.info.get("dpi")
        return round(im.width / float(dpi[0]) * 96 * SCREEN_SCALE, 1) if dpi and dpi[0] else None


#: the width a table may take (the page's 1040 px column, less a margin for rounding)
TABLE_WIDTH_PX = 1030.0
_FONT_PX, _PAD_PX = 14 * 0.86, 17.0  # the template's table font and cell padding (+ rounding)


def _column_px(cells: pd.DataFrame, wrapped: bool = True) -> list[float]:
    """The width each column of ``cells`` takes in CSS px: ``wrapped``, the narrowest (its longest word, as
    :func:`_cell_html` lets a cell wrap only at spaces), else with its cells unwrapped; the bold header may
    wrap at its spaces either way."""
    from carpet.report.pdf import text_width_pt  # Agg-measured DejaVu Sans, the template's font

    def need(text: str, header: bool) -> float:
        words = text.split() if header or wrapped else [text]
        return max((text_width_pt(w, _FONT_PX, bold=header) for w in words), default=0.0) + _PAD_PX

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

    def figure(self, fig, caption: str = "", png: bytes | None = None, close: bool = True) -> "Report":
        """Embed a matplotlib figure as vector SVG, or as PNG where that is the better file (:func:`figure_src`).

        ``png``: the figure's 300 dpi PNG when already written (else rendered here). The figure is closed
        unless ``close`` is False (e.g. the PDF report still has to draw it).
        """
        src, width_px = figure_src(fig, png)
        if close:
            plt.close(fig)
        return self._add({"kind": "figure", "src": src, "width": width_px, "caption": caption})

    def image(self, png: bytes, caption: str = "") -> "Report":
        """Embed an already rendered PNG, shown at its print size (from its dpi) × ``SCREEN_SCALE``."""
        data = base64.b64encode(png).decode("ascii")
        return self._add({"kind": "figure", "src": f"data:image/png;base64,{data}", "width": _png_width_px(png),
                          "caption": caption})

    def table(self, df: pd.DataFrame, caption: str = "", index: bool = False, float_format: str | None = None,
              na_rep: str = fmt.NA) -> "Report":
        """Embed a table; cells as :func:`carpet.report.format.cell` prints them (missing as ``na_rep``)."""
        shown = fmt.cells(df.reset_index() if index else df, float_format, na_rep)
        parts = column_groups(_column_px(shown), TABLE_WIDTH_PX, key=key_columns(shown.columns),
                              natural=_column_px(shown, wrapped=False))
        for k, cols in enumerate(parts, 1):
            part = shown.iloc[:, cols]
            part = part.map(_cell_html).set_axis([_cell_html(str(c)) for c in part.columns], axis=1)
            table_html = part.to_html(index=False, border=0, classes="tbl", escape=False)
            self._add({"kind": "table", "html": table_html, "caption": caption if len(parts) == 1 else
                       part_caption(caption, k, len(parts), shown.columns[cols])})
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

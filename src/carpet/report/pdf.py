"""PDF reports: the same sections as the HTML report, laid out on A4 pages with matplotlib ``PdfPages``.

matplotlib writes the PDF itself (no LaTeX, no extra dependency). Tables are drawn with ``Axes.table`` and
split across pages; figures are embedded as 300 dpi images on an A4 page with their caption (the vector
version of each figure is written beside the report by the caller). Every page carries the report title
in its header, a page number, and the ``banner`` (e.g. SIMULATED) when one is given.
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages

from carpet import __version__
from carpet.report.style import journal_style

A4_INCH = (8.27, 11.69)
ROWS_PER_PAGE = 34
WRAP_CHARS = 95


@dataclass
class PdfReport:
    """A PDF report built block by block (same verbs as :class:`carpet.report.html.Report`).

    Examples
    --------
    >>> r = PdfReport("Outcomes", banner="SIMULATED")
    >>> _ = r.section("Cohort").text("106 simulated patients.")
    """

    title: str
    subtitle: str = ""
    banner: str = ""
    blocks: list[tuple[str, Any, str]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    def section(self, title: str) -> "PdfReport":
        self.blocks.append(("section", title, ""))
        return self

    def text(self, text: str) -> "PdfReport":
        self.blocks.append(("text", text, ""))
        return self

    def note(self, text: str) -> "PdfReport":
        self.blocks.append(("note", text, ""))
        return self

    def table(self, df: pd.DataFrame, caption: str = "", float_format: str = "{:.3g}") -> "PdfReport":
        cells = df.astype(object).map(lambda v: _cell(v, float_format))
        self.blocks.append(("table", cells, caption))
        return self

    def figure(self, fig, caption: str = "", dpi: int = 200) -> "PdfReport":
        """Add a matplotlib figure (rendered now, so the caller may close it afterwards)."""
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        return self.image(buf.getvalue(), caption)

    def image(self, png: bytes | str | Path, caption: str = "") -> "PdfReport":
        """Add a PNG image (bytes or a file), e.g. a figure already written to disk."""
        source = io.BytesIO(png) if isinstance(png, bytes) else png
        self.blocks.append(("figure", mpimg.imread(source, format="png"), caption))
        return self

    def write(self, path: str | Path) -> Path:
        """Lay the blocks out on A4 pages and write the PDF; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"Title": self.title, "Creator": f"carpet {__version__}", **self.metadata}
        with journal_style(), PdfPages(path, metadata=meta) as pdf:
            page = _Page(self, pdf)
            page.heading(self.title, size=15)
            if self.subtitle:
                page.paragraph(self.subtitle, colour="#555555")
            for kind, content, caption in self.blocks:
                if kind == "section":
                    page.heading(content, size=12)
                elif kind in ("text", "note"):
                    page.paragraph(content, colour="#8a5a00" if kind == "note" else "#1a1a1a")
                elif kind == "table":
                    page.table(content, caption)
                else:
                    page.picture(content, caption)
            page.finish()
        return path


def _cell(v, float_format: str) -> str:
    if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
        return "NA"
    if isinstance(v, float):
        return float_format.format(v)
    return str(v)


class _Page:
    """A cursor over A4 pages: writes blocks top to bottom and starts a new page when one is full."""

    TOP, BOTTOM, LINE = 0.93, 0.06, 0.016

    def __init__(self, report: PdfReport, pdf: PdfPages):
        self.report, self.pdf, self.fig, self.y, self.number = report, pdf, None, 0.0, 0

    def _new(self) -> None:
        self.finish()
        self.number += 1
        self.fig = plt.figure(figsize=A4_INCH)
        self.fig.text(0.06, 0.97, self.report.title, fontsize=7, color="#777777")
        self.fig.text(0.94, 0.03, f"{self.number}", fontsize=7, color="#777777", ha="right")
        if self.report.banner:
            self.fig.text(0.94, 0.97, self.report.banner, fontsize=8, color="#D55E00", ha="right",
                          fontweight="bold")
        self.y = self.TOP

    def _room(self, height: float) -> None:
        if self.fig is None or self.y - height < self.BOTTOM:
            self._new()

    def finish(self) -> None:
        if self.fig is not None:
            self.pdf.savefig(self.fig)
            plt.close(self.fig)
            self.fig = None

    def heading(self, text: str, size: float) -> None:
        self._room(4 * self.LINE)
        self.y -= self.LINE * size / 8
        self.fig.text(0.06, self.y, text, fontsize=size, fontweight="bold", va="top")
        self.y -= self.LINE * size / 7

    def paragraph(self, text: str, colour: str) -> None:
        lines = [ln for para in str(text).splitlines() for ln in (textwrap.wrap(para, WRAP_CHARS) or [""])]
        for start in range(0, len(lines), 40):
            chunk = lines[start:start + 40]
            self._room(self.LINE * (len(chunk) + 1))
            self.fig.text(0.06, self.y, "\n".join(chunk), fontsize=8.5, color=colour, va="top", linespacing=1.35)
            self.y -= self.LINE * (len(chunk) + 0.8)

    def table(self, cells: pd.DataFrame, caption: str) -> None:
        header = [str(c) for c in cells.columns]
        rows = cells.to_numpy().tolist() or [["(no rows)"] + [""] * (len(header) - 1)]
        for start in range(0, len(rows), ROWS_PER_PAGE):
            chunk = rows[start:start + ROWS_PER_PAGE]
            height = self.LINE * 1.25 * (len(chunk) + 1)
            self._room(height + 2 * self.LINE)
            label = caption if start == 0 else f"{caption} (continued)"
            if label:
                self.fig.text(0.06, self.y, label, fontsize=8.5, fontweight="bold", va="top")
                self.y -= 1.5 * self.LINE
            ax = self.fig.add_axes((0.06, self.y - height, 0.88, height))
            ax.set_axis_off()
            # columns as wide as their longest text (fractions of the table width)
            chars = [max(len(str(v)) for v in col) + 2 for col in zip(header, *chunk)]
            tbl = ax.table(cellText=chunk, colLabels=header, loc="upper left", cellLoc="left",
                           bbox=(0, 0, 1, 1), colWidths=[c / sum(chars) for c in chars])
            tbl.auto_set_font_size(False)
            tbl.set_fontsize(6.5 if len(header) > 6 else 7.5)
            for (r, _), cell in tbl.get_celld().items():
                cell.set_edgecolor("#cccccc")
                cell.set_linewidth(0.3)
                if r == 0:
                    cell.set_text_props(fontweight="bold")
            self.y -= height + self.LINE

    def picture(self, img, caption: str) -> None:
        h_px, w_px = img.shape[:2]
        width = 0.88
        height = min(width * (h_px / w_px) * A4_INCH[0] / A4_INCH[1], 0.75)
        self._room(height + 3 * self.LINE)
        ax = self.fig.add_axes((0.06, self.y - height, width, height))
        ax.imshow(img, interpolation="none")  # vector backends then embed the PNG as is, unresampled
        ax.set_axis_off()
        self.y -= height + 0.5 * self.LINE
        if caption:
            self.fig.text(0.06, self.y, "\n".join(textwrap.wrap(caption, WRAP_CHARS)), fontsize=8, va="top",
                          color="#444444")
            self.y -= self.LINE * (1 + len(caption) // WRAP_CHARS)
        self.y -= self.LINE

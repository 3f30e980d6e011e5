"""PDF reports: the same sections as the HTML report, on pages of one size (A4, or US Letter by option).

matplotlib writes the PDF itself (no LaTeX, no extra dependency). Layout rules:

- every page has the same size (``page_size``: ``"A4"`` 595 × 842 pt, ``"Letter"`` 612 × 792 pt), the report
  title in its header, a page number, and the ``banner`` (e.g. SIMULATED) when one is given;
- tables are typeset here (matplotlib's ``Axes.table`` neither wraps nor shrinks): the font shrinks from
  7.5 pt to 7 pt (``MIN_FONT_PT``, the floor: no text of the report is smaller) until the columns fit the
  text width, then the widest columns wrap at spaces (:func:`layout_table`, which a test checks cell by
  cell); a table whose words still do not fit is printed in parts of columns, each repeating the
  row-label columns (:func:`table_parts`, :mod:`carpet.report.wide_tables`); long tables continue on the next page with
  the header repeated;
- figures stay vector: the figure itself becomes the page canvas (moved, not rescaled, to its place under
  the text above it), so its lines and text are PDF paths and fonts; one figure per page at most, and a
  figure larger than the text area is embedded as a 300 dpi image instead;
- a heading is never left alone at the foot of a page: it moves to the next page with the start of what
  follows it (a table caption and its first rows, a paragraph's first lines, or the whole figure).
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages

from carpet import __version__
from carpet.report import format as fmt
from carpet.report.style import PRINT_DPI, journal_style
from carpet.report.wide_tables import column_groups, key_columns, part_caption

PAGE_SIZES = {"A4": (8.27, 11.69), "Letter": (8.5, 11.0)}
A4_INCH = PAGE_SIZES["A4"]
ROWS_PER_PAGE = 34
MARGIN_IN = 0.5  # left/right text margin (inches)
TOP_IN, BOTTOM_IN = 0.8, 0.7  # text area below the header and above the page number
MIN_FONT_PT = 7.0  # the smallest text of a report (tables, captions, page headers)
TABLE_FONT_SIZES = (7.5, MIN_FONT_PT)
CELL_PAD_PT = 4.0


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
    page_size: str = "A4"

    def __post_init__(self):
        if self.page_size not in PAGE_SIZES:
            raise ValueError(f"page_size must be one of {sorted(PAGE_SIZES)}, got {self.page_size!r}")

    def section(self, title: str) -> "PdfReport":
        self.blocks.append(("section", title, ""))
        return self

    def text(self, text: str) -> "PdfReport":
        self.blocks.append(("text", text, ""))
        return self

    def note(self, text: str) -> "PdfReport":
        self.blocks.append(("note", text, ""))
        return self

    def table(self, df: pd.DataFrame, caption: str = "", float_format: str | None = None) -> "PdfReport":
        cells = fmt.cells(df, float_format)
        self.blocks.append(("table", cells, caption))
        return self

    def figure(self, fig, caption: str = "") -> "PdfReport":
        """Add a matplotlib figure, drawn as vector graphics when the PDF is written.

        The report keeps the figure and moves it onto its page in :meth:`write` (the caller may close it
        after :meth:`write`; closing it before makes the figure empty).
        """
        self.blocks.append(("figure", fig, caption))
        return self

    def image(self, png: bytes | str | Path, caption: str = "") -> "PdfReport":
        """Add a PNG image (bytes or a file), e.g. a figure already written to disk."""
        source = io.BytesIO(png) if isinstance(png, bytes) else png
        self.blocks.append(("image", mpimg.imread(source, format="png"), caption))
        return self

    def write(self, path: str | Path) -> Path:
        """Lay the blocks out on pages of ``page_size`` and write the PDF; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"Title": self.title, "Creator": f"carpet {__version__}", **self.metadata}
        with journal_style(), PdfPages(path, metadata=meta) as pdf:
            page = _Page(self, pdf)
            page.heading(self.title, size=15)
            if self.subtitle:
                page.paragraph(self.subtitle, colour="#555555")
            for k, (kind, content, caption) in enumerate(self.blocks):
                if kind == "section":
                    page.heading(content, size=12, keep=page.first_height(self.blocks[k + 1:k + 2]))
                elif kind in ("text", "note"):
                    page.paragraph(content, colour="#8a5a00" if kind == "note" else "#1a1a1a")
                elif kind == "table":
                    page.table(content, caption)
                elif kind == "figure":
                    page.vector_figure(content, caption)
                else:
                    page.picture(content, caption)
            page.finish()
        return path


# ---------------------------------------------------------------------------------------------------------------
# table layout (pure: measured text widths in, font size, column widths and wrapped lines out)
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class TableLayout:
    """How a table is typeset: ``font_size`` (pt), ``widths`` (pt per column), ``lines`` per cell
    (header row first), and the row heights (pt)."""

    font_size: float
    widths: list[float]
    lines: list[list[list[str]]]
    heights: list[float]


def text_width_pt(text: str, size: float, bold: bool = False) -> float:
    """Width of ``text`` in points at font ``size`` in carpet's font (measured by matplotlib's Agg renderer;
    glyph widths scale with the size, so one measurement serves every size)."""
    return _width_100pt(str(text), plt.rcParams["font.family"][0], bold) * size / 100.0


@functools.lru_cache(maxsize=65536)
def _width_100pt(text: str, family: str, bold: bool) -> float:
    """Measured at 100 pt: at 10 pt Agg rounds (hints) every glyph advance to whole pixels, which made a
    line of 8.5 pt text 1.5% (up to 10 pt) wider in the PDF than measured."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    global _RENDERER
    if _RENDERER is None:
        _RENDERER = RendererAgg(10, 10, 72)  # 72 dpi: pixels are points
    w, _, _ = _RENDERER.get_text_width_height_descent(text, FontProperties(family=family, size=100,
                                                                                 weight="bold" if bold else "normal"),
                                                    ismath=False)
    return float(w)


_RENDERER = None


def _wrap(text: str, width: float, size: float, bold: bool = False) -> list[str]:
    """Greedy word wrap of ``text`` to ``width`` points; a word wider than a line is split by characters.
    A line's leading spaces (indented JSON) are kept on its first piece."""
    out = []
    for para in str(text).split("\n"):
        line, indent = "", para[:len(para) - len(para.lstrip(" "))]
        for word in para.lstrip(" ").split(" "):
            candidate = f"{line} {word}" if line else indent + word
            indent = ""
            if text_width_pt(candidate, size, bold) <= width:
                line = candidate
                continue
            if line:
                out.append(line)
            while len(word) > 1 and text_width_pt(word, size, bold) > width:
                cut = 1
                while cut < len(word) and text_width_pt(word[:cut + 1], size, bold) <= width:
                    cut += 1
                out.append(word[:cut])
                word = word[cut:]
            line = word
        out.append(line)
    return out


def table_parts(header: list[str], rows: list[list[str]], width_pt: float) -> list[tuple[list[int], TableLayout]]:
    """Typeset a table in ``width_pt`` as one or more parts: ``(column indices, layout)`` per part.

    One part when the columns fit at the floor size ``MIN_FONT_PT`` wrapped at their longest words;
    otherwise parts of columns, each starting with the row-label columns (:func:`key_columns`), cut where the
    cells need not wrap when that costs at most one more part (:func:`column_groups`).
    """
    table = [list(map(str, header)), *[[str(v) for v in r] for r in rows]]
    def need(c: int, wrapped: bool) -> float:  # the header may wrap at its spaces either way
        return max(text_width_pt(w, MIN_FONT_PT, bold=r == 0) + 2 * CELL_PAD_PT + 0.5
                   for r, row in enumerate(table) for w in (row[c].split(" ") if wrapped or r == 0 else [row[c]]))

    parts = []
    for cols in column_groups([need(c, True) for c in range(len(header))], width_pt, key=key_columns(header),
                              natural=[need(c, False) for c in range(len(header))]):
        parts.append((cols, layout_table([table[0][c] for c in cols], [[r[c] for c in cols] for r in table[1:]],
                                         width_pt)))
    return parts


def layout_table(header: list[str], rows: list[list[str]], width_pt: float) -> TableLayout:
    """Fit a table into ``width_pt``: shrink the font (7.5 → 7 pt) first, then wrap the widest columns.

    Every returned line of a cell is at most its column's width minus the cell padding (``CELL_PAD_PT``
    on each side), so no text crosses into the next column.
    """
    table = [list(map(str, header)), *[[str(v) for v in r] for r in rows]]
    n_cols = len(header)

    def width(text: str, size: float, row: int) -> float:  # the header row is set in bold
        return text_width_pt(text, size, bold=row == 0) + 2 * CELL_PAD_PT + 0.5  # 0.5 pt: rounding slack

    for size in TABLE_FONT_SIZES:
        natural = [max(width(row[c], size, r) for r, row in enumerate(table)) for c in range(n_cols)]
        if sum(natural) <= width_pt:
            widths = natural  # natural width, left-aligned
            break
    else:
        size = TABLE_FONT_SIZES[-1]
        words = [max(width(w, size, r) for r, row in enumerate(table) for w in row[c].split(" "))
                 for c in range(n_cols)]
        widths = list(natural)
        # narrow the widest column step by step, never below its longest word (unless all are at it)
        while sum(widths) > width_pt + 1e-6:
            c = max(range(n_cols), key=lambda j: widths[j] - words[j])
            if widths[c] - words[c] <= 0.5:
                scale = width_pt / sum(widths)  # even the words do not fit: split them
                widths = [w * scale for w in widths]
                break
            widths[c] = max(words[c], widths[c] - (sum(widths) - width_pt))
    lines = [[_wrap(row[c], widths[c] - 2 * CELL_PAD_PT, size, bold=r == 0) for c in range(n_cols)]
             for r, row in enumerate(table)]
    line_h = size * 1.25
    heights = [max(len(cell) for cell in row) * line_h + 3.0 for row in lines]
    return TableLayout(size, widths, lines, heights)


# ---------------------------------------------------------------------------------------------------------------
# pages
# ---------------------------------------------------------------------------------------------------------------
class _Page:
    """A cursor over pages: records what to draw top to bottom (in points from the top of the page) and
    draws it when the page is full, on a fresh figure or on the one figure the page carries."""

    LINE_PT = 12.0

    def __init__(self, report: PdfReport, pdf: PdfPages):
        self.report, self.pdf = report, pdf
        self.size_in = PAGE_SIZES[report.page_size]
        self.w_pt, self.h_pt = self.size_in[0] * 72, self.size_in[1] * 72
        self.left_pt, self.text_w_pt = MARGIN_IN * 72, self.w_pt - 2 * MARGIN_IN * 72
        self.top_pt, self.bottom_pt = TOP_IN * 72, self.h_pt - BOTTOM_IN * 72
        self.ops: list = []
        self.adopted = None
        self.y = None  # points from the top; None: no page open
        self.number = 0

    # ---- page bookkeeping ---------------------------------------------------------------------------------
    def _new(self) -> None:
        self.finish()
        self.number += 1
        self.y = self.top_pt

    def _room(self, height_pt: float) -> None:
        if self.y is None or self.y + height_pt > self.bottom_pt:
            self._new()

    def _text(self, x_pt, y_pt, text, **kw) -> None:
        self.ops.append(("text", x_pt, y_pt, text, kw))

    def _rule(self, x0_pt, x1_pt, y_pt, lw=0.6) -> None:
        self.ops.append(("rule", x0_pt, x1_pt, y_pt, lw))

    def finish(self) -> None:
        if self.y is None:
            return
        fig = self.adopted if self.adopted is not None else plt.figure(figsize=self.size_in)
        W, H = self.w_pt, self.h_pt
        fig.text(self.left_pt / W, 1 - 0.4 * 72 / H, self.report.title, fontsize=7, color="#777777")
        fig.text(1 - self.left_pt / W, 0.35 * 72 / H, f"{self.number}", fontsize=7, color="#777777", ha="right")
        if self.report.banner:
            fig.text(1 - self.left_pt / W, 1 - 0.4 * 72 / H, self.report.banner, fontsize=8, color="#D55E00",
                     ha="right", fontweight="bold")
        for op in self.ops:
            if op[0] == "text":
                _, x, y, text, kw = op
                fig.text(x / W, 1 - y / H, text, va="top", **kw)
            elif op[0] == "image":
                _, img, x, y, w, h = op
                ax = fig.add_axes((x / W, 1 - (y + h) / H, w / W, h / H))
                ax.imshow(img, interpolation="none")  # the PNG embedded as is, unresampled
                ax.set_axis_off()
            else:
                _, x0, x1, y, lw = op
                fig.add_artist(plt.Line2D([x0 / W, x1 / W], [1 - y / H, 1 - y / H], lw=lw, color="#333333",
                                          transform=fig.transFigure))
        with plt.rc_context({"savefig.bbox": "standard"}):  # the whole page (journal_style crops "tight")
            self.pdf.savefig(fig)
        plt.close(fig)
        self.ops, self.adopted, self.y = [], None, None

    # ---- heights, for keeping a heading with what follows -------------------------------------------------
    def first_height(self, blocks) -> float:
        """Points needed by the start of the next block (0 when there is none)."""
        if not blocks:
            return 0.0
        kind, content, caption = blocks[0]
        if kind in ("text", "note"):
            return self.LINE_PT * min(3, len(self._lines(content)))
        if kind == "table":
            _, layout = table_parts(list(content.columns), content.to_numpy().tolist(), self.text_w_pt)[0]
            whole = _table_height(layout)
            # a table that fits on a page moves whole to the next one (see table): the heading goes with it
            return whole if whole <= self.bottom_pt - self.top_pt else 1.5 * self.LINE_PT + sum(layout.heights[:4])
        if kind == "figure":
            return self._figure_height(content) + self.LINE_PT
        if kind == "image":
            return min(0.75 * (self.bottom_pt - self.top_pt), 200.0)
        return 2 * self.LINE_PT

    # ---- blocks -------------------------------------------------------------------------------------------
    def heading(self, text: str, size: float, keep: float = 0.0) -> None:
        lines = _wrap(text, self.text_w_pt, size, bold=True)
        height = size * (0.6 + 1.3 * len(lines))
        self._room(height + keep)
        self.y += size * 0.6
        self._text(self.left_pt, self.y, "\n".join(lines), fontsize=size, fontweight="bold", linespacing=1.1)
        self.y += size * 1.3 * len(lines)

    def _lines(self, text: str) -> list[str]:
        return _wrap(text, self.text_w_pt, 8.5)

    def paragraph(self, text: str, colour: str) -> None:
        lines = self._lines(text)
        per_page = int((self.bottom_pt - self.top_pt) / self.LINE_PT) - 1
        for start in range(0, len(lines), per_page):
            chunk = lines[start:start + per_page]
            self._room(self.LINE_PT * min(len(chunk), 3))
            room = int((self.bottom_pt - self.y) / self.LINE_PT)
            chunk, rest = chunk[:room], chunk[room:]
            self._text(self.left_pt, self.y, "\n".join(chunk), fontsize=8.5, color=colour, linespacing=1.35)
            self.y += self.LINE_PT * (len(chunk) + 0.6)
            if rest:
                self.paragraph("\n".join(rest), colour)

    def table(self, cells: pd.DataFrame, caption: str) -> None:
        header = [str(c) for c in cells.columns]
        rows = cells.to_numpy().tolist() or [["(no rows)"] + [""] * (len(header) - 1)]
        parts = table_parts(header, rows, self.text_w_pt)
        for k, (cols, layout) in enumerate(parts, 1):
            self._table_part(layout, caption if len(parts) == 1 else
                             part_caption(caption, k, len(parts), [header[c] for c in cols]))

    def _table_part(self, layout: TableLayout, caption: str) -> None:
        head_h, body = layout.heights[0], list(zip(layout.lines[1:], layout.heights[1:]))
        whole = _table_height(layout)
        if self.y is not None and self.y + whole > self.bottom_pt and whole <= self.bottom_pt - self.top_pt:
            self._new()  # a table that fits on one page is not split
        start, first = 0, True
        while start < len(body):
            label = caption if first else f"{caption} (continued)"
            cap_lines = _wrap(label, self.text_w_pt, 8.5, bold=True) if label else []  # measured, not guessed
            cap_h = self.LINE_PT * len(cap_lines) + (4 if cap_lines else 0)
            self._room(cap_h + head_h + body[start][1] + 4)
            if cap_lines:
                self._text(self.left_pt, self.y, "\n".join(cap_lines), fontsize=8.5, fontweight="bold")
                self.y += cap_h
            self._rule(self.left_pt, self.left_pt + sum(layout.widths), self.y, lw=0.8)
            self._row(layout, layout.lines[0], bold=True)
            self._rule(self.left_pt, self.left_pt + sum(layout.widths), self.y, lw=0.5)
            count = 0
            while start < len(body) and count < ROWS_PER_PAGE and self.y + body[start][1] <= self.bottom_pt:
                self._row(layout, body[start][0])
                start, count = start + 1, count + 1
            self._rule(self.left_pt, self.left_pt + sum(layout.widths), self.y, lw=0.8)
            self.y += self.LINE_PT
            first = False
            if start < len(body):
                self._new()

    def _row(self, layout: TableLayout, row_lines: list[list[str]], bold: bool = False) -> None:
        x = self.left_pt
        height = max(len(c) for c in row_lines) * layout.font_size * 1.25 + 3.0
        for width, lines in zip(layout.widths, row_lines):
            self._text(x + CELL_PAD_PT, self.y + 1.5, "\n".join(lines), fontsize=layout.font_size,
                       linespacing=1.25 / 1.2, **({"fontweight": "bold"} if bold else {}))
            x += width
        self.y += height

    def _figure_height(self, fig) -> float:
        fig.canvas.draw()
        box = fig.get_tightbbox(fig.canvas.get_renderer())
        return box.height * 72

    def vector_figure(self, fig, caption: str) -> None:
        """Move ``fig`` (unscaled) onto the page under what is already there; the figure becomes the page."""
        fig.canvas.draw()
        box = fig.get_tightbbox(fig.canvas.get_renderer())  # inches
        w_pt, h_pt = box.width * 72, box.height * 72
        cap_lines = _wrap(caption, self.text_w_pt, 8) if caption else []
        if w_pt > self.text_w_pt + 1 or h_pt + self.LINE_PT * len(cap_lines) > self.bottom_pt - self.top_pt:
            buf = io.BytesIO()  # larger than a page: a 300 dpi image, scaled to fit
            fig.savefig(buf, format="png", dpi=PRINT_DPI, bbox_inches="tight")
            plt.close(fig)
            self.picture(mpimg.imread(io.BytesIO(buf.getvalue()), format="png"), caption)
            return
        self._room(h_pt + self.LINE_PT * (len(cap_lines) + 1))
        if self.adopted is not None:
            self._new()
        x_pt = self.left_pt + (self.text_w_pt - w_pt) / 2
        _move_figure(fig, box, self.size_in, x_pt / 72, (self.h_pt - self.y - h_pt) / 72)
        self.adopted = fig
        self.y += h_pt + 4
        if cap_lines:
            self._text(self.left_pt, self.y, "\n".join(cap_lines), fontsize=8, color="#444444")
            self.y += self.LINE_PT * len(cap_lines)
        self.y += self.LINE_PT

    def picture(self, img, caption: str) -> None:
        h_px, w_px = img.shape[:2]
        width = self.text_w_pt
        height = min(width * h_px / w_px, 0.75 * (self.bottom_pt - self.top_pt))
        width = height * w_px / h_px
        cap_lines = _wrap(caption, self.text_w_pt, 8) if caption else []
        self._room(height + self.LINE_PT * (len(cap_lines) + 1))
        self.ops.append(("image", img, self.left_pt, self.y, width, height))
        self.y += height + 4
        if cap_lines:
            self._text(self.left_pt, self.y, "\n".join(cap_lines), fontsize=8, color="#444444")
            self.y += self.LINE_PT * len(cap_lines)
        self.y += self.LINE_PT


def _table_height(layout: TableLayout) -> float:
    """Points a table part takes on one page: its caption (up to two lines), rows and rules."""
    return 1.5 * _Page.LINE_PT * 2 + sum(layout.heights) + 8


def _move_figure(fig, box, page_in, x_in: float, y_in: float) -> None:
    """Resize ``fig`` to the page and move its content (tight box ``box``, inches) so that the box's lower-left
    corner sits at (``x_in``, ``y_in``) — nothing is rescaled, so fonts and line widths keep their size."""
    from matplotlib.transforms import Bbox

    old_w, old_h = fig.get_size_inches()
    dx, dy = x_in - box.x0, y_in - box.y0
    dpi = fig.dpi
    legends = [(leg, leg.get_bbox_to_anchor().frozen()) for leg in fig.legends]  # display units, old size
    texts = [t for t in [*fig.texts, getattr(fig, "_suptitle", None)] if t is not None
             and t.get_transform() == fig.transSubfigure]
    text_pos = [(t, t.get_position()) for t in texts]
    axes = [(ax, ax.get_position(original=True).frozen()) for ax in fig.axes]
    fig.set_size_inches(*page_in, forward=False)
    new_w, new_h = page_in
    for ax, pos in axes:
        ax.set_position([(pos.x0 * old_w + dx) / new_w, (pos.y0 * old_h + dy) / new_h,
                         pos.width * old_w / new_w, pos.height * old_h / new_h])
    for t, (x, y) in text_pos:
        t.set_position(((x * old_w + dx) / new_w, (y * old_h + dy) / new_h))
    for leg, bb in legends:
        inches = Bbox([[bb.x0 / dpi + dx, bb.y0 / dpi + dy], [bb.x1 / dpi + dx, bb.y1 / dpi + dy]])
        leg.set_bbox_to_anchor(inches, transform=fig.dpi_scale_trans)

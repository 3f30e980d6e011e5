"""The report writer: each table and figure to its file and to both reports (HTML and PDF).

Files a spreadsheet or R opens without thinking:

- ``<stem>.csv``: a header row, then data; no comment lines (R's ``read.csv`` and pandas read it as is).
  When the data are simulated, every CSV ends with a ``simulated`` column holding ``TRUE`` on every row —
  it travels with the file when the file is copied alone. True/false columns are written ``TRUE``/``FALSE``
  so that R reads them as logical (and pandas as bool). ``results.json`` says
  ``"simulated": true`` and the reports carry the banner.
- ``figures/<stem>.png`` (300 dpi), ``.pdf`` and ``.svg`` (vector) per figure.
- ``tables.xlsx`` (with ``xlsx=True``): a README sheet (title, simulated, carpet version, what each sheet
  is, provenance), then one sheet per table in report order, as the reports show it (labels, numbers as
  numbers in the report's decimals; :mod:`carpet.report.workbook`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from carpet.analyze.labels import Labels
from carpet.io.tables import write_csv

SIMULATED_BANNER = "SIMULATED DATA — not patients"


class _Writer:
    """Writes each table and figure to its file and to both reports (HTML and PDF)."""

    def __init__(self, out: Path, title: str, subtitle: str, simulated: bool, labels: Labels | None = None,
                 page_size: str = "A4"):
        from carpet.report.html import Report
        from carpet.report.pdf import PdfReport

        self.out, self.simulated, self.files, self.title = out, simulated, {}, title
        self.labels = labels or Labels()
        self.tables: dict[str, pd.DataFrame] = {}
        self.shown: dict[str, tuple[pd.DataFrame, str]] = {}
        self.figure_checks: dict[str, dict] = {}
        banner = "SIMULATED" if simulated else ""
        self.html = Report(title, subtitle=(f"{SIMULATED_BANNER}. " if simulated else "") + subtitle)
        self.pdf = PdfReport(title, subtitle=self.html.subtitle, banner=banner, page_size=page_size,
                             metadata=({"Subject": "SIMULATED DATA (not patients)", "Keywords": "SIMULATED"}
                                       if simulated else {}))
        (out / "figures").mkdir(parents=True, exist_ok=True)

    def section(self, title: str) -> None:
        self.html.section(title)
        self.pdf.section(title)

    def text(self, text: str) -> None:
        self.html.text(text)
        self.pdf.text(text)

    def note(self, text: str) -> None:
        self.html.note(text)
        self.pdf.note(text)

    def csv(self, df: pd.DataFrame, stem: str) -> str:
        """Write ``df`` to ``<stem>.csv`` (with the ``simulated`` column when simulated) and to the workbook;
        not shown in the reports. Returns the file name."""
        path = self.out / f"{stem}.csv"
        data = df.assign(simulated=True) if self.simulated else df
        write_csv(_r_logicals(data), path)
        self.files[path.name] = path
        self.tables[stem] = data
        return path.name

    def table(self, df: pd.DataFrame, stem: str, caption: str, display: pd.DataFrame | None = None) -> str:
        """Write ``df`` to ``<stem>.csv`` and show it (or the more readable ``display``) in the reports."""
        path = self.out / self.csv(df, stem)
        shown = df if display is None else display
        self.shown[stem] = (shown, caption)  # the workbook's sheet: the table as the reports show it
        self.html.table(shown, caption=f"{caption} ({path.name})")
        self.pdf.table(shown, caption=f"{caption} ({path.name})")
        return path.name

    def figure(self, fig, stem: str, caption: str) -> list[str]:
        """Write the figure as PNG (300 dpi), PDF and SVG; embed it in both reports; return the file names."""
        from carpet.report.style import KM_AXES_ID, legend_overlaps_data, save_figure, x_axis_short_of_data

        # a legend over data, a survival axis ending before its curves: defects the reader sees; every figure
        # is checked as drawn, the result kept
        self.figure_checks[stem] = {"legend_covers_data": legend_overlaps_data(fig),
                                    "x_axis_short_of_data": x_axis_short_of_data(fig),
                                    "survival_axes": sum(ax.get_gid() == KM_AXES_ID for ax in fig.axes),
                                    "texts": _figure_texts(fig)}
        if self.simulated:  # under the drawn content's right edge (the figure's corner may be far from it)
            fig.canvas.draw()
            box = fig.get_tightbbox(fig.canvas.get_renderer()).transformed(fig.dpi_scale_trans)
            fig.text(box.x1 / fig.bbox.width, (box.y0 - 2) / fig.bbox.height, "SIMULATED", ha="right",
                     va="top", fontsize=7, color="#D55E00", fontweight="bold")
        paths = save_figure(fig, self.out / "figures" / stem)
        names = [f"figures/{p.name}" for p in paths]
        self.files.update({name: p for name, p in zip(names, paths)})
        # The HTML embeds the figure as SVG (or the PNG just written); the PDF report draws it itself (vector).
        self.html.figure(fig, caption, png=paths[0].read_bytes(), close=False)
        self.pdf.figure(fig, caption)  # the PDF report closes the figure once it has drawn it
        return names

    def workbook(self, path: Path) -> Path:
        """Every table written so far as a sheet of an XLSX workbook, as the reports show it (raw when only
        written as CSV), after a README sheet (:func:`carpet.report.workbook.write_workbook`)."""
        from carpet import __version__
        from carpet.report.workbook import Sheet, write_workbook

        sheets = [Sheet(stem, *self.shown[stem], csv=f"{stem}.csv") if stem in self.shown else
                  Sheet(stem, table, csv=f"{stem}.csv", shown=False) for stem, table in self.tables.items()]
        about = {"title": self.title, "simulated": "TRUE — " + SIMULATED_BANNER if self.simulated else "FALSE",
                 "carpet_version": __version__}
        write_workbook(path, sheets, about, provenance=_jsonable(self.html.provenance))
        self.files[path.name] = path
        return path


def _figure_texts(fig) -> dict[str, list[str]]:
    """The text a figure shows (titles, axis labels, legend entries, other text such as numbers at risk and
    flow counts; tick labels left out), kept in results.json so that a machine can check its words for raw
    column names and its numbers against the results."""
    from matplotlib.text import Text

    out: dict[str, list[str]] = {"title": [], "axis label": [], "legend": [], "text": []}
    seen: set[int] = set()

    def add(kind: str, texts) -> None:
        for t in texts:
            seen.add(id(t))
            word = t.get_text().strip()
            if word and t.get_visible() and word not in out[kind]:
                out[kind].append(word)

    for ax in fig.axes:
        seen.update(id(t) for t in [*ax.get_xticklabels(), *ax.get_yticklabels()])  # the scale, not results
        add("title", [ax.title, ax._left_title, ax._right_title])
        add("axis label", [ax.xaxis.label, ax.yaxis.label])
        if ax.get_legend() is not None:
            add("legend", ax.get_legend().get_texts())
    for legend in fig.legends:
        add("legend", legend.get_texts())
    add("text", [t for t in fig.findobj(Text) if id(t) not in seen])
    return out


def _r_logicals(df: pd.DataFrame) -> pd.DataFrame:
    """True/false columns as ``TRUE``/``FALSE`` (missing: empty): R's read.csv reads those as logical, and
    pandas as bool; Python's ``True`` would stay text in R."""
    out = df.copy()
    for column in out.columns:
        if pd.api.types.is_bool_dtype(out[column]):
            out[column] = out[column].map({True: "TRUE", False: "FALSE"})
    return out


def _jsonable(obj):
    """Plain JSON: numpy scalars as numbers, NaN/NA as null, dates as ISO text."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, (pd.Timestamp, np.datetime64)):
        return str(obj)
    return str(obj)

"""One journal look for every carpet figure (matplotlib, no seaborn).

Colour-blind-safe palette (Okabe–Ito), sans-serif 8–9 pt, no top/right spines, 300 dpi PNG.
"""

from __future__ import annotations

import io
from contextlib import contextmanager

import matplotlib

matplotlib.use("Agg")  # reports are written headless; never open a window
import matplotlib.pyplot as plt  # noqa: E402

PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

RC = {
    "font.family": "DejaVu Sans",
    "font.size": 8.5,
    "axes.titlesize": 9.5,
    "axes.labelsize": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.8,
    "xtick.direction": "out",
    "ytick.direction": "out",
    "legend.frameon": False,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,  # embed TrueType so journals accept the PDF
    "text.parse_math": False,  # titles and group values are user text: '$' is a dollar, not mathtext
    "figure.max_open_warning": 0,  # a report keeps its figures open until its PDF is written
}


@contextmanager
def journal_style():
    """Context manager applying carpet's figure style."""
    with plt.rc_context(RC):
        yield


def figure_png_bytes(fig, dpi: int = 200) -> bytes:
    """Render a figure to PNG bytes and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


#: Formats written beside every figure: PNG for screens and Word, PDF and SVG (vector) for print.
FIGURE_FORMATS = ("png", "pdf", "svg")
PRINT_DPI = 300


def save_figure(fig, stem, formats=FIGURE_FORMATS, dpi: int = PRINT_DPI) -> list:
    """Write ``fig`` as ``<stem>.png`` (``dpi``, ≥ 300 for print) and vector ``<stem>.pdf`` / ``<stem>.svg``.

    Returns the paths written, in ``formats`` order. The figure is left open (the caller closes it).
    """
    from pathlib import Path

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in formats:
        path = stem.with_name(f"{stem.name}.{ext}")
        with plt.rc_context({"svg.fonttype": "none"}):  # SVG text stays text (editable, searchable)
            fig.savefig(path, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    return paths


def data_paths(ax) -> list:
    """Everything data-like drawn in ``ax`` as display-space paths: ``(path, filled)`` pairs.

    Lines (with their step draw-style applied), marker-only lines as their points, and filled
    collections (CI bands, patches of a Sankey) as filled paths. Used to keep legends off the data.
    """
    import numpy as np
    from matplotlib import cbook
    from matplotlib.path import Path as MplPath

    out = []
    for line in ax.get_lines():
        if not line.get_visible():
            continue
        x, y = (np.asarray(v, float) for v in line.get_data())
        if len(x) == 0:
            continue
        style = line.get_drawstyle()
        if style in cbook.STEP_LOOKUP_MAP and style != "default" and len(x) > 1:
            x, y = cbook.STEP_LOOKUP_MAP[style](x, y)
        xy = line.get_transform().transform(np.column_stack([x, y]))
        if line.get_linestyle() in ("None", "none", "", " "):
            out += [(MplPath(np.array([p, p])), False) for p in xy]  # markers: points
        else:
            out.append((MplPath(xy), False))
    for coll in ax.collections:
        transform = coll.get_transform()
        for path in coll.get_paths():
            out.append((transform.transform_path(path), True))
    for patch in ax.patches:
        out.append((patch.get_transform().transform_path(patch.get_path()), True))
    return out


def overlaps_data(ax, bbox, pad_px: float = 2.0) -> bool:
    """True when the display-space ``bbox`` (e.g. a legend's window extent) touches data drawn in ``ax``."""
    grown = bbox.expanded((bbox.width + 2 * pad_px) / max(bbox.width, 1e-9),
                          (bbox.height + 2 * pad_px) / max(bbox.height, 1e-9))
    for path, filled in data_paths(ax):
        if len(path.vertices) and path.intersects_bbox(grown, filled=filled):
            return True
        if len(path.vertices) and grown.contains(*path.vertices[0]):
            return True
    return False


def legend_overlaps_data(fig) -> list[str]:
    """Texts of the legends of ``fig`` that cover data in any of its axes (empty when none does)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    bad = []
    for legend in legends:
        box = legend.get_window_extent(renderer)
        if any(overlaps_data(ax, box) for ax in fig.axes):
            bad.append(" | ".join(t.get_text() for t in legend.get_texts()))
    return bad


#: gid of the axes that hold survival curves (set by km_plot), checked by :func:`x_axis_short_of_data`
KM_AXES_ID = "km-curves"


def x_axis_short_of_data(fig) -> list[str]:
    """Survival axes of ``fig`` whose x axis (its upper limit, or its last labelled tick) ends before the last
    time drawn; each as ``"<title>: axis to A, last tick T, data to D"`` (empty when every axis reaches).

    A reader takes the last tick for the end of follow-up, so both must reach the last step or censor mark.
    """
    import numpy as np

    bad = []
    for ax in fig.axes:
        if ax.get_gid() != KM_AXES_ID:
            continue
        ends = [np.nanmax(np.asarray(line.get_xdata(), float)) for line in ax.get_lines()
                if line.get_visible() and len(line.get_xdata())]
        if not ends:
            continue
        data_end, axis_end = max(ends), ax.get_xlim()[1]
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= axis_end]
        last_tick = max(ticks) if ticks else -np.inf
        if axis_end < data_end or last_tick < data_end:
            bad.append(f"{ax.get_title(loc='left') or ax.get_title()}: axis to {axis_end:g}, last tick "
                       f"{last_tick:g}, data to {data_end:g}")
    return bad


def place_legend(ax, handles, labels, *, candidates=("upper right", "lower left", "lower right", "upper left",
                                                     "center right", "center left", "lower center",
                                                     "upper center"), **kwargs):
    """A legend inside ``ax`` where it covers no data, else above the axes (outside); returns the legend.

    matplotlib's ``loc='best'`` minimises overlap but accepts some; a journal figure accepts none, so each
    candidate position is checked against the drawn lines, markers and bands (:func:`overlaps_data`).
    """
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for loc in candidates:
        legend = ax.legend(handles, labels, loc=loc, **kwargs)
        if not overlaps_data(ax, legend.get_window_extent(renderer)):
            return legend
        legend.remove()
    # no free space inside: above the plotting area, and the axes title (if any) lifted above the legend
    legend = ax.legend(handles, labels, loc="lower left", bbox_to_anchor=(0.0, 1.01), borderaxespad=0.2,
                       **kwargs)
    fig.canvas.draw()
    height_pt = legend.get_window_extent(fig.canvas.get_renderer()).height * 72 / fig.dpi
    for loc in ("left", "center", "right"):
        if ax.get_title(loc):
            ax.set_title(ax.get_title(loc), loc=loc, fontweight="bold", pad=height_pt + 6)
    return legend

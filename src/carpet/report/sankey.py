"""Two-column Sankey (alluvial) figure of state transitions, e.g. EMD/PMD status baseline → progression.

matplotlib's own ``Sankey`` draws single-flow process diagrams, not two-stage alluvia, so the ribbons
are drawn here as filled cubic Bézier bands between stacked node bars.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from carpet.report.style import PALETTE, journal_style


def sankey_figure(flows: pd.DataFrame, order: Sequence | None = None, *, left_title: str = "Baseline",
                  right_title: str = "Progression", title: str = "", gap_frac: float = 0.03,
                  figsize=(6.4, 3.8)):
    """Draw flows ``source → target`` as a two-column alluvial diagram.

    Parameters
    ----------
    flows : DataFrame
        Columns ``source, target, n`` (e.g. :attr:`carpet.stats.transitions.Transitions.flows`).
    order : sequence, optional
        Category order top to bottom on both sides (default: order of first appearance).
    gap_frac : float
        Vertical gap between nodes, as a fraction of the total count.

    Returns
    -------
    matplotlib Figure

    Notes
    -----
    Each ribbon is labelled where it leaves its source with its patients and their share of the source
    (row %): "35 (58%)" reads "35 of the 60 patients in this baseline state went here". Labels of thin
    neighbouring ribbons are pushed apart so they never overlap.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import PathPatch, Rectangle
    from matplotlib.path import Path as MplPath

    flows = flows[flows["n"] > 0]
    if order is None:
        order = list(dict.fromkeys([*flows["source"], *flows["target"]]))
    colour = {c: PALETTE[k % len(PALETTE)] for k, c in enumerate(order)}
    total = float(flows["n"].sum())
    gap = gap_frac * total
    bar_w = 0.06

    def node_spans(side: str) -> dict:
        sizes = flows.groupby(side)["n"].sum()
        spans, top = {}, total + gap * (len(order) - 1)
        for c in order:
            size = float(sizes.get(c, 0))
            if size > 0:
                spans[c] = [top - size, top]
                top -= size + gap
        return spans

    left, right = node_spans("source"), node_spans("target")
    with journal_style():
        fig, ax = plt.subplots(figsize=figsize)
        # Ribbons leave each source in target order and enter each target in source order, so no two
        # ribbons of one node cross at that node.
        next_out = {c: span[1] for c, span in left.items()}
        next_in = {c: span[1] for c, span in right.items()}
        rank = {c: k for k, c in enumerate(order)}
        source_n = flows.groupby("source")["n"].sum()
        ribbon_labels = []  # (y centre at the source, text)
        for row in flows.sort_values(["source", "target"], key=lambda s: s.map(rank)).itertuples():
            n = float(row.n)
            y0_top, y1_top = next_out[row.source], next_in[row.target]
            next_out[row.source] -= n
            next_in[row.target] -= n
            x0, x1 = bar_w, 1 - bar_w
            xm = (x0 + x1) / 2
            verts = [(x0, y0_top), (xm, y0_top), (xm, y1_top), (x1, y1_top),
                     (x1, y1_top - n), (xm, y1_top - n), (xm, y0_top - n), (x0, y0_top - n), (x0, y0_top)]
            codes = [MplPath.MOVETO, MplPath.CURVE4, MplPath.CURVE4, MplPath.CURVE4,
                     MplPath.LINETO, MplPath.CURVE4, MplPath.CURVE4, MplPath.CURVE4, MplPath.CLOSEPOLY]
            ax.add_patch(PathPatch(MplPath(verts, codes), facecolor=colour[row.source], alpha=0.45,
                                   edgecolor="none"))
            ribbon_labels.append((y0_top - n / 2, f"{int(n)} ({100 * n / source_n[row.source]:.0f}%)"))
        _label_ribbons(ax, ribbon_labels, x=bar_w + 0.015, min_gap=0.045 * (total + gap * (len(order) - 1)))
        for spans, x, ha, dx in ((left, 0, "right", -0.02), (right, 1 - bar_w, "left", bar_w + 0.02)):
            for c, (lo, hi) in spans.items():
                ax.add_patch(Rectangle((x, lo), bar_w, hi - lo, facecolor=colour[c], edgecolor="none"))
                ax.text(x + dx, (lo + hi) / 2, f"{c} (n={int(round(hi - lo))})", ha=ha, va="center")
        top = total + gap * (len(order) - 1)
        ax.text(bar_w / 2, top * 1.04, left_title, ha="center", va="bottom", fontweight="bold")
        ax.text(1 - bar_w / 2, top * 1.04, right_title, ha="center", va="bottom", fontweight="bold")
        ax.set_xlim(-0.55, 1.55)  # room for the node labels on both sides
        ax.set_ylim(0, top * 1.1)
        ax.set_axis_off()
        if title:
            ax.set_title(title)
    return fig


def _label_ribbons(ax, labels: list[tuple[float, str]], x: float, min_gap: float) -> None:
    """Write ribbon labels top to bottom, each at least ``min_gap`` (data units) below the previous one."""
    previous = float("inf")
    for y, text in sorted(labels, key=lambda v: -v[0]):
        y = min(y, previous - min_gap)
        ax.text(x, y, text, ha="left", va="center", fontsize=6.5, color="#222222")
        previous = y

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
    Each ribbon is labelled where it leaves its source with its target, patients and their share of the
    source (row %): "→ None: 35 (58%)" reads "35 of the 60 patients in this baseline state went to None".
    Labels of thin neighbouring ribbons (and of thin nodes) are stacked by their measured text height so
    they never overlap; a label pushed off its ribbon gets a leader line, and naming the target keeps it
    readable.
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
        ribbon_labels = []  # (y centre at the source, ribbon height, text)
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
            ribbon_labels.append((y0_top - n / 2, n, f"→ {row.target}: {int(n)} ({100 * n / source_n[row.source]:.0f}%)"))
        node_labels = {"left": [], "right": []}
        for side, spans, x in (("left", left, 0), ("right", right, 1 - bar_w)):
            for c, (lo, hi) in spans.items():
                ax.add_patch(Rectangle((x, lo), bar_w, hi - lo, facecolor=colour[c], edgecolor="none"))
                node_labels[side].append(((lo + hi) / 2, hi - lo, f"{c} (n={int(round(hi - lo))})"))
        top = total + gap * (len(order) - 1)
        ax.set_xlim(-0.55, 1.55)  # room for the node labels on both sides
        stacks = [_Stack(ax, node_labels["left"], x=0, dx=-0.02, ha="right"),
                  _Stack(ax, node_labels["right"], x=1, dx=0.02, ha="left"),
                  _Stack(ax, ribbon_labels, x=bar_w, dx=0.03, ha="left", fontsize=7, color="#222222")]
        # A stack taller than the nodes needs more room above them; the axes' scale changes with the limit,
        # so place again until the titles clear every label.
        ceiling = top
        for _ in range(5):
            ax.set_ylim(0, ceiling + 0.1 * top)
            highest = max(stack.place(top) for stack in stacks)
            if highest <= ceiling + 1e-9:
                break
            ceiling = highest
        ax.text(bar_w / 2, ceiling + 0.04 * top, left_title, ha="center", va="bottom", fontweight="bold")
        ax.text(1 - bar_w / 2, ceiling + 0.04 * top, right_title, ha="center", va="bottom", fontweight="bold")
        ax.set_axis_off()
        if title:
            ax.set_title(title)
    return fig


class _Stack:
    """One column of labels, each beside its band (node or ribbon end), stacked so that no two overlap.

    ``labels`` holds (band centre, band height, text) in data units. Label heights are measured with the
    figure's renderer, so the spacing holds for any font and figure size. Labels sit as close to their
    band centres as non-overlap allows (pushed down from the top, then back up from the bottom of the
    axes); a label that ends up beside another band gets a leader line to its own.
    """

    def __init__(self, ax, labels: list[tuple[float, float, str]], x: float, dx: float, ha: str, **text_kw):
        self.ax, self.x, self.x_text = ax, x, x + dx
        self.labels = sorted(labels, key=lambda v: -v[0])
        self.texts = [ax.text(self.x_text, y, text, ha=ha, va="center", **text_kw) for y, _, text in self.labels]
        self.leaders = []

    def place(self, top: float) -> float:
        """Stack the labels below ``top`` where they fit; return the upper edge of the highest label."""
        if not self.labels:
            return 0.0
        ax = self.ax
        renderer = ax.figure.canvas.get_renderer()
        per_unit = ax.transData.transform((0, 1))[1] - ax.transData.transform((0, 0))[1]  # pixels per data unit
        heights = [1.2 * t.get_window_extent(renderer).height / per_unit for t in self.texts]  # 20% leading
        ys, ceiling = [], top
        for (y, _, _), h in zip(self.labels, heights):
            ys.append(min(y, ceiling - h / 2))
            ceiling = ys[-1] - h / 2
        floor = ax.get_ylim()[0]
        for k in range(len(ys) - 1, -1, -1):
            ys[k] = max(ys[k], floor + heights[k] / 2)
            floor = ys[k] + heights[k] / 2
        for line in self.leaders:
            line.remove()
        self.leaders = []
        tip = self.x_text - 0.005 * (1 if self.x_text > self.x else -1)
        for t, (y, band, _), y_text in zip(self.texts, self.labels, ys):
            t.set_y(y_text)
            if abs(y_text - y) > band / 2:  # the label no longer sits beside its own band
                self.leaders += ax.plot([self.x, tip], [y, y_text], color="#555555", linewidth=0.5)
        return floor

"""Patient flowchart (CONSORT-like boxes): treated → progressed → refractory / relapsed, counts per group.

Drawn with matplotlib boxes and arrows, as Figure 1 of the Moffitt paper; no library draws these from counts.
"""

from __future__ import annotations

import pandas as pd

from carpet.report.style import journal_style

_BOXES = {"treated": (0.5, 0.85, "received CAR T"), "progressed": (0.5, 0.55, "progressed"),
          "refractory": (0.25, 0.2, "refractory"), "relapsed": (0.75, 0.2, "relapsed")}


def flowchart_figure(counts: pd.DataFrame, *, refractory_days: int = 60):
    """Draw the flowchart of :func:`carpet.analyze.cohort_runners` ``flowchart`` counts.

    Parameters
    ----------
    counts : DataFrame
        One row per stage (``treated, progressed, refractory, relapsed``) with ``all`` and one column per group.
    refractory_days : int
        The refractory window written in the refractory box.

    Returns
    -------
    matplotlib Figure
    """
    import matplotlib.pyplot as plt

    groups = [c for c in counts.columns if c not in ("stage", "all")]
    rows = counts.set_index("stage")
    with journal_style():
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        ax.set_axis_off()
        ax.set_xlim(0, 1)
        ax.set_ylim(0.1, 0.95)  # the boxes span about 0.13–0.92: no empty band above or below them
        boxes = []
        for stage, (x, y, words) in _BOXES.items():
            r = rows.loc[stage]
            # the per-group counts wrap between groups, so two boxes side by side stay apart
            detail = _join_lines([f"{g} {int(r[g])}" for g in groups], width=30)
            head = f"{int(r['all'])} {words}"
            if stage == "refractory":
                head += f" (≤ {refractory_days} days)"
            elif stage == "relapsed":
                head += f" (> {refractory_days} days)"
            boxes.append(ax.text(x, y, head + (f"\n({detail})" if detail else ""), ha="center", va="center",
                                 fontsize=8, bbox={"boxstyle": "round,pad=0.5", "facecolor": "white",
                                                   "edgecolor": "#333333"}))
        for _ in range(4):  # still touching (long group names): a wider figure, the boxes keep their size
            if not box_overlaps(boxes):
                break
            fig.set_size_inches(fig.get_size_inches()[0] * 1.2, fig.get_size_inches()[1])
        arrow = {"arrowstyle": "->", "color": "#333333", "lw": 0.9}
        ax.annotate("", xy=(0.5, 0.63), xytext=(0.5, 0.77), arrowprops=arrow)
        ax.annotate("", xy=(0.27, 0.29), xytext=(0.45, 0.47), arrowprops=arrow)
        ax.annotate("", xy=(0.73, 0.29), xytext=(0.55, 0.47), arrowprops=arrow)
    return fig


def box_overlaps(texts) -> list[tuple[str, str]]:
    """Pairs of boxed texts (first lines) whose boxes touch, as drawn (texts without a box are skipped)."""
    texts = [t for t in texts if t.get_bbox_patch() is not None]
    if not texts:
        return []
    fig = texts[0].figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    extents = [t.get_bbox_patch().get_window_extent(renderer) for t in texts]
    return [(texts[i].get_text().split("\n")[0], texts[j].get_text().split("\n")[0])
            for i in range(len(texts)) for j in range(i + 1, len(texts)) if extents[i].overlaps(extents[j])]


def _join_lines(pieces: list[str], width: int) -> str:
    """``pieces`` joined by ", ", a new line started between pieces (never inside one) past ``width`` chars."""
    lines: list[str] = []
    for piece in pieces:
        if lines and len(lines[-1]) + 2 + len(piece) <= width:
            lines[-1] += f", {piece}"
        else:
            lines.append(piece)
    return ",\n".join(lines)

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
        ax.set_ylim(0, 1)
        for stage, (x, y, words) in _BOXES.items():
            r = rows.loc[stage]
            detail = ", ".join(f"{g} {int(r[g])}" for g in groups)
            head = f"{int(r['all'])} {words}"
            if stage == "refractory":
                head += f" (≤ {refractory_days} days)"
            elif stage == "relapsed":
                head += f" (> {refractory_days} days)"
            ax.text(x, y, head + (f"\n({detail})" if detail else ""), ha="center", va="center", fontsize=8,
                    bbox={"boxstyle": "round,pad=0.5", "facecolor": "white", "edgecolor": "#333333"})
        arrow = {"arrowstyle": "->", "color": "#333333", "lw": 0.9}
        ax.annotate("", xy=(0.5, 0.63), xytext=(0.5, 0.77), arrowprops=arrow)
        ax.annotate("", xy=(0.27, 0.29), xytext=(0.45, 0.47), arrowprops=arrow)
        ax.annotate("", xy=(0.73, 0.29), xytext=(0.55, 0.47), arrowprops=arrow)
    return fig

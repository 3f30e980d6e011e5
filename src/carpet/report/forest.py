"""Forest plot of hazard (or odds) ratios as journals print it: one row per covariate level, point and
95% CI on a log axis, a line at 1, and the "HR (95% CI)" and p columns beside the plot.

Numbers come from :func:`carpet.stats.cox_table.cox_table` (or any table with the same columns); this
module only draws.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from carpet.report.style import PALETTE, journal_style


def forest_figure(table: pd.DataFrame, *, model: str = "multi", xlabel: str = "Hazard ratio (95% CI)",
                  title: str = "", width: float = 6.4):
    """Draw a forest plot of one model's column of a Cox table.

    Parameters
    ----------
    table : DataFrame
        ``CoxTable.table``: columns ``term, level`` and ``{model}_hr, {model}_lower, {model}_upper``, the
        printed cell ``{model}`` and ``{model}_p_text``; reference rows have ``level == "(reference)"``.
    model : {"multi", "uni"}
        Which column of the table to draw.

    Returns
    -------
    matplotlib Figure
    """
    import matplotlib.pyplot as plt

    rows = table.reset_index(drop=True)
    n = len(rows)
    hr = rows[f"{model}_hr"].to_numpy(float)
    lo, hi = rows[f"{model}_lower"].to_numpy(float), rows[f"{model}_upper"].to_numpy(float)
    shown = np.isfinite(hr) & np.isfinite(lo) & np.isfinite(hi) & (lo > 0)
    labels = [f"{t}" if not lv else (f"{t}: {lv}" if lv != "(reference)" else f"{t} (reference {r})")
              for t, lv, r in zip(rows["term"], rows["level"].fillna(""),
                                  rows.get("reference_level", pd.Series([""] * n)).fillna(""))]
    with journal_style():
        fig, ax = plt.subplots(figsize=(width, 0.9 + 0.28 * n))
        y = np.arange(n)[::-1]
        ax.hlines(y[shown], lo[shown], hi[shown], color=PALETTE[0], lw=1.2)
        ax.plot(hr[shown], y[shown], "s", color=PALETTE[0], ms=4.5)
        ax.axvline(1.0, color="0.4", lw=0.8, ls="--")
        ax.set_xscale("log")
        span = np.concatenate((lo[shown], hi[shown], [1.0]))
        nice = np.array([0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100])
        ticks = nice[(nice >= span.min() / 2.5) & (nice <= span.max() * 2.5)]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.set_yticks(y, labels)
        ax.set_ylim(-0.7, n - 0.3)
        ax.set_xlabel(xlabel)
        ax.spines["left"].set_visible(False)
        ax.tick_params(axis="y", length=0)
        for yi, cell, p in zip(y, rows[model].fillna(""), rows[f"{model}_p_text"].fillna("")):
            ax.annotate(cell, (1.02, yi), xycoords=("axes fraction", "data"), va="center", fontsize=8)
            ax.annotate(p, (1.36, yi), xycoords=("axes fraction", "data"), va="center", fontsize=8)
        ax.annotate("HR (95% CI)", (1.02, n - 0.4), xycoords=("axes fraction", "data"), fontsize=8,
                    fontweight="bold")
        ax.annotate("p", (1.36, n - 0.4), xycoords=("axes fraction", "data"), fontsize=8, fontweight="bold")
        if title:
            ax.set_title(title)
    return fig

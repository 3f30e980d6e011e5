"""Swimmer plot: one horizontal bar per patient over time, each line of therapy a coloured segment.

The salvage-after-CAR T papers draw follow-up from relapse this way (Van Oekelen et al., Blood 2022). Drawn with
matplotlib's ``barh``; no library draws swimmer plots.
"""

from __future__ import annotations

import pandas as pd

from carpet.report.style import PALETTE, journal_style


def swimmer_figure(bars: pd.DataFrame, segments: pd.DataFrame, *, max_patients: int = 40,
                   xlabel: str = "Months from progression after CAR T", title: str = ""):
    """Draw a swimmer plot.

    Parameters
    ----------
    bars : DataFrame
        One row per patient: ``patient_id``, ``end_months`` (death or last follow-up), ``died`` (bool).
    segments : DataFrame
        One row per line: ``patient_id``, ``start_months``, ``stop_months``, ``regimen_class`` and
        ``progressed_months`` (progression on that line, NaN when none).
    max_patients : int
        The longest-followed patients shown when there are more (the figure says how many of how many).

    Returns
    -------
    matplotlib Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    shown = bars.sort_values("end_months").tail(max_patients).reset_index(drop=True)
    classes = sorted(segments["regimen_class"].dropna().unique()) if len(segments) else []
    colour = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(classes)}
    with journal_style():
        fig, ax = plt.subplots(figsize=(6.2, max(2.5, 0.14 * len(shown) + 1.2)))
        ax.barh(shown.index, shown["end_months"], color="#DDDDDD", height=0.7, zorder=1)
        row = {pid: i for i, pid in enumerate(shown["patient_id"])}
        segs = segments[segments["patient_id"].isin(row)] if len(segments) else segments
        for s in segs.itertuples(index=False):
            y = row[s.patient_id]
            ax.barh(y, s.stop_months - s.start_months, left=s.start_months, height=0.7,
                    color=colour.get(s.regimen_class, "#999999"), zorder=2)
            if pd.notna(s.progressed_months):
                ax.plot([s.progressed_months] * 2, [y - 0.4, y + 0.4], color="black", lw=1.0, zorder=3)
        dead = shown[shown["died"]]
        ax.scatter(dead["end_months"], dead.index, marker="x", color="black", s=14, zorder=4)
        ax.set_yticks([])
        ax.set_ylabel(f"Patients ({len(shown)} of {len(bars)})")
        ax.set_xlabel(xlabel)
        ax.set_xlim(left=0)
        if title:
            ax.set_title(title)
        handles = [Patch(color=colour[c], label=c.replace("_", " ")) for c in classes]
        if handles:
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
        fig.tight_layout()
    return fig

"""Kaplan–Meier figure as journals print it: step curves with censor ticks, optional CI bands,
median and log-rank p in the panel, and a number-at-risk table aligned under the time axis.

Estimates come from :func:`carpet.stats.kaplan_meier` (R's survfit numbers); this module only draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from carpet.report.style import PALETTE, journal_style
from carpet.stats._results import format_p


def _fmt_months(value) -> str:
    return "NR" if value is None else f"{value:.1f}"


def km_figure(groups: Mapping[str, tuple[Sequence[float], Sequence[int]]], *, title: str = "",
              xlabel: str = "Time (months)", ylabel: str = "Survival probability",
              risk_times: Sequence[float] | None = None, conf_type: str = "log", show_ci: bool = True,
              show_p: bool = True, figsize=(4.6, 3.9)):
    """Draw KM curves for one or more groups with a number-at-risk table.

    Parameters
    ----------
    groups : mapping label -> (time, event)
        Follow-up times (any unit, matching ``xlabel``) and event indicators (1 = event) per group.
    risk_times : sequence of float, optional
        Times for the number-at-risk table and x ticks; default: 6 evenly spaced ticks.
    conf_type : {'log', 'log-log', 'plain'}
        CI transform, as in R's ``survfit``.

    Returns
    -------
    fig : matplotlib Figure
    stats : dict
        Per group ``n``, ``events``, ``median``, ``median_ci``; and ``logrank`` (statistic, df, p_value) for ≥ 2 groups.
    """
    import matplotlib.pyplot as plt

    from carpet.stats import kaplan_meier, logrank

    data = {label: (np.asarray(t, float), np.asarray(e, int)) for label, (t, e) in groups.items()}
    t_max = max(float(t.max()) for t, _ in data.values() if len(t))
    if risk_times is None:
        step = _nice_step(t_max / 5)
        risk_times = np.arange(0, t_max + 1e-9, step)
    risk_times = np.asarray(risk_times, float)

    out: dict = {"groups": {}}
    with journal_style():
        n_groups = len(data)
        fig = plt.figure(figsize=(figsize[0], figsize[1] + 0.18 * n_groups))
        gs = fig.add_gridspec(2, 1, height_ratios=[4.0, 0.55 + 0.28 * n_groups], hspace=0.45)
        ax = fig.add_subplot(gs[0])
        ax_risk = fig.add_subplot(gs[1], sharex=ax)
        legend = []
        for k, (label, (t, e)) in enumerate(data.items()):
            colour = PALETTE[k % len(PALETTE)]
            km = kaplan_meier(t, e, conf_type=conf_type)
            grid = np.unique(np.concatenate([[0.0], t]))
            at = km.survival_at(grid)
            ax.step(grid, at["surv"], where="post", color=colour, lw=1.4)
            if show_ci:
                ax.fill_between(grid, at["lower"], at["upper"], step="post", color=colour, alpha=0.12, lw=0)
            cens = np.unique(t[e == 0])
            if len(cens):
                ax.plot(cens, km.survival_at(cens)["surv"], "|", color=colour, ms=6, mew=1.0)
            med, (lo, hi) = km.median, km.median_ci
            legend.append(f"{label} (n={len(t)}): median {_fmt_months(med)} "
                          f"[{_fmt_months(lo)}–{_fmt_months(hi)}]")
            n_risk = km.survival_at(risk_times)["n_risk"].to_numpy()
            for x, n in zip(risk_times, n_risk):
                ax_risk.text(x, n_groups - 1 - k, f"{int(n)}", ha="center", va="center", color=colour, fontsize=7.5)
            out["groups"][label] = {"n": int(len(t)), "events": int(e.sum()), "median": med,
                                    "median_ci": (lo, hi)}
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(-0.02 * t_max, t_max * 1.03)
        ax.set_xticks(risk_times)
        ax.set_ylabel(ylabel)
        ax.set_xlabel(xlabel)
        if title:
            ax.set_title(title, loc="left", fontweight="bold")
        handles = [plt.Line2D([], [], color=PALETTE[k % len(PALETTE)], lw=1.4) for k in range(n_groups)]
        ax.legend(handles, legend, loc="upper right", fontsize=7, handlelength=1.5)
        if n_groups >= 2 and show_p:
            labels = np.concatenate([[lab] * len(t) for lab, (t, _) in data.items()])
            lr = logrank(np.concatenate([t for t, _ in data.values()]),
                         np.concatenate([e for _, e in data.values()]), labels)
            out["logrank"] = {"statistic": lr.statistic, "df": lr.df, "p_value": lr.p_value}
            ax.text(0.03, 0.05, f"log-rank p = {format_p(lr.p_value, missing='NA')}", transform=ax.transAxes,
                    fontsize=8)
        ax_risk.set_ylim(-0.6, n_groups - 0.4)
        ax_risk.set_yticks(range(n_groups))
        ax_risk.set_yticklabels(list(data)[::-1], fontsize=7.5)
        for tick, k in zip(ax_risk.get_yticklabels(), range(n_groups - 1, -1, -1)):
            tick.set_color(PALETTE[k % len(PALETTE)])
        ax_risk.set_title("Number at risk", loc="left", fontsize=7.5)
        ax_risk.tick_params(axis="x", labelbottom=False, length=0)
        ax_risk.tick_params(axis="y", length=0)
        for side in ("left", "bottom"):
            ax_risk.spines[side].set_visible(False)
    return fig, out


def _nice_step(raw: float) -> float:
    """Round a raw tick step up to 1, 2, 3, 6, 12, 24 ... style steps."""
    for step in (0.5, 1, 2, 3, 6, 12, 24, 36, 48, 60, 120, 240, 365, 730):
        if raw <= step:
            return float(step)
    return float(np.ceil(raw))

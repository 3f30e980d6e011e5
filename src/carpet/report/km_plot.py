"""Kaplan–Meier figure as journals print it: step curves with censor ticks, optional CI bands,
medians and a p-value in a legend that covers no data, and a number-at-risk table aligned under the time
axis, whose times are the x ticks and reach the end of follow-up.

Estimates come from :func:`carpet.stats.kaplan_meier` (R's survfit numbers); this module only draws.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np

from carpet.report import format as fmt
from carpet.report.style import KM_AXES_ID, PALETTE, journal_style, place_legend


def risk_times_to(risk_times: Sequence[float] | None, t_max: float) -> np.ndarray:
    """Risk-table times that reach the end of follow-up ``t_max``.

    Default: 0 and a round step (1, 2, 3, 6, 12 ...) giving about five intervals. Given times are kept and,
    when they stop before ``t_max``, continued at their last step while still within follow-up, so the
    x axis (ticks at these times) covers every drawn curve.
    """
    if risk_times is None:
        step = _nice_step(t_max / 5)
        return np.arange(0, t_max + 1e-9, step)
    times = [float(v) for v in risk_times]
    step = times[-1] - times[-2] if len(times) >= 2 else _nice_step(t_max / 5)
    while step > 0 and times[-1] + step <= t_max + 1e-9:
        times.append(times[-1] + step)
    return np.asarray(times, float)


def axis_times(risk_times: Sequence[float] | None, t_max: float) -> np.ndarray:
    """The x ticks of a KM figure: the risk times (:func:`risk_times_to`) and, when the last of them falls
    short of the end of follow-up ``t_max``, one more step — the axis ends at a labelled tick at or after
    the last time drawn, as journals print it (its number at risk is 0)."""
    times = risk_times_to(risk_times, t_max)
    step = times[-1] - times[-2] if len(times) >= 2 else _nice_step(t_max)
    if times[-1] < t_max and step > 0:
        times = np.append(times, times[-1] + step * np.ceil((t_max - times[-1]) / step - 1e-9))
    return times


def km_caption(*, n_groups: int, show_ci: bool, conf_type: str, censor_marks: bool, p_text: str | None,
               unit: str = "") -> str:
    """A caption that states what the figure draws, and nothing it does not."""
    parts = ["Kaplan–Meier estimate" + ("s" if n_groups > 1 else "")]
    if show_ci:
        parts[0] += f" with pointwise 95% confidence bands ({conf_type} transform)"
    if censor_marks:
        parts.append("tick marks: censored observations")
    parts.append("numbers at risk below the time axis" + (f" ({unit})" if unit else ""))
    if p_text:
        parts.append(p_text)
    return "; ".join(parts) + "."


def km_figure(groups: Mapping[str, tuple[Sequence[float], Sequence[int]]], *, title: str = "",
              xlabel: str = "Time (months)", ylabel: str = "Survival probability",
              risk_times: Sequence[float] | None = None, conf_type: str = "log", show_ci: bool = True,
              show_p: bool = True, p_text: str | None = None, figsize=(4.6, 3.9)):
    """Draw KM curves for one or more groups with a number-at-risk table.

    Parameters
    ----------
    groups : mapping label -> (time, event)
        Follow-up times (any unit, matching ``xlabel``) and event indicators (1 = event) per group.
    risk_times : sequence of float, optional
        Times for the number-at-risk table and the x ticks; continued to the end of follow-up and ending at a
        tick at or after it (:func:`axis_times`). Default: 0 and a round step giving about five intervals.
    conf_type : {'log', 'log-log', 'plain'}
        CI transform, as in R's ``survfit``.
    show_p : bool
        Print the log-rank p of the drawn groups (labelled as such) when ``p_text`` is not given.
    p_text : str, optional
        The test to print instead, already worded (e.g. ``"maxstat-adjusted p = 0.072"``): a figure of an
        optimised split carries the search-adjusted p, not the naive log-rank p of the split it shows.

    Returns
    -------
    fig : matplotlib Figure
    stats : dict
        Per group ``n``, ``events``, ``median``, ``median_ci``; ``logrank`` (statistic, df, p_value) for ≥ 2
        groups; ``risk_times`` (as drawn); ``p_text`` (as printed) and ``caption`` (what is drawn).

    Notes
    -----
    The legend goes where it covers no curve, band, tick mark or text (checked on the drawn paths), else
    outside the axes (:func:`carpet.report.style.place_legend`). The x axis runs to the end of follow-up.
    """
    import matplotlib.pyplot as plt

    from carpet.stats import kaplan_meier, logrank

    data = {label: (np.asarray(t, float), np.asarray(e, int)) for label, (t, e) in groups.items()}
    t_max = max(float(t.max()) for t, _ in data.values() if len(t))
    risk_times = axis_times(risk_times, t_max)
    x_end = float(risk_times[-1])

    out: dict = {"groups": {}, "risk_times": [float(v) for v in risk_times]}
    censor_marks = False
    with journal_style():
        n_groups = len(data)
        fig = plt.figure(figsize=(figsize[0], figsize[1] + 0.18 * n_groups))
        gs = fig.add_gridspec(2, 1, height_ratios=[4.0, 0.55 + 0.28 * n_groups], hspace=0.45)
        ax = fig.add_subplot(gs[0])
        ax.set_gid(KM_AXES_ID)  # lets a check find the curves' axes (style.x_axis_short_of_data)
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
                censor_marks = True
                ax.plot(cens, km.survival_at(cens)["surv"], "|", color=colour, ms=6, mew=1.0)
            med, (lo, hi) = km.median, km.median_ci
            legend.append(f"{label} (n = {len(t)}): median {fmt.time_value(med)} "
                          f"({fmt.time_value(lo)}–{fmt.time_value(hi)})")
            n_risk = km.survival_at(risk_times)["n_risk"].to_numpy()
            for x, n in zip(risk_times, n_risk):
                ax_risk.text(x, n_groups - 1 - k, f"{int(n)}", ha="center", va="center", color=colour, fontsize=7.5)
            out["groups"][label] = {"n": int(len(t)), "events": int(e.sum()), "median": med,
                                    "median_ci": (lo, hi)}
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(-0.02 * x_end, x_end * 1.03)
        ax.set_xticks(risk_times)
        ax.set_xticklabels([f"{v:g}" for v in risk_times])
        ax.set_ylabel(ylabel)
        ax.set_xlabel(xlabel)
        if title:  # wrapped to the axes' width (about 11 characters an inch at the title size)
            ax.set_title(textwrap.fill(title, max(30, int(11 * figsize[0]))), loc="left", fontweight="bold")
        if n_groups >= 2:
            labels = np.concatenate([[lab] * len(t) for lab, (t, _) in data.items()])
            lr = logrank(np.concatenate([t for t, _ in data.values()]),
                         np.concatenate([e for _, e in data.values()]), labels)
            out["logrank"] = {"statistic": lr.statistic, "df": lr.df, "p_value": lr.p_value}
            if p_text is None and show_p:
                p_text = f"log-rank {fmt.p_equals(lr.p_value)}"
        handles = [plt.Line2D([], [], color=PALETTE[k % len(PALETTE)], lw=1.4) for k in range(n_groups)]
        if p_text:  # the test goes in the legend box, so one free-space search places both
            handles.append(plt.Line2D([], [], color="none"))
            legend.append(p_text)
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
        place_legend(ax, handles, legend, fontsize=7, handlelength=1.5)
    out["p_text"] = p_text
    out["caption"] = km_caption(n_groups=n_groups, show_ci=show_ci, conf_type=conf_type,
                                censor_marks=censor_marks, p_text=p_text)
    return fig, out


def _nice_step(raw: float) -> float:
    """Round a raw tick step up to 1, 2, 3, 6, 12, 24 ... style steps."""
    for step in (0.5, 1, 2, 3, 6, 12, 24, 36, 48, 60, 120, 240, 365, 730):
        if raw <= step:
            return float(step)
    return float(np.ceil(raw))

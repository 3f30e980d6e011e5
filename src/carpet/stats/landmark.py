"""Landmark analysis: outcome by a state known only at a landmark time (e.g. day-30 metabolic CR).

Comparing patients by a response assessed at day 30 from day 0 favours responders (they had to
survive to day 30 to be assessed: immortal-time bias). The landmark method keeps only patients
still at risk at the landmark — alive, event-free and under follow-up, i.e. ``time > landmark_time``
— and measures time from the landmark (Anderson, Cain & Gelber 1983; Dafni 2011). This is R's
``survdiff(Surv(time - L, event) ~ group, subset = time > L)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from carpet.errors import InputError
from carpet.provenance import provenance
from carpet.stats._input import require_columns
from carpet.stats.km import kaplan_meier
from carpet.stats.logrank import LogRankResult, logrank


@dataclass
class Landmark:
    """Result of :func:`landmark`.

    Attributes
    ----------
    data : DataFrame
        The patients at risk at the landmark with ``time_from_landmark`` (same unit as the input).
    at_risk : DataFrame
        Per group: ``group, n_at_risk, events, excluded`` (excluded = event or censoring at or
        before the landmark).
    logrank : carpet.stats.LogRankResult
        Log-rank test by group from the landmark (R ``survdiff``): ``statistic, df, p_value``.
    provenance : dict
    """

    data: pd.DataFrame
    at_risk: pd.DataFrame
    logrank: LogRankResult
    duration: str
    event: str
    group: str
    provenance: dict = field(default_factory=dict)

    def survival_at(self, times) -> pd.DataFrame:
        """Kaplan–Meier survival per group at times *after the landmark*, as R
        ``summary(survfit(...), times=)``: ``group, time, surv, std_err, lower, upper, n_risk``."""
        return pd.concat([km.survival_at(times).assign(group=g) for g, km in self.km().items()],
                         ignore_index=True)[["group", "time", "surv", "std_err", "lower", "upper", "n_risk"]]

    def figure(self, *, xlabel: str = "Time from landmark", **kwargs):
        """KM curves by group from the landmark with number at risk
        (:func:`carpet.report.km_plot.km_figure`; returns ``(fig, stats)``)."""
        from carpet.report.km_plot import km_figure

        groups = {f"{self.group}={g}": (sub["time_from_landmark"], sub[self.event])
                  for g, sub in self.data.groupby(self.group, sort=True)}
        return km_figure(groups, xlabel=xlabel, **kwargs)

    def km(self, conf_type: str = "log") -> dict:
        """:class:`carpet.stats.KaplanMeier` per group, time from the landmark."""
        return {g: kaplan_meier(sub["time_from_landmark"], sub[self.event], conf_type=conf_type)
                for g, sub in self.data.groupby(self.group, sort=True)}


def landmark(df: pd.DataFrame, duration: str, event: str, landmark_time: float, group: str) -> Landmark:
    """Restrict to patients at risk at ``landmark_time``, re-base their times, compare groups.

    Parameters
    ----------
    df : DataFrame
        One row per patient.
    duration, event : str
        Follow-up time from the index date (e.g. infusion) and event indicator (1 = event).
    landmark_time : float
        Landmark in the unit of ``duration`` (e.g. 30 for day 30 when ``duration`` is in days).
    group : str
        The state assessed at the landmark (e.g. ``metcr_day30``); rows with it missing are dropped.

    Returns
    -------
    Landmark
    """
    require_columns(df, [duration, event, group])
    base = df.dropna(subset=[duration, event, group])
    if (base[duration] < 0).any():
        row = base.index[base[duration] < 0][0]
        raise InputError("negative follow-up time", where=f"row {row}, column '{duration}'")
    keep = base[duration] > landmark_time
    data = base[keep].copy()
    data["time_from_landmark"] = data[duration] - landmark_time
    groups = sorted(base[group].unique(), key=str)
    at_risk = pd.DataFrame({"group": groups,
                            "n_at_risk": [int((data[group] == g).sum()) for g in groups],
                            "events": [int(data.loc[data[group] == g, event].sum()) for g in groups],
                            "excluded": [int(((base[group] == g) & ~keep).sum()) for g in groups]})
    if data[group].nunique() < 2:
        raise InputError(f"fewer than two groups of '{group}' remain at risk at the landmark {landmark_time}",
                         where=f"column '{group}'")
    test = logrank(data["time_from_landmark"], data[event], data[group])
    prov = provenance(method="landmark", landmark_time=landmark_time, at_risk_rule="time > landmark",
                      test="log-rank (R survdiff rho=0)", n_at_risk=len(data), n_excluded=int((~keep).sum()))
    return Landmark(data=data, at_risk=at_risk, logrank=test, duration=duration, event=event, group=group,
                    provenance=prov)

"""Restricted mean survival time (RMST) with its standard error, the between-group difference, and the
median follow-up by the reverse Kaplan–Meier method.

``rmst`` = R ``print(survfit(Surv(time, event) ~ group), rmean = tau)`` / ``summary(fit, rmean = tau)$table``
(columns ``rmean``, ``se(rmean)``): the area under the Kaplan–Meier curve from 0 to tau, with survival's
variance Σ A_j² d_j / (n_j (n_j − d_j)) over event times t_j <= tau, A_j the area from t_j to tau. The
difference between two groups and its CI use the normal approximation, (RMST₁ − RMST₀) ± z·sqrt(se₁² + se₀²),
as ``survRM2::rmst2`` does (survRM2 itself is not needed). ``followup`` = the median of
``survfit(Surv(time, 1 − event) ~ 1)`` (Schemper & Smith 1996).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from carpet.errors import InputError
from carpet.provenance import provenance
from carpet.stats._input import survival_arrays
from carpet.stats.km import kaplan_meier


def _rmst_one(time: np.ndarray, event: np.ndarray, tau: float) -> tuple[float, float, int, int]:
    km = kaplan_meier(time, event)
    t, s = km.time, km.surv
    keep = t <= tau
    knots = np.concatenate(([0.0], t[keep], [tau]))
    heights = np.concatenate(([1.0], s[keep]))            # S on [knot_k, knot_k+1)
    pieces = heights * np.diff(knots)
    area = float(pieces.sum())
    # area from each time t_j (<= tau) to tau: the sum of the later pieces
    after = np.cumsum(pieces[::-1])[::-1][1:]
    d, n = km.n_event[keep].astype(float), km.n_risk[keep].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(d > 0, after ** 2 * d / (n * (n - d)), 0.0)
    # the last death of a curve that reaches 0 has n = d: its area after is 0 (R: 0/0 treated as 0)
    terms = np.where(np.isfinite(terms), terms, 0.0)
    return area, float(np.sqrt(terms.sum())), int(time.size), int(event.sum())


@dataclass
class Rmst:
    """Result of :func:`rmst`.

    Attributes
    ----------
    table : DataFrame
        group, n, events, tau, rmst, se, lower, upper (normal CI) — one row per group (``all`` without groups).
    difference : DataFrame or None
        For two groups: group, reference, difference (group − reference), se, lower, upper, p_value.
    """

    table: pd.DataFrame
    difference: pd.DataFrame | None
    tau: float
    conf_level: float
    provenance: dict = field(default_factory=dict)


def rmst(time, event, tau: float, group=None, *, conf_level: float = 0.95) -> Rmst:
    """Restricted mean survival time up to ``tau`` per group, and the difference between two groups.

    Parameters
    ----------
    time, event : array-like
        Follow-up time (>= 0) and event indicator (1 = event).
    tau : float
        Truncation time, in the unit of ``time`` (e.g. 24 months).
    group : array-like, optional
        Groups; rows with a missing group are dropped. With exactly two groups the difference (second
        sorted group − first) is reported.
    conf_level : float

    Returns
    -------
    Rmst
    """
    t, e = survival_arrays(time, event)
    if not np.isfinite(tau) or tau <= 0:
        raise InputError(f"tau must be a positive finite time, got {tau!r}", where="tau")
    if group is None:
        g = np.full(t.size, "all", dtype=object)
    else:
        g = np.asarray(group, dtype=object).ravel()
        if g.size != t.size:
            raise InputError(f"group has {g.size} values but time has {t.size}", where="group")
        keep = ~pd.isna(g)
        t, e, g = t[keep], e[keep], g[keep]
    z = stats.norm.ppf(1 - (1 - conf_level) / 2)
    rows = []
    for level in sorted(pd.unique(g)):
        sel = g == level
        area, se, n, d = _rmst_one(t[sel], e[sel], tau)
        rows.append({"group": level, "n": n, "events": d, "tau": tau, "rmst": area, "se": se,
                     "lower": area - z * se, "upper": area + z * se})
    table = pd.DataFrame(rows)
    diff = None
    if len(table) == 2:
        ref, other = table.iloc[0], table.iloc[1]
        dv = other["rmst"] - ref["rmst"]
        se = float(np.hypot(other["se"], ref["se"]))
        diff = pd.DataFrame([{"group": other["group"], "reference": ref["group"], "difference": dv, "se": se,
                              "lower": dv - z * se, "upper": dv + z * se,
                              "p_value": float(2 * stats.norm.sf(abs(dv) / se)) if se > 0 else np.nan}])
    prov = provenance(method="restricted mean survival time (R survival print.survfit rmean=tau)", tau=tau,
                      difference="normal approximation, as survRM2::rmst2", conf_level=conf_level)
    return Rmst(table, diff, float(tau), conf_level, prov)


@dataclass(frozen=True)
class FollowUp:
    """Median follow-up by the reverse Kaplan–Meier method (``median``, ``median_ci``; None when not reached)."""

    median: float | None
    median_ci: tuple
    n: int
    provenance: dict = field(default_factory=dict)


def followup(time, event, *, conf_level: float = 0.95) -> FollowUp:
    """Median follow-up: the Kaplan–Meier median with censoring as the event (``survfit(Surv(time, 1 - event))``).

    Parameters
    ----------
    time, event : array-like
        Follow-up time and event indicator (1 = event) of the survival endpoint.
    """
    t, e = survival_arrays(time, event)
    km = kaplan_meier(t, ~e, conf_level=conf_level)
    prov = provenance(method="median follow-up, reverse Kaplan-Meier (R survfit(Surv(time, 1 - event) ~ 1))",
                      conf_level=conf_level, conf_type="log")
    return FollowUp(km.median, km.median_ci, int(t.size), prov)

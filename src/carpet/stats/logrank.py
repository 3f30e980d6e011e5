"""Log-rank and Fleming–Harrington G-rho tests that reproduce R's ``survdiff``, plus a trend test.

Written here (vectorised numpy) because lifelines' weighted test (``weightings='peto'``) uses another
weight than R's ``rho`` (S(t-)^rho from the pooled Kaplan–Meier curve within each stratum) and has no
trend test for ordered groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import chi2

from carpet.errors import InputError
from carpet.provenance import provenance
from carpet.stats._input import survival_arrays
from carpet.stats._results import TestResult


@dataclass(frozen=True)
class LogRankResult(TestResult):
    """Result of :func:`logrank`: ``statistic``, ``df``, ``p_value`` plus per-group detail.

    Attributes
    ----------
    groups : list
        Group labels in order (a Categorical's levels, otherwise sorted): the order of
        ``observed``/``expected`` and of the trend scores.
    observed, expected : arrays
        (Weighted) observed and expected events per group, summed over strata.
    variance : 2-D array
        Variance matrix of observed − expected.
    rho : float
    trend : bool
    """

    groups: list = field(default_factory=list)
    observed: np.ndarray | None = None
    expected: np.ndarray | None = None
    variance: np.ndarray | None = None
    rho: float = 0.0
    trend: bool = False

    @property
    def summary(self) -> pd.DataFrame:
        """Per-group table like ``print(survdiff)``: observed, expected, (O-E)^2/E."""
        o, e = self.observed, self.expected
        return pd.DataFrame({"group": self.groups, "observed": o, "expected": e,
                             "(O-E)^2/E": (o - e) ** 2 / e}).set_index("group")

    @property
    def provenance(self) -> dict:
        name = "log-rank" if self.rho == 0 else f"Fleming-Harrington G-rho (rho={self.rho:g})"
        return provenance(method=name + (" trend" if self.trend else ""), reference="R survival::survdiff")


def _stratum_sums(t, e, g, k, rho):
    """Observed, expected and variance of one stratum (survdiff's algorithm, vectorised over times)."""
    uniq, inv = np.unique(t, return_inverse=True)
    m = uniq.size
    deaths = np.zeros((m, k))
    np.add.at(deaths, (inv, g), e)
    at_time = np.zeros((m, k))
    np.add.at(at_time, (inv, g), 1.0)
    n_risk_g = np.cumsum(at_time[::-1], axis=0)[::-1]  # per group, time >= t
    n_risk = n_risk_g.sum(axis=1)
    d = deaths.sum(axis=1)
    keep = d > 0
    deaths, n_risk_g, n_risk, d = deaths[keep], n_risk_g[keep], n_risk[keep], d[keep]
    if rho != 0:
        # weight S(t-)^rho with S the pooled KM of this stratum, left-continuous
        surv = np.cumprod(1 - d / n_risk)
        w = np.concatenate(([1.0], surv[:-1])) ** rho
    else:
        w = np.ones_like(d)
    frac = n_risk_g / n_risk[:, None]
    observed = (w[:, None] * deaths).sum(axis=0)
    expected = (w[:, None] * d[:, None] * frac).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(n_risk > 1, w**2 * d * (n_risk - d) / (n_risk - 1), 0.0)
    # hypergeometric variance: sum_t c_t (diag(f_t) - f_t f_t')
    variance = np.diag(c @ frac) - (c[:, None] * frac).T @ frac
    return observed, expected, variance


def logrank(time, event, group, strata=None, rho: float = 0, trend: bool = False,
            scores=None) -> LogRankResult:
    """Compare survival of two or more groups, as R's ``survdiff(Surv(time, event) ~ group, rho=rho)``.

    Parameters
    ----------
    time, event : array-like
        Follow-up time (>= 0) and event indicator (1 event, 0 censored).
    group : array-like
        Group label per subject (2 or more distinct values; missing labels are dropped, as R does).
        Groups are ordered as a pandas Categorical's levels, otherwise sorted.
    strata : array-like, optional
        Stratum per subject; observed, expected and variance are summed over strata
        (``+ strata(s)`` in R).
    rho : float
        Fleming–Harrington weight S(t-)^rho (pooled KM within stratum): 0 = log-rank, 1 = Peto–Prentice.
    trend : bool
        Test for trend across ordered groups (1 df): (s'(O−E))² / (s'Vs) with scores ``s``.
    scores : array-like, optional
        Scores of the groups (in the order of ``groups``) for the trend test; default 1, 2, …, k.

    Returns
    -------
    LogRankResult
        statistic (chi-square), df (k−1 over groups with expected events > 0, as R; 1 for trend),
        p_value (NaN when no group has expected events: nothing to test), observed, expected, variance.
    """
    t, e = survival_arrays(time, event)
    # keep a categorical's level order (R's factor order), otherwise sort the labels
    g_raw = (pd.Series(group).reset_index(drop=True) if isinstance(getattr(group, "dtype", None), pd.CategoricalDtype)
             else pd.Series(np.asarray(group, dtype=object).ravel()))
    if g_raw.size != t.size:
        raise InputError(f"group has {g_raw.size} values but time has {t.size}", where="group")
    s_raw = (pd.Series(np.zeros(t.size, dtype=int)) if strata is None
             else pd.Series(np.asarray(strata, dtype=object).ravel()))
    if s_raw.size != t.size:
        raise InputError(f"strata has {s_raw.size} values but time has {t.size}", where="strata")
    ok = (g_raw.notna() & s_raw.notna()).to_numpy()
    t, e, g_raw, s_raw = t[ok], e[ok], g_raw[ok], s_raw[ok]
    if isinstance(g_raw.dtype, pd.CategoricalDtype):
        cat = g_raw.cat.remove_unused_categories()
        g_codes, groups = cat.cat.codes.to_numpy(), cat.cat.categories
    else:
        g_codes, groups = pd.factorize(g_raw, sort=True)
    k = len(groups)
    if k < 2:
        raise InputError(f"log-rank needs at least 2 groups, found {k}", where="group")
    s_codes, _ = pd.factorize(s_raw, sort=True)
    observed = np.zeros(k)
    expected = np.zeros(k)
    variance = np.zeros((k, k))
    for s in np.unique(s_codes):
        sel = s_codes == s
        o, ex, v = _stratum_sums(t[sel], e[sel].astype(float), g_codes[sel], k, rho)
        observed += o
        expected += ex
        variance += v
    diff = observed - expected
    if trend:
        sc = np.arange(1, k + 1, dtype=float) if scores is None else np.asarray(scores, dtype=float)
        if sc.size != k:
            raise InputError(f"trend scores need one value per group ({k}), got {sc.size}", where="scores")
        stat = float((sc @ diff) ** 2 / (sc @ variance @ sc))
        df = 1
    else:
        # survdiff: groups with no expected events drop out; of the rest the first is redundant
        keep = np.flatnonzero(expected > 0)[1:]
        df = keep.size
        try:
            stat = float(diff[keep] @ np.linalg.solve(variance[np.ix_(keep, keep)], diff[keep])) if df else 0.0
        except np.linalg.LinAlgError:
            raise InputError("the groups cannot be compared: their log-rank variance is singular (no stratum has "
                             "events while two of the groups are at risk, e.g. each stratum holds one group)",
                             where="group") from None
    p_value = float(chi2.sf(stat, df)) if df else float("nan")  # no test possible (no events): R's p is NA
    return LogRankResult(statistic=stat, df=df, p_value=p_value, groups=list(groups),
                         observed=observed, expected=expected, variance=variance, rho=rho, trend=trend)

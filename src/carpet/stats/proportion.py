"""A proportion with its confidence intervals, and the odds ratio of a 2×2 table, as R reports them.

``proportion`` = R ``binom.test`` (Clopper–Pearson interval, exact two-sided p) and ``prop.test(correct =
FALSE)`` (Wilson score interval); both from :func:`scipy.stats.binomtest`. ``odds_ratio`` = the sample odds
ratio with Woolf's (log, Wald) interval, and the conditional maximum-likelihood odds ratio with its exact
interval and p as R ``fisher.test`` (:func:`scipy.stats.contingency.odds_ratio`, :func:`scipy.stats.fisher_exact`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from carpet.errors import InputError
from carpet.provenance import provenance


@dataclass(frozen=True)
class Proportion:
    """``k`` of ``n``: :attr:`estimate` = k/n, :attr:`ci_exact` (Clopper–Pearson), :attr:`ci_wilson` (Wilson
    score, no continuity correction) at ``conf_level``; :attr:`p_value`: exact two-sided binomial test of
    ``p0`` (R ``binom.test(k, n, p0)$p.value``)."""

    k: int
    n: int
    estimate: float
    ci_exact: tuple[float, float]
    ci_wilson: tuple[float, float]
    p_value: float
    p0: float
    conf_level: float

    @property
    def provenance(self) -> dict:
        return provenance(method="proportion", ci_exact="Clopper-Pearson (R binom.test)",
                          ci_wilson="Wilson score, no continuity correction (R prop.test(correct = FALSE))",
                          conf_level=self.conf_level, p0=self.p0)


def _count(value, name: str) -> int:
    v = float(value)
    if not np.isfinite(v) or v < 0 or v != int(v):
        raise InputError(f"{name} must be a whole number >= 0, got {value!r}", where=name)
    return int(v)


def proportion(k, n, *, conf_level: float = 0.95, p0: float = 0.5) -> Proportion:
    """Rate ``k``/``n`` with exact (Clopper–Pearson) and Wilson confidence intervals.

    Parameters
    ----------
    k, n : int
        Number of successes (e.g. complete metabolic responses) and of trials (patients); 0 <= k <= n, n >= 1.
    conf_level : float
        Level of both intervals.
    p0 : float
        Proportion under the null hypothesis of the exact binomial test.

    Returns
    -------
    Proportion
    """
    k, n = _count(k, "k"), _count(n, "n")
    if n == 0 or k > n:
        raise InputError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}", where="k, n")
    res = stats.binomtest(k, n, p0)
    exact = res.proportion_ci(conf_level, method="exact")
    wilson = res.proportion_ci(conf_level, method="wilson")
    return Proportion(k, n, k / n, (float(exact.low), float(exact.high)), (float(wilson.low), float(wilson.high)),
                      float(res.pvalue), p0, conf_level)


@dataclass(frozen=True)
class OddsRatio:
    """Odds ratio of a 2×2 table [[a, b], [c, d]] (rows: exposed / unexposed; columns: event / no event).

    Attributes
    ----------
    estimate, ci : sample odds ratio ad/bc and Woolf's interval exp(log OR ± z·sqrt(1/a+1/b+1/c+1/d))
        (NaN/inf when a cell is 0; no continuity correction is added).
    conditional, conditional_ci, p_value : conditional MLE, exact interval and two-sided exact p (R fisher.test).
    """

    table: np.ndarray
    estimate: float
    ci: tuple[float, float]
    conditional: float
    conditional_ci: tuple[float, float]
    p_value: float
    conf_level: float

    @property
    def provenance(self) -> dict:
        return provenance(method="odds ratio", ci="Woolf (log Wald), no continuity correction",
                          conditional="conditional MLE with exact CI and p (R fisher.test)",
                          conf_level=self.conf_level)


def odds_ratio(table, *, conf_level: float = 0.95) -> OddsRatio:
    """Odds ratio with Woolf and exact (fisher.test) confidence intervals.

    Parameters
    ----------
    table : array-like, 2×2
        Counts [[exposed with event, exposed without], [unexposed with event, unexposed without]].
    conf_level : float

    Returns
    -------
    OddsRatio
    """
    t = np.asarray(table, dtype=float)
    if t.shape != (2, 2) or not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(t != np.round(t)):
        raise InputError(f"odds_ratio needs a 2x2 table of whole counts >= 0, got {t.tolist()}", where="table")
    a, b, c, d = t.ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        est = float(a * d / (b * c))
        se = float(np.sqrt(1 / a + 1 / b + 1 / c + 1 / d))
        z = stats.norm.ppf(1 - (1 - conf_level) / 2)
        ci = (float(np.exp(np.log(est) - z * se)), float(np.exp(np.log(est) + z * se)))
    ti = t.astype(int)
    cond = stats.contingency.odds_ratio(ti, kind="conditional")
    cci = cond.confidence_interval(conf_level)
    p = stats.fisher_exact(ti).pvalue
    return OddsRatio(ti, est, ci, float(cond.statistic), (float(cci.low), float(cci.high)), float(p), conf_level)

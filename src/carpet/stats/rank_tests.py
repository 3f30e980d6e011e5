"""Rank tests of association as R reports them: Wilcoxon–Mann–Whitney (``wilcox.test``) and Spearman's rho
(``cor.test(method = "spearman")``).

Both use scipy (:func:`scipy.stats.mannwhitneyu`, :func:`scipy.stats.rankdata`); this module picks R's defaults:

- ``mann_whitney``: W = the rank sum of ``x`` minus n_x(n_x + 1)/2 (R's statistic); the exact null distribution when
  both groups have fewer than 50 values and there are no ties, else the normal approximation with R's continuity
  correction and tie-corrected variance — R ``wilcox.test(x, y)``'s rule.
- ``spearman``: rho = Pearson's r of the mid-ranks; its p from the t approximation on n − 2 degrees of freedom, as
  R ``cor.test(x, y, method = "spearman", exact = FALSE)``. R's default without ties for n < 1290 is the AS 89
  series (``exact = NULL``), which carpet does not implement: the p stated here says which one it is. R gives no
  interval for rho; carpet's 95% CI is Fisher's z with the variance 1.06 / (n − 3) of Fieller, Hartley & Pearson
  (1957), written out in the R script beside the test fixture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from carpet.errors import InputError
from carpet.provenance import provenance

#: R wilcox.test uses the exact distribution below this many values per group (and without ties)
EXACT_BELOW = 50
#: variance of Fisher's z of Spearman's rho is about 1.06 / (n - 3) (Fieller, Hartley & Pearson 1957)
SPEARMAN_Z_VARIANCE = 1.06


def _values(v, name: str) -> np.ndarray:
    x = np.asarray(v, dtype=float).ravel()
    x = x[~np.isnan(x)]
    if not np.isfinite(x).all():
        raise InputError(f"{name} holds infinite values", where=name)
    return x


@dataclass(frozen=True)
class MannWhitney:
    """Two-sided Wilcoxon rank-sum (Mann–Whitney) test of ``x`` against ``y``.

    Attributes
    ----------
    statistic : float
        R's W: rank sum of ``x`` minus n_x(n_x + 1)/2 (the number of pairs with x > y, ties counting 1/2).
    p_value : float
    method : str
        ``exact`` or ``normal approximation with continuity correction`` (R's choice for these data).
    n_x, n_y : int
        Non-missing values per group.
    median_x, median_y : float
    iqr_x, iqr_y : tuple of float
        25th and 75th percentiles (R ``quantile`` type 7).
    """

    statistic: float
    p_value: float
    method: str
    n_x: int
    n_y: int
    median_x: float
    median_y: float
    iqr_x: tuple[float, float]
    iqr_y: tuple[float, float]

    @property
    def provenance(self) -> dict:
        return provenance(method="mann_whitney", test="two-sided Wilcoxon rank-sum (R wilcox.test)",
                          p_method=self.method)


def mann_whitney(x, y) -> MannWhitney:
    """Wilcoxon rank-sum test of two independent samples, as R ``wilcox.test(x, y)`` (missing values dropped).

    Parameters
    ----------
    x, y : array-like of float
        The two samples (e.g. peak CAR T cells/µL with high and with low MTV).

    Returns
    -------
    MannWhitney
    """
    a, b = _values(x, "x"), _values(y, "y")
    if a.size == 0 or b.size == 0:
        raise InputError(f"the Wilcoxon test needs values in both groups (got {a.size} and {b.size})", where="x, y")
    ties = np.unique(np.concatenate([a, b])).size < a.size + b.size
    exact = a.size < EXACT_BELOW and b.size < EXACT_BELOW and not ties
    res = stats.mannwhitneyu(a, b, alternative="two-sided", use_continuity=True,
                             method="exact" if exact else "asymptotic")
    q = lambda v: (float(np.percentile(v, 25)), float(np.percentile(v, 75)))  # noqa: E731
    return MannWhitney(float(res.statistic), float(min(1.0, res.pvalue)),
                       "exact" if exact else "normal approximation with continuity correction", int(a.size),
                       int(b.size), float(np.median(a)), float(np.median(b)), q(a), q(b))


@dataclass(frozen=True)
class Spearman:
    """Spearman's rank correlation with its p (t approximation) and Fisher-z confidence interval."""

    rho: float
    p_value: float
    ci: tuple[float, float]
    n: int
    conf_level: float

    @property
    def provenance(self) -> dict:
        return provenance(method="spearman", rho="Pearson correlation of mid-ranks (R cor.test method='spearman')",
                          p="t approximation on n - 2 df (R cor.test exact = FALSE)",
                          ci=f"Fisher z, variance {SPEARMAN_Z_VARIANCE}/(n - 3) (Fieller, Hartley & Pearson 1957)",
                          conf_level=self.conf_level)


def spearman(x, y, *, conf_level: float = 0.95) -> Spearman:
    """Spearman's rho of paired values (pairs with a missing value dropped), as R ``cor.test(x, y, method =
    "spearman", exact = FALSE)``, with a Fisher-z confidence interval.

    Parameters
    ----------
    x, y : array-like of float
        Paired values (e.g. MTV in mL and CAR T AUC over days 0–28).
    conf_level : float
        Level of the interval.

    Returns
    -------
    Spearman
    """
    a, b = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if a.size != b.size:
        raise InputError(f"x and y must be paired: {a.size} and {b.size} values", where="x, y")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    n = int(a.size)
    if n < 4:
        raise InputError(f"Spearman's rho with an interval needs at least 4 complete pairs, got {n}", where="x, y")
    ra, rb = stats.rankdata(a), stats.rankdata(b)
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        raise InputError("Spearman's rho is undefined when one variable is constant", where="x, y")
    rho = float(np.corrcoef(ra, rb)[0, 1])
    if abs(rho) >= 1:
        p = 0.0
    else:
        t = rho * np.sqrt((n - 2) / (1 - rho**2))
        p = float(2 * stats.t.sf(abs(t), n - 2))
    half = stats.norm.ppf(0.5 + conf_level / 2) * np.sqrt(SPEARMAN_Z_VARIANCE / (n - 3))
    z = np.arctanh(np.clip(rho, -1 + 1e-15, 1 - 1e-15))
    return Spearman(rho, p, (float(np.tanh(z - half)), float(np.tanh(z + half))), n, conf_level)


__all__ = ["MannWhitney", "mann_whitney", "Spearman", "spearman"]

"""Optimal cut-points of a continuous marker (maximally selected log-rank statistic, like R's
``maxstat.test(..., smethod="LogRank")``) with adjusted p-values, and honest evaluation of a fixed,
published cut-off.

No maintained Python library implements maxstat (its log-rank scores with max-rank ties, candidate
bounds, Lausen–Schumacher p-values), so it is written here with vectorised numpy; the permutation
p-value computes all permuted statistics as one matrix per block of permutations.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata

from carpet.errors import InputError
from carpet.provenance import provenance
from carpet.stats._input import survival_arrays
from carpet.stats._results import TestResult
from carpet.stats.concordance import concordance_counts
from carpet.stats.cox import cox
from carpet.stats.logrank import logrank

_PERM_CELLS = 2_000_000  # permuted scores held at once (block of permutations × subjects), ~16 MB


def logrank_scores(time, event) -> np.ndarray:
    """Log-rank scores as ``exactRankTests::cscores(Surv(time, event), type="LogRank")``.

    a_i = event_i − Σ_{j: t_j ≤ t_i} event_j / (N − maxrank_j + 1), where tied times share the
    maximum rank (which is what maxstat uses, not the Nelson–Aalen d/n of tied groups).
    """
    t, e = survival_arrays(time, event)
    n = t.size
    max_rank = rankdata(t, method="max")
    fact = e / (n - max_rank + 1)
    cum = np.cumsum(fact[np.argsort(t, kind="stable")])  # cumulative over time order
    return e - cum[max_rank.astype(int) - 1]


def p_lausen92(b: float, min_prop: float = 0.1, max_prop: float = 0.9) -> float:
    """Lausen & Schumacher (1992) approximate p-value of a maximally selected statistic ``b``."""
    if b < 1:
        return 1.0
    db = norm.pdf(b)
    # without bounds (min_prop = 0 or max_prop = 1) the log term is log(x/0) = inf and R returns p = Inf:
    # the approximation does not exist there (use p_lausen94 or permutations)
    denominator = (1 - max_prop) * min_prop
    log_term = np.log((max_prop * (1 - min_prop)) / denominator) if denominator > 0 else np.inf
    p = 4 * db / b + db * (b - 1 / b) * log_term
    return float(max(p, 0.0))


def p_lausen94(b: float, n: int, m: np.ndarray) -> float:
    """Lausen, Sauerbrei & Schumacher (1994) improved Bonferroni p-value over the candidate splits ``m``."""
    m = np.asarray(m, dtype=float)
    if m.size <= 1:
        d = 0.0
    else:
        m1, m2 = m[:-1], m[1:]
        t = np.sqrt(1 - m1 * (n - m2) / ((n - m1) * m2))
        d = float(np.sum(1 / np.pi * np.exp(-b**2 / 2) * (t - (b**2 / 4 - 1) * t**3 / 6)))
    return float(1 - (norm.cdf(b) - norm.cdf(-b)) + d)


def _marker_data(time, event, x) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Time, event and marker of the subjects with a marker value, and how many had none."""
    t_all, e_all = survival_arrays(time, event)
    x_all = np.asarray(x, dtype=float).ravel()
    if x_all.size != t_all.size:
        raise InputError(f"marker has {x_all.size} values but time has {t_all.size}", where="x")
    ok = ~np.isnan(x_all)
    if not e_all[ok].any():
        raise InputError(f"no events among the {int(ok.sum())} subjects with a marker value; the log-rank "
                         "statistic is undefined", where="event")
    return t_all[ok], e_all[ok], x_all[ok], int((~ok).sum())


@dataclass(frozen=True)
class CutpointResult:
    """Result of :func:`cutpoint`.

    Attributes
    ----------
    value : float
        The cut-point: the largest marker value of the low group (low = x <= value, high = x > value).
    statistic : float
        M, the maximum over candidates of |standardised log-rank statistic|.
    p_value : float
        Adjusted for the search by Lausen & Schumacher (1992) (maxstat ``pmethod="Lau92"``).
    p_value_lau94 : float
        Lausen et al. (1994) improved Bonferroni bound (maxstat ``pmethod="Lau94"``).
    p_value_perm : float or None
        Permutation p-value (1 + #{M* >= M}) / (1 + n_perm) when ``n_perm > 0``.
    n_candidates : int
    cuts, statistics : arrays
        Every candidate cut and its standardised statistic.
    n, n_missing : int
        Subjects used and subjects dropped for a missing marker.
    """

    value: float
    statistic: float
    p_value: float
    p_value_lau94: float
    p_value_perm: float | None
    n_candidates: int
    cuts: np.ndarray
    statistics: np.ndarray
    n: int
    n_missing: int
    min_prop: float
    max_prop: float
    n_perm: int
    seed: int | None = None
    provenance: dict = field(default_factory=dict)

    @property
    def summary(self) -> pd.DataFrame:
        return pd.DataFrame([{"cutpoint": self.value, "statistic": self.statistic, "p_lau92": self.p_value,
                              "p_lau94": self.p_value_lau94, "p_perm": self.p_value_perm,
                              "n_candidates": self.n_candidates, "n": self.n}])

    def __str__(self) -> str:
        perm = "" if self.p_value_perm is None else f", permutation p = {self.p_value_perm:.4g} ({self.n_perm})"
        return (f"Optimised cut-point {self.value:g} (maximally selected log-rank M = {self.statistic:.4f}, "
                f"{self.n_candidates} candidates): adjusted p = {self.p_value:.4g} (Lausen-Schumacher 1992){perm}")


def _standardised(cum: np.ndarray, m: np.ndarray, n: int, total: float, sum_sq: float) -> np.ndarray:
    """|S_m − E| / sqrt(V) of the linear rank statistic S_m = sum of the first m scores (maxstat)."""
    expect = m / n * total
    var = m * (n - m) / (n**2 * (n - 1)) * (n * sum_sq - total**2)
    return np.abs((cum - expect) / np.sqrt(var))


def cutpoint(time, event, x, min_prop: float = 0.1, max_prop: float = 0.9, n_perm: int = 0,
             seed: int | None = None) -> CutpointResult:
    """Maximally selected log-rank cut-point of a continuous marker, as ``maxstat.test`` with
    ``smethod="LogRank"`` (and survminer's ``surv_cutpoint``).

    Parameters
    ----------
    time, event : array-like
        Follow-up time and event indicator.
    x : array-like
        Marker (e.g. MTV in mL). Subjects with a missing marker are dropped (counted in ``n_missing``).
    min_prop, max_prop : float
        Candidate cuts leave at least floor(N·min_prop) and at most floor(N·max_prop) subjects at or
        below the cut.
    n_perm : int
        Number of permutations for a permutation p-value (0 = none).
    seed : int, optional
        Seed of the permutation generator (recorded in the provenance).

    Returns
    -------
    CutpointResult
        Always with the search-adjusted p-value: an optimised cut-point is never reported without it.
    """
    if not (0 <= min_prop < max_prop <= 1):
        raise InputError(f"need 0 <= min_prop < max_prop <= 1, got {min_prop}, {max_prop}", where="min_prop")
    t, e, xv, n_missing = _marker_data(time, event, x)
    n = t.size
    scores = logrank_scores(t, e)
    order = np.argsort(xv, kind="stable")
    xs, ys = xv[order], scores[order]
    # m = number of subjects at or below each candidate cut (all distinct values but the last)
    first = np.flatnonzero(np.concatenate(([True], xs[1:] != xs[:-1])))
    m = first[1:]
    if min_prop == 0 and max_prop == 1:
        m = m[:-1]  # as maxstat: without bounds it also drops the cut below the last distinct value
    else:
        m = m[(m >= max(1, int(np.floor(n * min_prop)))) & (m <= int(np.floor(n * max_prop)))]
    if m.size == 0:
        raise InputError(f"no candidate cut-point leaves between {min_prop:.0%} and {max_prop:.0%} of the "
                         f"{n} subjects on each side (too few distinct marker values?)", where="x")
    total, sum_sq = ys.sum(), np.sum(ys**2)
    stats = _standardised(np.cumsum(ys)[m - 1], m, n, total, sum_sq)
    best = int(np.argmax(stats))  # first maximum, as maxstat
    stat = float(stats[best])
    p_perm = None
    if n_perm > 0:
        rng = np.random.default_rng(seed)
        exceed = 0
        rows = max(1, _PERM_CELLS // n)
        for start in range(0, n_perm, rows):
            block = min(rows, n_perm - start)
            perm = rng.permuted(np.broadcast_to(ys, (block, n)), axis=1)
            perm_stats = _standardised(np.cumsum(perm, axis=1)[:, m - 1], m, n, total, sum_sq)
            # relative slack: a permutation equal to the data must count despite summation-order rounding
            exceed += int(np.count_nonzero(perm_stats.max(axis=1) >= stat * (1 - 1e-12)))
        p_perm = (1 + exceed) / (1 + n_perm)
    return CutpointResult(
        value=float(xs[m[best] - 1]), statistic=stat, p_value=p_lausen92(stat, min_prop, max_prop),
        p_value_lau94=p_lausen94(stat, n, m), p_value_perm=p_perm, n_candidates=int(m.size),
        cuts=xs[m - 1], statistics=stats, n=n, n_missing=n_missing, min_prop=min_prop,
        max_prop=max_prop, n_perm=n_perm, seed=seed,
        provenance=provenance(method="maximally selected log-rank statistic (maxstat smethod=LogRank)",
                              p_value="Lausen-Schumacher 1992", min_prop=min_prop, max_prop=max_prop,
                              n_perm=n_perm, seed=seed))


@dataclass(frozen=True)
class CutoffEvaluation:
    """Result of :func:`evaluate_cutoff`: a fixed cut-off applied to new data (groups: high = x > cutoff)."""

    cutoff: float
    n_low: int
    n_high: int
    events_low: int
    events_high: int
    hr: float
    hr_lower: float
    hr_upper: float
    logrank: TestResult
    concordance: float
    n_missing: int
    provenance: dict

    @property
    def summary(self) -> pd.DataFrame:
        return pd.DataFrame([{"cutoff": self.cutoff, "n_low": self.n_low, "n_high": self.n_high,
                              "events_low": self.events_low, "events_high": self.events_high,
                              "hr_high_vs_low": self.hr, "hr_lower": self.hr_lower, "hr_upper": self.hr_upper,
                              "logrank_chisq": self.logrank.statistic, "logrank_p": self.logrank.p_value,
                              "concordance": self.concordance}])


def evaluate_cutoff(time, event, x, cutoff: float, *, marker_method: str | None = None,
                    cutoff_method: str | None = None, strict: bool = True, ties: str = "efron",
                    conf_level: float = 0.95) -> CutoffEvaluation:
    """Evaluate a fixed, pre-specified cut-off (e.g. a published MTV > 54.3 mL) on a cohort.

    The cut-off is *not* re-optimised, so the ordinary log-rank p-value is valid. A cut-off is only
    meaningful for a marker measured the same way: when ``marker_method`` (how this cohort's marker was
    made, e.g. ``"suv4"``) differs from ``cutoff_method`` (how the publication made it), this raises
    (``strict=True``) or warns loudly; when either is unknown, it warns.

    Returns
    -------
    CutoffEvaluation
        Group sizes and events, Cox hazard ratio high vs low with CI, log-rank test, and Harrell's C of
        the high/low grouping.
    """
    if marker_method is None or cutoff_method is None:
        warnings.warn("evaluate_cutoff: the marker's and the cut-off's methods were not both given; a "
                      "published cut-off only applies to a marker made with the same method", stacklevel=2)
    elif marker_method.strip().lower() != cutoff_method.strip().lower():
        msg = (f"cut-off {cutoff:g} was derived with method {cutoff_method!r} but the marker was made with "
               f"{marker_method!r}; values from different methods are not comparable")
        if strict:
            raise InputError(msg, where="marker_method", hint="recompute the marker with the cut-off's method, "
                             "or pass strict=False to evaluate anyway (with a warning)")
        warnings.warn(msg, stacklevel=2)
    t, e, xv, n_missing = _marker_data(time, event, x)
    high = (xv > cutoff).astype(int)
    if high.min() == high.max():
        raise InputError(f"every subject falls on the same side of the cut-off {cutoff:g}", where="cutoff")
    lr = logrank(t, e, high)
    fit = cox(pd.DataFrame({"time": t, "event": e.astype(int), "high": high}), covariates=["high"], ties=ties,
              conf_level=conf_level)
    row = fit.summary.loc["high"]
    return CutoffEvaluation(
        cutoff=float(cutoff), n_low=int((high == 0).sum()), n_high=int(high.sum()),
        events_low=int(e[high == 0].sum()), events_high=int(e[high == 1].sum()), hr=float(row["hr"]),
        hr_lower=float(row["hr_lower"]), hr_upper=float(row["hr_upper"]),
        logrank=TestResult(lr.statistic, lr.df, lr.p_value),
        concordance=concordance_counts(t, e, high).concordance, n_missing=n_missing,
        provenance=provenance(method="fixed cut-off evaluation (high = x > cutoff)", cutoff=float(cutoff),
                              marker_method=marker_method, cutoff_method=cutoff_method, ties=ties))

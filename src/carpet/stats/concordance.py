"""Harrell's concordance index as R's ``survival::concordance`` counts it.

Written here so that the counts (not only the ratio) are available per stratum, as R sums them over
strata for a stratified Cox model. Pairs are compared in blocks of rows with numpy (memory bounded,
O(n^2) comparisons, fast enough for cohorts of tens of thousands).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carpet.stats._input import survival_arrays

_BLOCK = 512


@dataclass(frozen=True)
class ConcordanceCounts:
    """Pair counts of a concordance computation and Harrell's C = (concordant + tied_x/2) / comparable."""

    concordant: float
    discordant: float
    tied_x: float
    tied_y: float
    tied_xy: float
    std_err: float = float("nan")

    @property
    def concordance(self) -> float:
        total = self.concordant + self.discordant + self.tied_x
        return (self.concordant + 0.5 * self.tied_x) / total if total else float("nan")


def concordance_counts(time, event, risk, strata=None) -> ConcordanceCounts:
    """Count concordant/discordant pairs of a risk score against survival.

    Parameters
    ----------
    time, event : array-like
        Follow-up time and event indicator.
    risk : array-like
        Risk score, higher = earlier event expected (a Cox linear predictor; for a marker where
        high means *longer* survival pass its negative, like R's ``reverse``).
    strata : array-like, optional
        Pairs are formed within strata only.

    Notes
    -----
    A pair (i, j) is comparable when i has an event and j is known to outlive it: t_j > t_i, or
    t_j = t_i with j censored. Pairs of events at the same time are not comparable (counted in
    ``tied_y``, or ``tied_xy`` when also tied in risk); comparable pairs tied in ``risk`` count 1/2
    (``tied_x``). ``std_err`` is the infinitesimal-jackknife standard error, as R reports it.
    """
    t, e = survival_arrays(time, event)
    x = np.asarray(risk, dtype=float).ravel()
    s = np.zeros(t.size, dtype=int) if strata is None else np.unique(np.asarray(strata), return_inverse=True)[1]
    conc = disc = tie_x = tie_y = tie_xy = 0.0
    # per-subject sums over the pairs it belongs to: score (1, 1/2, 0) and number of comparable pairs,
    # for the infinitesimal-jackknife standard error
    score_i = np.zeros(t.size)
    comparable_i = np.zeros(t.size)
    for code in np.unique(s):
        idx = np.flatnonzero(s == code)
        ts, es, xs = t[idx], e[idx], x[idx]
        for start in range(0, np.count_nonzero(es), _BLOCK):
            i = np.flatnonzero(es)[start:start + _BLOCK]
            ti, xi = ts[i][:, None], xs[i][:, None]
            later = (ts[None, :] > ti) | ((ts[None, :] == ti) & ~es[None, :])
            lower = later & (xs[None, :] < xi)
            tied = later & (xs[None, :] == xi)
            n_lower, n_tied, n_later = lower.sum(axis=1), tied.sum(axis=1), later.sum(axis=1)
            conc += n_lower.sum()
            tie_x += n_tied.sum()
            disc += (n_later - n_lower - n_tied).sum()
            score_i[idx[i]] += n_lower + 0.5 * n_tied
            comparable_i[idx[i]] += n_later
            score_i[idx] += lower.sum(axis=0) + 0.5 * tied.sum(axis=0)
            comparable_i[idx] += later.sum(axis=0)
            # event pairs at the same time, each unordered pair once
            same = (ts[None, :] == ti) & es[None, :]
            same_x = same & (xs[None, :] == xi)
            tie_y += (np.count_nonzero(same) - np.count_nonzero(same_x)) / 2
            tie_xy += (np.count_nonzero(same_x) - i.size) / 2
    total = conc + disc + tie_x
    c = (conc + 0.5 * tie_x) / total if total else float("nan")
    # infinitesimal jackknife: dC/dw_k = (dN_k - C dD_k) / D, var = sum_k (dC/dw_k)^2
    se = float(np.sqrt(np.sum(((score_i - c * comparable_i) / total) ** 2))) if total else float("nan")
    return ConcordanceCounts(float(conc), float(disc), float(tie_x), float(tie_y), float(tie_xy), se)


def concordance_index(time, event, risk, strata=None) -> float:
    """Harrell's C of ``risk`` (higher = worse), as ``concordance(..., reverse=TRUE)$concordance`` in R."""
    return concordance_counts(time, event, risk, strata).concordance
